"""Calibration of every decision rule: type-I error and power by simulation, and seeds for power.

Owns the scenarios' bookkeeping, not their content: each claim has a scenarios function
(registered with ``@scenarios("<id>")`` next to its decider) that, given the claim at
a profile, the arms of one test case (the profile's design slice) and the noise model (so an
effect the paper reports standardised, like C7's d_z, can be put in bpb), returns three
tables of true means:

- ``true``:      the claim holds at the paper's effect (for a null claim: no effect).
                 P(contradicted) is the rule's type-I error against the claim;
                 P(reproduced) is its power.
- ``boundary``:  the claim is false by exactly the smallest effect of interest delta.
                 P(reproduced) is the rule's type-I error in favour of the claim.
- ``violation``: the claim is clearly false (the paper's primary hypothesis, or 3 delta).
                 P(contradicted) is the power to contradict.

Two more checks make the calibration able to fail where it matters (issue 22, item 7):

- ``edge`` scenarios: the claim true, but only just: the least favourable true case.
  Built from the three tables, so every rule has one: ``EDGE`` (0.9) of the way from
  ``true`` to ``boundary`` (for a null or equivalence claim an effect of 0.9 delta; for a
  directional claim an effect just above delta), and, where ``violation`` lies on the
  other side of ``true`` from ``boundary`` (a two-sided claim: C8's wd10 win against its
  boundary's wd33 win), the mirror images at 0.4 and 0.9 of the boundary's distance on the
  violation's side (C8: a wd10 win of 0.4 and 0.9 delta). A scenarios function may add its
  own (keys starting with ``edge``). P(contradicted) at the worst of them must stay <=
  alpha: a rule that contradicts a true claim whose effect is immaterial fails here.
- correlated seeds: the ``true`` and ``boundary`` scenarios again with ``arm_rho``
  (``CORRELATED_RHO`` = 0.3) of each arm's noise shared by all its seeds (seeds that share
  a data stream). Every rule assumes independent seeds; these columns say what its type-I
  errors become when they are not. Reported, not asserted.

The stability figure is checked the same way (``reliability``): datasets drawn from known
truths near and far from a rule's boundary, each dataset's stability against the rate at
which two datasets of the same truth agree, per bin of predicted stability.

Noise comes from the profile's prior (``[verdicts.noise.<metric>]``: SDs of the seed, the
seed x warmdown and the run component, see hypotheses/simulate.py) or, for seeds-for-power,
from the runs already in the cache. Draws use fixed RNG seeds, so every figure here is
reproducible bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from engine.design import Profile
from engine.ladder import count_params, get_config
from hypotheses.cells import Cell, cell_decider, cell_specs, cells_for
from hypotheses.claims import Claim
from hypotheses.simulate import (ARM_COLUMNS, EXTRA_ARM_COLUMNS, Noise, _Sampler, outcome_rates,
                                 stability_outcomes)
from hypotheses.verdict import CONTRADICTED, REPRODUCED

SCENARIOS = ("true", "boundary", "violation")
POWER_TARGET = 0.80  # the conventional 80 % power
MAX_SEEDS = 40  # seeds-for-power gives up beyond this ("> 40")
EDGE = 0.9  # the least favourable true case: 0.9 of the way from 'true' to 'boundary'
MIRROR_EDGES = (0.4, 0.9)  # a two-sided claim's other side, as fractions of the boundary's distance
CORRELATED_RHO = 0.3  # the check: type-I 0.13-0.19 at rho 0.3 on every row it tried


@dataclass(frozen=True)
class Scenario:
    """True means of every arm of one test case under one state of the world."""

    arms: pd.DataFrame  # the cell's arms (ARM_COLUMNS present) plus 'mu'
    note: str  # what is true, in one line with numbers


def cell_arms(profile: Profile, cell: Cell) -> tuple[pd.DataFrame, list[int]]:
    """The arms (everything but the seed) of one test case, with n_params, and its seeds."""
    specs = cell_specs(profile, cell)
    rows = []
    for s in specs:
        cfg = get_config(s.size)
        row = {c: getattr(s, c) for c in ARM_COLUMNS + EXTRA_ARM_COLUMNS if c != "n_params" and hasattr(s, c)}
        row["n_params"] = count_params(cfg, 256 if s.tokenizer == "byte" else cfg.ref_vocab)
        rows.append(row)
    arms = pd.DataFrame(rows).drop_duplicates(ignore_index=True)
    return arms, sorted({s.seed for s in specs})


def noise_prior(profile: Profile, metric: str) -> Noise:
    table = ((profile.verdicts or {}).get("noise") or {}).get(metric)
    if table is None:
        raise ValueError(f"{profile.path}: no noise prior for {metric!r}; add [verdicts.noise.{metric}] "
                         f"with seed, seed_wd and run SDs")
    return Noise.from_mapping(table, f"{profile.path} [verdicts.noise.{metric}]")


@dataclass(frozen=True)
class CalibrationRow:
    claim_id: str
    profile: str
    cell: str
    n_seeds: int
    draws: int
    delta: float
    noise: str
    false_contradict: float  # P(contradicted | claim true)            must be <= alpha
    false_reproduce: float  # P(reproduced | claim false at delta)    must be <= alpha
    power_reproduce: float  # P(reproduced | claim true at the paper's effect)
    power_contradict: float  # P(contradicted | clearly false)
    edge_contradict: float = math.nan  # P(contradicted | claim true at its edge), worst edge; must be <= alpha
    edges: dict = field(default_factory=dict)  # edge scenario -> (note, P(contradicted))
    corr_rho: float = math.nan  # arm-level correlation of the seeds in the next two columns
    corr_false_contradict: float = math.nan  # P(contradicted | true), seeds correlated within an arm
    corr_false_reproduce: float = math.nan  # P(reproduced | false at delta), seeds correlated

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _scenarios(claim: Claim, arms: pd.DataFrame, noise: Noise) -> dict[str, Scenario]:
    out = claim.scenarios_fn()(claim, arms, noise)
    missing = [k for k in SCENARIOS if k not in out]
    if missing:
        raise ValueError(f"claim {claim.id}: scenarios lack {missing}")
    return out


def edge_scenarios(scen: dict[str, Scenario]) -> dict[str, Scenario]:
    """The least favourable true cases of one test case, from its three scenarios (module
    docstring), plus any ``edge*`` scenario the claim's scenarios function gives itself.

    Every arm's true mean moves along a straight line between two scenarios' means, so the
    nuisance structure (bowls, penalties, laws) stays that of ``true``."""
    t, b, v = (scen[k].arms["mu"].to_numpy(dtype=float) for k in SCENARIOS)
    arms = scen["true"].arms
    out = {"edge": Scenario(arms.assign(mu=t + EDGE * (b - t)),
                            f"{EDGE:g} of the way from true to boundary ({scen['boundary'].note})")}
    to_b, to_v = b - t, v - t
    if float(to_b @ to_v) < 0 and float(to_v @ to_v) > 0:  # two-sided: violation on the other side
        scale = math.sqrt(float(to_b @ to_b) / float(to_v @ to_v))
        for f in MIRROR_EDGES:
            out[f"edge-mirror-{f:g}"] = Scenario(
                arms.assign(mu=t + f * scale * to_v),
                f"{f:g} of the boundary's distance toward violation ({scen['violation'].note})")
    out.update({k: v for k, v in scen.items() if k.startswith("edge")})
    return out


def calibrate_cell(claim: Claim, profile: Profile, cell: Cell, n_draws: int, *, seeds=None,
                   noise: Noise | None = None, rng_seed: int = 0, edges: bool = True,
                   correlated_rho: float | None = None) -> CalibrationRow:
    """Outcome rates of ``claim``'s decider on ``cell`` under its three scenarios; with
    ``edges`` also under its least favourable true cases (``edge_scenarios``), with
    ``correlated_rho`` also its type-I errors when seeds are correlated within an arm."""
    metric = claim.threshold("metric")
    arms, design_seeds = cell_arms(profile, cell)
    seeds = list(seeds) if seeds is not None else design_seeds
    noise = noise or noise_prior(profile, metric)
    decide = cell_decider(claim, cell)
    scen = _scenarios(claim, arms, noise)
    rate = {name: outcome_rates(decide, scen[name].arms, seeds, noise, metric, n_draws, rng_seed + i)
            for i, name in enumerate(SCENARIOS)}
    extra = {}
    if edges:
        found = {name: (e.note, outcome_rates(decide, e.arms, seeds, noise, metric, n_draws,
                                              rng_seed + 3 + i).get(CONTRADICTED, 0.0))
                 for i, (name, e) in enumerate(edge_scenarios(scen).items())}
        extra.update(edges=found, edge_contradict=max(p for _, p in found.values()))
    if correlated_rho:
        corr = replace(noise, arm_rho=float(correlated_rho))
        extra.update(
            corr_rho=float(correlated_rho),
            corr_false_contradict=outcome_rates(decide, scen["true"].arms, seeds, corr, metric, n_draws,
                                                rng_seed + 20).get(CONTRADICTED, 0.0),
            corr_false_reproduce=outcome_rates(decide, scen["boundary"].arms, seeds, corr, metric, n_draws,
                                               rng_seed + 21).get(REPRODUCED, 0.0))
    return CalibrationRow(
        claim.id, profile.name, cell.id, len(seeds), n_draws,
        float(claim.thresholds.get("delta", math.nan)), noise.describe(),
        false_contradict=rate["true"].get(CONTRADICTED, 0.0),
        false_reproduce=rate["boundary"].get(REPRODUCED, 0.0),
        power_reproduce=rate["true"].get(REPRODUCED, 0.0),
        power_contradict=rate["violation"].get(CONTRADICTED, 0.0),
        **extra,
    )


def calibrate(claims: dict[str, Claim], profile: Profile, n_draws: int,
              correlated_rho: float | None = CORRELATED_RHO) -> list[CalibrationRow]:
    """One row per claim: its first test case at ``profile`` (every case of a claim cut `by`
    size or bits has the same structure; the first is the one with the fewest parameters or
    bits); a claim cut into named sub-claims (``cases``) gets one row per sub-claim, since
    each has its own rule."""
    rows = []
    for claim in claims.values():
        claim = claim.at_profile(profile)
        cells = cells_for(claim, profile)
        for cell in (cells if "cases" in claim.cells else cells[:1]):
            rows.append(calibrate_cell(claim, profile, cell, n_draws, correlated_rho=correlated_rho))
    return rows


def seeds_for_power(claim: Claim, profile: Profile, cell: Cell, noise: Noise, n_draws: int,
                    target: float = POWER_TARGET) -> int | None:
    """Fewest seeds at which the rule reproduces the claim, true at the paper's effect, with
    probability >= ``target``; None if even ``MAX_SEEDS`` do not."""
    metric = claim.threshold("metric")
    arms, _ = cell_arms(profile, cell)
    true = _scenarios(claim, arms, noise)["true"].arms
    decide = cell_decider(claim, cell)

    def power(n: int) -> float:
        rates = outcome_rates(decide, true, range(n), noise, metric, n_draws, 0)
        return rates.get(REPRODUCED, 0.0)

    lo, hi = 2, 3
    while power(hi) < target:  # doubling, then bisection: power grows with the seed count
        lo, hi = hi, hi * 2
        if hi > MAX_SEEDS:
            return None if power(MAX_SEEDS) < target else _bisect(power, lo, MAX_SEEDS, target)
    return _bisect(power, lo, hi, target)


def _bisect(power, lo: int, hi: int, target: float) -> int:
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if power(mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi if power(lo) < target else lo


# ---- reliability of the stability figure ----
#
# A stability figure is calibrated when, among verdicts labelled p, a fresh dataset from the
# same truth gives the same outcome a share p of the time. Checked by simulation from known
# truths: per truth, ``n_datasets`` tables are drawn and decided; the actual agreement of a
# dataset with outcome o is the share of the *other* datasets of its truth with outcome o
# (the probability that two datasets of one truth agree, given the first gave o). Its
# predicted agreement is its stability. The stability's own draws are split in two halves:
# the first half bins the dataset, the second gives its predicted value, so the noise of a
# finite stability draw cannot select datasets into the extreme bins and look like
# over-confidence there (regression to the mean).

RELIABILITY_FRACTIONS = (-1.0, 0.0, 0.5, 0.8, 1.0, 1.2, 1.5, 2.0, 3.0)  # truths, along true -> boundary
RELIABILITY_BINS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
RELIABILITY_MIN_BIN = 30  # datasets a bin needs before its gap counts against the rule
RELIABILITY_GAP = 0.05  # mean absolute gap (dataset-weighted) at most this
RELIABILITY_OVERCONFIDENT = 0.10  # no bin's predicted above its actual by more than this
RELIABILITY_CLAIMS = ("C1", "C2", "C6", "C7", "C8")  # issue 22: C1, C7, C8 (near-boundary), C2 for C2-C5, C6 (the tiny FRAGILE law)


def reliability_truths(claim: Claim, arms: pd.DataFrame, noise: Noise,
                       fractions=RELIABILITY_FRACTIONS) -> list[Scenario]:
    """Known truths along the line from the claim's ``true`` scenario (fraction 0) through its
    ``boundary`` (1, the rule's decision edge) and beyond (> 1: the claim false by more than
    delta; < 0: true by a margin), nuisances held at ``true``'s."""
    scen = _scenarios(claim, arms, noise)
    t = scen["true"].arms["mu"].to_numpy(dtype=float)
    b = scen["boundary"].arms["mu"].to_numpy(dtype=float)
    return [Scenario(scen["true"].arms.assign(mu=t + f * (b - t)), f"{f:g} of the way from true to boundary")
            for f in fractions]


def reliability_records(decide, truths: list[Scenario], seeds, noise: Noise, metric: str, n_datasets: int,
                        n_stability: int, rng_seed: int = 0, truth: str = "posterior") -> pd.DataFrame:
    """One row per simulated dataset: its truth, outcome, stability (all draws and the two
    halves: ``p_bin`` bins it, ``p_pred`` is its predicted agreement) and actual agreement."""
    if n_datasets < 2 or n_stability < 2:
        raise ValueError("reliability needs >= 2 datasets per truth and >= 2 stability draws")
    rows = []
    rng = np.random.default_rng(rng_seed)
    half = n_stability // 2
    for ti, sc in enumerate(truths):
        sampler = _Sampler(sc.arms, seeds, noise, metric)
        found = []
        for _ in range(n_datasets):
            table = sampler.draw(rng)
            outcome = decide(table).outcome
            draws = stability_outcomes(decide, table, metric, n_stability, int(rng.integers(2 ** 31)), truth=truth)
            if draws is None:
                continue
            same = np.array([d == outcome for d in draws], dtype=float)
            found.append(dict(truth=ti, note=sc.note, outcome=outcome, stability=same.mean(),
                              p_bin=same[:half].mean(), p_pred=same[half:].mean()))
        counts = pd.Series([r["outcome"] for r in found]).value_counts()
        for r in found:
            r["actual"] = (counts[r["outcome"]] - 1) / (len(found) - 1)
        rows += found
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ReliabilityBin:
    lo: float
    hi: float
    n: int
    predicted: float  # mean stability (its second half of draws) of the datasets in the bin
    actual: float  # mean rate at which another dataset of the same truth agrees

    @property
    def gap(self) -> float:  # > 0: over-confident
        return self.predicted - self.actual


def reliability_bins(records: pd.DataFrame, bins=RELIABILITY_BINS) -> list[ReliabilityBin]:
    edges = np.asarray(bins, dtype=float)
    idx = np.clip(np.searchsorted(edges, records["p_bin"].to_numpy(), side="right") - 1, 0, len(edges) - 2)
    out = []
    for i in range(len(edges) - 1):
        sel = records[idx == i]
        if len(sel):
            out.append(ReliabilityBin(float(edges[i]), float(edges[i + 1]), len(sel),
                                      float(sel["p_pred"].mean()), float(sel["actual"].mean())))
    return out


def reliability_summary(bins: list[ReliabilityBin], min_bin: int = RELIABILITY_MIN_BIN) -> dict:
    """Mean absolute gap (weighted by datasets, bins with >= ``min_bin``) and the largest
    over-confidence of such a bin: what the reliability test bounds."""
    counted = [b for b in bins if b.n >= min_bin]
    n = sum(b.n for b in counted)
    return {"datasets": sum(b.n for b in bins),
            "mean_abs_gap": sum(b.n * abs(b.gap) for b in counted) / n if n else math.nan,
            "max_overconfidence": max((b.gap for b in counted), default=math.nan)}


def reliability_cell(claim: Claim, profile: Profile, cell: Cell, n_datasets: int, n_stability: int, *,
                     noise: Noise | None = None, fractions=RELIABILITY_FRACTIONS, rng_seed: int = 0,
                     truth: str = "posterior") -> pd.DataFrame:
    """``reliability_records`` for one test case at a profile, at its design's seeds and the
    profile's noise prior; rows carry the claim and cell ids."""
    metric = claim.threshold("metric")
    arms, seeds = cell_arms(profile, cell)
    noise = noise or noise_prior(profile, metric)
    truths = reliability_truths(claim, arms, noise, fractions)
    rec = reliability_records(cell_decider(claim, cell), truths, seeds, noise, metric, n_datasets,
                              n_stability, rng_seed, truth)
    return rec.assign(claim_id=claim.id, cell=cell.id, n_seeds=len(seeds))


def reliability_markdown(records: pd.DataFrame, title: str) -> str:
    """The published reliability table: per bin, then per truth."""
    bins = reliability_bins(records)
    summ = reliability_summary(bins)
    out = [f"# {title}", "",
           f"{summ['datasets']} simulated datasets; mean absolute gap {summ['mean_abs_gap']:.3f} "
           f"(bound {RELIABILITY_GAP}), largest over-confidence of a bin with >= {RELIABILITY_MIN_BIN} "
           f"datasets {summ['max_overconfidence']:+.3f} (bound {RELIABILITY_OVERCONFIDENT}).", "",
           "| predicted stability (bin) | datasets | predicted agreement | actual agreement | gap |",
           "|---|---|---|---|---|"]
    out += [f"| [{b.lo:.2f}, {b.hi:.2f}) | {b.n} | {b.predicted:.3f} | {b.actual:.3f} | {b.gap:+.3f} |"
            for b in bins]
    out += ["", "Per truth (mean over its datasets):", "",
            "| claim | test case | seeds | truth | outcomes | predicted agreement | actual agreement |",
            "|---|---|---|---|---|---|---|"]
    for (cid, cell, ti), g in records.groupby(["claim_id", "cell", "truth"], sort=False):
        shares = g["outcome"].value_counts(normalize=True)
        text = ", ".join(f"{k} {v:.2f}" for k, v in shares.items())
        out.append(f"| {cid} | {cell} | {g['n_seeds'].iloc[0]} | {g['note'].iloc[0]} | {text} | "
                   f"{g['p_pred'].mean():.3f} | {g['actual'].mean():.3f} |")
    return "\n".join(out) + "\n"

"""Calibration of every decision rule: type-I error and power by simulation, and seeds for power.

Owns the scenarios' bookkeeping, not their content: each claim names a scenarios function
(``scenarios`` in fixtures/claims.toml, defined next to its decider) that, given the claim at
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

Noise comes from the profile's prior (``[verdicts.noise.<metric>]``: SDs of the seed, the
seed x warmdown and the run component, see hypotheses/simulate.py) or, for seeds-for-power,
from the runs already in the cache. Draws use fixed RNG seeds, so every figure here is
reproducible bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from engine.design import Profile
from engine.ladder import count_params, get_config
from hypotheses.cells import Cell, cell_decider, cell_specs, cells_for
from hypotheses.claims import Claim
from hypotheses.simulate import ARM_COLUMNS, EXTRA_ARM_COLUMNS, Noise, outcome_rates
from hypotheses.verdict import CONTRADICTED, REPRODUCED

SCENARIOS = ("true", "boundary", "violation")
POWER_TARGET = 0.80  # the conventional 80 % power
MAX_SEEDS = 40  # seeds-for-power gives up beyond this ("> 40")


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

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _scenarios(claim: Claim, arms: pd.DataFrame, noise: Noise) -> dict[str, Scenario]:
    out = claim.scenarios_fn()(claim, arms, noise)
    missing = [k for k in SCENARIOS if k not in out]
    if missing:
        raise ValueError(f"claim {claim.id}: scenarios lack {missing}")
    return out


def calibrate_cell(claim: Claim, profile: Profile, cell: Cell, n_draws: int, *, seeds=None,
                   noise: Noise | None = None, rng_seed: int = 0) -> CalibrationRow:
    """Outcome rates of ``claim``'s decider on ``cell`` under its three scenarios."""
    metric = claim.threshold("metric")
    arms, design_seeds = cell_arms(profile, cell)
    seeds = list(seeds) if seeds is not None else design_seeds
    noise = noise or noise_prior(profile, metric)
    decide = cell_decider(claim, cell)
    scen = _scenarios(claim, arms, noise)
    rate = {name: outcome_rates(decide, scen[name].arms, seeds, noise, metric, n_draws, rng_seed + i)
            for i, name in enumerate(SCENARIOS)}
    return CalibrationRow(
        claim.id, profile.name, cell.id, len(seeds), n_draws,
        float(claim.thresholds.get("delta", math.nan)), noise.describe(),
        false_contradict=rate["true"].get(CONTRADICTED, 0.0),
        false_reproduce=rate["boundary"].get(REPRODUCED, 0.0),
        power_reproduce=rate["true"].get(REPRODUCED, 0.0),
        power_contradict=rate["violation"].get(CONTRADICTED, 0.0),
    )


def calibrate(claims: dict[str, Claim], profile: Profile, n_draws: int) -> list[CalibrationRow]:
    """One row per claim: its first test case at ``profile`` (every case of a claim cut `by`
    size or bits has the same structure; the first is the one with the fewest parameters or
    bits); a claim cut into named sub-claims (``cases``) gets one row per sub-claim, since
    each has its own rule."""
    rows = []
    for claim in claims.values():
        claim = claim.at_profile(profile)
        cells = cells_for(claim, profile)
        for cell in (cells if "cases" in claim.cells else cells[:1]):
            rows.append(calibrate_cell(claim, profile, cell, n_draws))
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

"""Decision functions for the INT4 claims: C7 (wd33 decisive at 50M+), C8 (noise below 50M).

Owns:
- ``paired_wd_differences``: per-seed d = metric(wd_short) - metric(wd_long) at INT4
  (d > 0: the long warmdown, wd33, wins).
- ``decide_c7``: one large size; wd33 better than wd10 by more than delta (one-sided
  bounds of mean(d) against delta).
- ``decide_c8``: the small sizes together; every size's mean(d) equivalent to 0 within
  delta (90 % CIs), contradicted only by a material preference (a Bonferroni CI wholly
  outside [-delta, delta]); a significant but immaterial preference is reported.
- ``_int4_penalty_premise``: C7/C8's premise (an INT4 penalty against FP16, R4's pattern).
- ``scenarios_c7`` / ``scenarios_c8``: the calibration scenarios (hypotheses/calibration.py).
All pure: a results table in, a Verdict out. The deciders run thousands of times in
calibration, so after the shared validation (``require_table``) they work on numpy arrays
and take their paired t intervals from ``hypotheses.intervals.mean_ci``.

Pairing: a pair is the two warmdowns of one (seed, lr_mult) with both runs finite (a pair
with a diverged member is dropped; the run is counted in ``n_diverged``). The seed is the
independent unit (the noise model shares a seed x warmdown offset across a seed's LRs), so
a seed's pairs at several LRs are averaged into one d per seed; with one LR per seed (the
profiles' INT4 designs) this is the plain paired difference. ``n`` below counts seeds.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as sps

from hypotheses.calibration import Scenario
from hypotheses.groupstats import SizeDifference
from hypotheses.intervals import bonferroni, inside, lower_bound, mean_ci, outside
from hypotheses.verdict import (
    CONTRADICTED,
    PREMISE_MET,
    PREMISE_UNCHECKED,
    REPRODUCED,
    RUN_KEY,
    ArmTable,
    Inconclusive,
    PremiseAbsent,
    Verdict,
    claim_delta,
    count_stats,
    decider,
    fmt_bits,
    fmt_wd,
    require_table,
    require_unique_runs,
    scenarios,
    three_way,
    verdict,
)

_FACTORS = ("size", "bits", "warmdown", "lr_mult")
SMALL_TELESCOPE_POWER = 0.33  # Simonsohn (2015): the effect the original design had 33 % power to detect


# ---------------------------------------------------------------------------------------
# Pairing and paired statistics (numpy; shared by C7 and C8)
# ---------------------------------------------------------------------------------------


def _seed_differences(cell: pd.DataFrame, metric: str, wd_short: float, wd_long: float, tol: float):
    """Per-seed mean of d = y(wd_short) - y(wd_long) over the seed's (seed, lr_mult) pairs.

    ``cell``: a validated table (``require_table``) of one size. Returns (seeds, d, n_pairs)
    with seeds ascending."""
    pairs = ArmTable(cell, metric, ("warmdown", "lr_mult")).matched("warmdown", wd_short, wd_long, tol)
    by_seed: dict[int, list[float]] = {}
    for p in pairs:
        for seed, d in zip(p.seeds, p.d.tolist()):
            by_seed.setdefault(seed, []).append(d)
    seeds = sorted(by_seed)
    d = np.array([sum(by_seed[s]) / len(by_seed[s]) for s in seeds], dtype=float)
    return seeds, d, sum(len(p.seeds) for p in pairs)


def paired_wd_differences(cell: pd.DataFrame, metric: str, wd_short: float, wd_long: float,
                          tol: float) -> pd.DataFrame:
    """d = metric(wd_short) - metric(wd_long) per seed (averaged over its LRs); d > 0: wd_long wins.

    ``cell`` is a validated table (``require_table``: a ``finite`` column) of one size."""
    seeds, d, _ = _seed_differences(cell, metric, wd_short, wd_long, tol)
    return pd.DataFrame({"seed": seeds, "d": d})


@functools.lru_cache(maxsize=64)
def small_telescope_dz(alpha: float, n: int, power: float = SMALL_TELESCOPE_POWER) -> float:
    """d33: the d_z at which a one-sided paired t-test at ``alpha`` with ``n`` pairs has ``power``.

    Solves 1 - F_nct(t_crit; df = n - 1, nc = d sqrt(n)) = power (scipy's non-central t)."""
    df = n - 1
    t_crit = float(sps.t.ppf(1 - alpha, df))

    def gap(d: float) -> float:
        return float(sps.nct.sf(t_crit, df, d * math.sqrt(n))) - power

    return float(optimize.brentq(gap, 0.0, 20.0, xtol=1e-10))


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (= statsmodels ``multipletests(method='holm')[1]``).

    Hand-written because statsmodels' Holm branch calls ``gc.collect()`` on every call
    (~50 ms), which the calibration's thousands of calls cannot afford."""
    p = np.asarray(p, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * np.arange(m, 0, -1)))
    out = np.empty(m)
    out[order] = adj
    return out


def _int4_slice(table: pd.DataFrame, claim, what: str):
    metric = claim.threshold("metric")
    bits = int(claim.threshold("bits"))
    wd_short, wd_long = float(claim.threshold("wd_short")), float(claim.threshold("wd_long"))
    tol = float(claim.threshold("wd_tol"))
    t = require_table(table, _FACTORS, metric, what=what)
    wd = t["warmdown"].to_numpy(dtype=float)
    near = (np.abs(wd - wd_short) <= tol) | (np.abs(wd - wd_long) <= tol)
    return t[(t["bits"].to_numpy() == bits) & near], metric, wd_short, wd_long, tol


def _int4_penalty_premise(table: pd.DataFrame, claim, sizes: list, what: str, stats: dict) -> None:
    """C7/C8's premise, R4's pattern: the claims are about what INT4 quantisation does to the
    schedule, so they presuppose an INT4 penalty (val_bpb_q(INT4) - val_bpb_q(FP16), runs
    matched on (size, wd, lr_mult, seed), per seed averaged over its pairs). Where the
    penalty is surely below delta (one-sided 1 - alpha upper bound < delta) at every size of
    the claim that has FP16 partners, INT4 behaves as full precision at this profile and the
    claim cannot be tested: PremiseAbsent. Checked only where the table carries FP16
    (``ref_bits``) runs at the claim's sizes; otherwise ``premise = 'unchecked'`` (a design
    without FP16 partners) and the rule alone decides."""
    metric, alpha, delta = claim.threshold("metric"), float(claim.threshold("alpha")), claim_delta(claim)
    bits, ref_bits = int(claim.threshold("bits")), int(claim.threshold("ref_bits"))
    stats.update(premise_statistic="int4_penalty_upper_bound_bpb", premise_threshold=delta)
    if "bits" not in table.columns or not (table["bits"].to_numpy() == ref_bits).any():
        stats["premise"] = PREMISE_UNCHECKED  # the cheap, common case: the design has no FP16 partners
        return
    t = require_table(table, _FACTORS, metric, what=what)
    t = t[t["finite"].to_numpy(dtype=bool) & t["size"].isin(sizes).to_numpy()]
    per_seed: dict = {}  # size -> {seed: [penalty of each (wd, lr_mult) pair]}
    for p in ArmTable(t, metric, ("bits", "size", "warmdown", "lr_mult")).matched("bits", bits, ref_bits):
        for seed, d in zip(p.seeds, p.d.tolist()):
            per_seed.setdefault(p.key["size"], {}).setdefault(seed, []).append(d)
    if not per_seed:
        stats["premise"] = PREMISE_UNCHECKED
        return
    checked = {}
    for size in sizes:
        if len(per_seed.get(size, {})) >= 2:
            ci = lower_bound([sum(v) / len(v) for _, v in sorted(per_seed[size].items())], alpha)
            checked[size] = ci
            stats[f"{size}:int4_penalty"] = ci.mean
            stats[f"{size}:int4_penalty_high"] = ci.high
    if not checked:
        stats["premise"] = PREMISE_UNCHECKED
        return
    top = max(checked, key=lambda z: checked[z].high)
    stats.update(premise_bound=checked[top].high, premise_mean=checked[top].mean, premise_size=str(top),
                 premise_sizes=",".join(map(str, checked)))
    if all(ci.high < delta for ci in checked.values()):
        text = "; ".join(f"{z} {ci.mean:+.4f} (upper bound {ci.high:+.4f})" for z, ci in checked.items())
        raise PremiseAbsent(
            f"{what}: the {fmt_bits(bits)} penalty against {fmt_bits(ref_bits)} is surely below delta {delta:g}: "
            f"{text}; {stats['n_diverged']} diverged run(s).",
            f"no {fmt_bits(bits)} penalty of delta {delta:g} at this profile ({text}): {fmt_bits(bits)} behaves as "
            f"full precision here", stats)
    stats["premise"] = PREMISE_MET


def _fmt_level(level: float) -> str:
    return f"{100 * level:.4g}%"


# ---------------------------------------------------------------------------------------
# C7
# ---------------------------------------------------------------------------------------


@decider("C7")
def decide_c7(table: pd.DataFrame, claim, *, size: str) -> Verdict:
    """C7 at one large size: at INT4, wd33 is better than wd10 by more than delta. The rule and
    premise: fixtures/claims.toml [C7] (``python -m hypotheses rules``).

    d per seed from ``_seed_differences`` (paired on (seed, lr_mult), averaged over a seed's
    LRs); ci_low / ci_high are the ends of the two-sided (1 - 2 alpha) interval, i.e. the two
    one-sided bounds. Reported, not decided on: the paired z and its p, ``wins_wd_long`` ("k/n"
    seeds with d > 0), Cohen's d_z, and the small-telescopes check (``d33``: the d_z the paper's
    ``paper_seeds``-pair design had 33 % power to detect; ``upper_dz_below_d33``). A size absent
    from the table is a pipeline error (ValueError).
    """
    what = f"{claim.id}[{size}]"
    t, metric, wd_short, wd_long, tol = _int4_slice(table, claim, what)
    cell = t[t["size"].to_numpy() == size]
    if cell.empty:
        raise ValueError(f"{what}: no INT4 runs at wd {wd_short}/{wd_long} for size={size!r}")
    require_unique_runs(cell, RUN_KEY, what=what)
    delta = claim_delta(claim)
    alpha, min_pairs = float(claim.threshold("alpha")), int(claim.threshold("min_pairs"))
    level = 1 - 2 * alpha
    seeds, d, n_pairs = _seed_differences(cell, metric, wd_short, wd_long, tol)
    label = f"wd{fmt_wd(wd_short)} - wd{fmt_wd(wd_long)}"
    stats = {
        **count_stats(cell),
        "size": str(size),
        "metric": metric,
        "delta": delta,
        "alpha": alpha,
        "statistic": "mean_diff",
        "ci_level": level,
        "region": f"> {delta:g}",
        "n_pairs": n_pairs,
        "n_paired_seeds": len(seeds),
    }
    if len(seeds) < min_pairs:
        raise Inconclusive(
            f"{what}: only {len(seeds)} seed(s) with both warmdowns finite; {stats['n_diverged']} diverged run(s).",
            f"fewer than {min_pairs} paired seeds ({len(seeds)})",
            stats,
        )
    _int4_penalty_premise(table, claim, [size], what, stats)
    s = mean_ci(d, level)
    low, high = s.low, s.high
    paper_n = int(claim.paper.get("paper_seeds", 10))
    d33 = small_telescope_dz(alpha, paper_n)
    upper_dz = high / s.sd if s.sd > 0 else (math.copysign(math.inf, high) if high else 0.0)
    wins = int((d > 0).sum())
    stats.update(
        statistic_value=s.mean,
        ci_low=low,
        ci_high=high,
        mean_diff=s.mean,
        sd_diff=s.sd,
        paired_z=s.t,
        p_value=s.p_two_sided,
        cohens_dz=s.dz,
        wins_wd_long=f"{wins}/{s.n}",
        d33=d33,
        upper_dz=upper_dz,
        upper_dz_below_d33=int(upper_dz < d33),
    )
    outcome = three_way(low > delta, high < delta)
    head = (
        f"{what}: {label} = {s.mean:+.4f} (one-sided {100 * (1 - alpha):g}% bounds "
        f"[{low:+.4f}, {high:+.4f}], delta {delta:g}); paired z = {s.t:.2f} (p = {s.p_two_sided:.2g}), "
        f"d_z = {s.dz:.2f}; wd{fmt_wd(wd_long)} wins {wins}/{s.n} seeds; "
        f"{stats['n_diverged']} diverged run(s)"
    )
    if outcome == REPRODUCED:
        return verdict(claim, outcome, head + "; the lower bound exceeds delta.", stats)
    if outcome == CONTRADICTED:
        tele = (f"; upper d_z {upper_dz:.2f} < d33 {d33:.2f}: even the effect the paper's "
                f"{paper_n}-seed design could barely detect is ruled out") if upper_dz < d33 else ""
        return verdict(claim, outcome, head + f"; the upper bound is below delta{tele}.", stats)
    raise Inconclusive(head + ".", f"the bounds [{low:+.4f}, {high:+.4f}] straddle delta {delta:g}", stats)


def _arms_with_mu(arms: pd.DataFrame, mu_of) -> pd.DataFrame:
    out = arms.reset_index(drop=True).copy()
    out["mu"] = [float(mu_of(row)) for row in out.to_dict("records")]
    return out


def _base_bpb(row: dict) -> float:
    """A plausible INT4 val_bpb_q baseline: lower for larger models (the level is irrelevant
    to the paired rules; it only keeps the simulated tables realistic)."""
    n = float(row.get("n_params", 1e7) or 1e7)
    return 1.60 - 0.04 * math.log(n / 1e7)


def _wd_shift(claim, row: dict, d: float) -> float:
    """The true y = baseline + d at wd_short (wd_long is the baseline): mean(d) = d."""
    is_short = abs(float(row["warmdown"]) - float(claim.threshold("wd_short"))) <= float(claim.threshold("wd_tol"))
    # FP16 partners (where the claim's designs join them, for the premise) sit 3 delta below the
    # INT4 runs: an INT4 penalty the premise finds, so the scenarios calibrate the rule itself.
    is_ref = int(row.get("bits", -1)) == int(claim.threshold("ref_bits"))
    return _base_bpb(row) + (d if is_short else 0.0) - (3 * claim_delta(claim) if is_ref else 0.0)


@scenarios("C7")
def scenarios_c7(claim, arms: pd.DataFrame, noise=None) -> dict[str, Scenario]:
    """Calibration scenarios of C7 (true mean of d = y(wd10) - y(wd33) at the cell's size).

    - true: the paper's effect: mean(d) = paper_dz x SD(d), SD(d) being the SD of a paired
      wd10 - wd33 difference under the noise model (seed offsets cancel, the seed x warmdown
      and run parts do not: SD(d) = sqrt(2 (seed_wd^2 + run^2))). The paper reports its
      effect standardised (paired z 12-15 over 10 seeds: d_z ~ 4.1), so this is its effect
      at the profile's noise. Without a noise model: 3 delta.
    - boundary: mean(d) = delta exactly (false reproduction rate <= alpha).
    - violation: mean(d) = 0 (no schedule preference: the claim is false).
    """
    delta = claim_delta(claim)
    if noise is not None:
        true_d = float(claim.threshold("paper_dz")) * math.sqrt(2 * (noise.seed_wd ** 2 + noise.run ** 2))
        true_note = f"wd33 better by the paper's d_z {claim.threshold('paper_dz')} = {true_d:.4g} bpb"
    else:
        true_d, true_note = 3 * delta, f"wd33 better by 3 delta = {3 * delta:g} at every size"
    return {
        name: Scenario(_arms_with_mu(arms, lambda r, d=d: _wd_shift(claim, r, d)), note)
        for name, d, note in (
            ("true", true_d, true_note),
            ("boundary", delta, f"wd33 better by exactly delta = {delta:g}"),
            ("violation", 0.0, "no schedule preference (d = 0)"),
        )
    }


# ---------------------------------------------------------------------------------------
# C8
# ---------------------------------------------------------------------------------------


def _size_order(t: pd.DataFrame) -> list:
    sizes = t["size"].tolist()
    if "n_params" not in t.columns:
        return sorted(set(sizes), key=str)
    smallest: dict = {}
    for size, n in zip(sizes, t["n_params"].tolist()):
        n = float(n)
        if math.isnan(n):  # unknown n_params sorts last
            n = math.inf
        smallest[size] = min(n, smallest.get(size, math.inf))
    return sorted(smallest, key=lambda s: (smallest[s], str(s)))


@dataclass
class _SizeTest:
    """One small size of C8: its paired differences and their intervals (reported as a
    ``groupstats.SizeDifference``)."""

    size: str
    d: np.ndarray  # per-seed wd10 - wd33
    ci: object  # MeanCI at 1 - 2 alpha
    ci_b: object = None  # MeanCI at the Bonferroni level (set once the tested sizes are known)
    p_holm: float = math.nan

    def stats(self) -> dict:
        s, b = self.ci, self.ci_b
        return SizeDifference(self.size, mean_diff=s.mean, sd_diff=s.sd, dz=s.dz, ci_low=s.low, ci_high=s.high,
                              ci_low_bonf=b.low, ci_high_bonf=b.high, p=s.p_two_sided).as_stats()


def _c8_test_sizes(t: pd.DataFrame, claim, sizes: list, level: float, what: str, stats: dict) -> tuple[list[_SizeTest], list]:
    """Pair each size's warmdowns by seed; the sizes with ``min_pairs`` paired seeds are tested, with
    their Bonferroni intervals over the tested sizes and Holm-adjusted p-values; the others listed."""
    metric, min_pairs = claim.threshold("metric"), int(claim.threshold("min_pairs"))
    wd_short, wd_long, tol = (float(claim.threshold(k)) for k in ("wd_short", "wd_long", "wd_tol"))
    size_a = t["size"].to_numpy()
    tested, untestable = [], []
    for size in sizes:
        seeds, d, n_pairs = _seed_differences(t[size_a == size], metric, wd_short, wd_long, tol)
        stats[f"{size}:n_pairs"] = n_pairs
        stats[f"{size}:n_paired_seeds"] = len(seeds)
        if len(seeds) < min_pairs:
            untestable.append(size)
        else:
            tested.append(_SizeTest(size, d, mean_ci(d, level)))
    stats["untestable_sizes"] = ",".join(map(str, untestable))
    stats["n_sizes_tested"] = len(tested)
    if not tested:
        raise Inconclusive(f"{what}: no size has {min_pairs}+ paired seeds.",
                           f"every size has fewer than {min_pairs} paired seeds", stats)
    level_b = bonferroni(level, len(tested))
    stats["ci_level_bonferroni"] = level_b
    for z in tested:
        z.ci_b = mean_ci(z.d, level_b)
        stats.update(z.stats())
    for z, ph in zip(tested, _holm([z.ci.p_two_sided for z in tested])):
        z.p_holm = float(ph)
        stats[f"{z.size}:p_holm"] = z.p_holm
    return tested, untestable


@decider("C8")
def decide_c8(table: pd.DataFrame, claim) -> Verdict:
    """C8: at INT4 below 50M, every size's schedule preference is within delta, and no size is a
    region where wd10 wins. The rule and premise: fixtures/claims.toml [C8].

    Steps: validate (``_int4_slice``), pair per size (``_c8_test_sizes``: one ``_SizeTest`` each,
    sizes ordered by n_params when present), decide (``_c8_decide``: contradicted only by a
    material preference, a Bonferroni CI wholly beyond +-delta; a significant but immaterial one
    is reported in ``wd10_immaterial_sizes`` / ``wd33_immaterial_sizes``), check the premise
    (``_int4_penalty_premise``), explain (``_c8_explain``). Headline: the size with the largest
    |mean(d)| and its 90 % CI; when contradicted, the contradicting one and its Bonferroni CI.
    """
    what = f"{claim.id}[{claim.role or claim.design}]"
    t, metric, wd_short, wd_long, tol = _int4_slice(table, claim, what)
    if t.empty:
        raise ValueError(f"{what}: no INT4 runs at wd {wd_short}/{wd_long}")
    require_unique_runs(t, RUN_KEY, what=what)
    delta, alpha = claim_delta(claim), float(claim.threshold("alpha"))
    min_sizes = int(claim.threshold("min_sizes"))
    level = 1 - 2 * alpha
    sizes = _size_order(t)
    stats = {**count_stats(t), "metric": metric, "delta": delta, "alpha": alpha, "n_sizes": len(sizes),
             "sizes": ",".join(map(str, sizes)), "statistic": "mean_diff_max_abs", "ci_level": level,
             "region": f"[{-delta:g}, {delta:g}]"}
    if len(sizes) < min_sizes:
        raise Inconclusive(f"{what}: only {len(sizes)} size(s) present.", f"fewer than {min_sizes} sizes", stats)
    tested, untestable = _c8_test_sizes(t, claim, sizes, level, what, stats)
    outcome, sides = _c8_decide(tested, untestable, delta, stats)
    _int4_penalty_premise(table, claim, [z.size for z in tested], what, stats)
    return _c8_explain(claim, what, outcome, tested, untestable, sides, stats)


def _c8_decide(tested: list[_SizeTest], untestable: list, delta: float, stats: dict) -> tuple[str, dict]:
    """The outcome and the sizes on each side. Contradicted only by a material preference: a
    corrected CI wholly beyond +-delta. A corrected CI wholly on one side of 0 but not beyond delta
    is a significant yet immaterial preference: reported, never decisive (a point-null test would
    contradict a true claim ever more often as seeds grow)."""
    p_holm = np.array([z.p_holm for z in tested])
    stats["min_p_holm"] = float(p_holm.min())
    stats["significant_sizes_holm"] = f"{int((p_holm < stats['alpha']).sum())}/{len(tested)}"
    outside_band = [z for z in tested if outside(z.ci_b.low, z.ci_b.high, -delta, delta)]
    sides = {
        "outside": outside_band,
        "wd10_wins": [z for z in outside_band if z.ci_b.high < -delta],
        "wd10_immaterial": [z for z in tested if z.ci_b.high < 0 and z not in outside_band],
        "wd33_immaterial": [z for z in tested if z.ci_b.low > 0 and z not in outside_band],
    }
    all_inside = not untestable and all(inside(z.ci.low, z.ci.high, -delta, delta) for z in tested)
    outcome = three_way(all_inside, bool(outside_band))
    if outcome == CONTRADICTED:
        head = max(outside_band, key=lambda z: abs(z.ci.mean))
        stats.update(statistic_value=head.ci.mean, ci_low=head.ci_b.low, ci_high=head.ci_b.high,
                     ci_level=stats["ci_level_bonferroni"], headline_size=str(head.size))
    else:
        head = max(tested, key=lambda z: abs(z.ci.mean))
        stats.update(statistic_value=head.ci.mean, ci_low=head.ci.low, ci_high=head.ci.high,
                     headline_size=str(head.size))
    for key in ("wd10_immaterial", "wd33_immaterial", "wd10_wins"):
        stats[f"{key}_sizes"] = ",".join(str(z.size) for z in sides[key])
    return outcome, sides


def _c8_explain(claim, what: str, outcome: str, tested: list[_SizeTest], untestable: list, sides: dict,
                stats: dict) -> Verdict:
    """The sentence, and the verdict (or the reason it is inconclusive)."""
    delta, level, level_b = stats["delta"], 1 - 2 * stats["alpha"], stats["ci_level_bonferroni"]
    wd_short, wd_long = float(claim.threshold("wd_short")), float(claim.threshold("wd_long"))
    per_size = "; ".join(f"{z.size} {z.ci.mean:+.4f} [{z.ci.low:+.4f}, {z.ci.high:+.4f}]" for z in tested)
    summary = (
        f"{what}: wd{fmt_wd(wd_short)} - wd{fmt_wd(wd_long)} per size ({_fmt_level(level)} CI): {per_size}; "
        f"delta {delta:g}; {stats['significant_sizes_holm']} significant after Holm; "
        f"{stats['n_diverged']} diverged run(s)"
    )
    immaterial = [f"wd{fmt_wd(w)} at {', '.join(str(z.size) for z in zs)}"
                  for w, zs in ((wd_short, sides["wd10_immaterial"]), (wd_long, sides["wd33_immaterial"])) if zs]
    if immaterial:
        summary += (f"; significant but within delta (Bonferroni {_fmt_level(level_b)} CI beside 0, not beyond "
                    f"+-delta; reported, not decisive): preferred {'; '.join(immaterial)}")
    if outcome == CONTRADICTED:
        parts = []
        if sides["wd10_wins"]:
            parts.append(f"wd10 wins at {', '.join(str(z.size) for z in sides['wd10_wins'])} by more than delta")
        beyond = [str(z.size) for z in sides["outside"] if z not in sides["wd10_wins"]]
        if beyond:
            parts.append(f"wd33 better by more than delta at {', '.join(beyond)}")
        return verdict(claim, outcome, summary + f"; {'; '.join(parts)} "
                       f"(Bonferroni {_fmt_level(level_b)} CI).", stats)
    if outcome == REPRODUCED:
        return verdict(claim, outcome, summary + "; every CI lies inside [-delta, delta].", stats)
    if untestable:
        reason = (f"sizes {', '.join(map(str, untestable))} have fewer than {int(claim.threshold('min_pairs'))} "
                  f"paired seeds")
        summary += f"; untestable: {', '.join(map(str, untestable))}"
    else:
        wide = [str(z.size) for z in tested if not inside(z.ci.low, z.ci.high, -delta, delta)]
        reason = f"the CI of {', '.join(wide)} reaches beyond [-delta, delta] without lying outside it"
    raise Inconclusive(summary + ".", reason, stats)


@scenarios("C8")
def scenarios_c8(claim, arms: pd.DataFrame, noise=None) -> dict[str, Scenario]:
    """Calibration scenarios of C8 (true mean of d = y(wd10) - y(wd33) per small size).

    - true: d = 0 at every size (the paper's null below 50M);
    - boundary: the smallest size at d = +delta, the others at 0 (the equivalence claim is
      false by exactly delta at one size: false reproduction rate <= alpha);
    - violation: the smallest size at d = -2 delta (wd10 wins clearly), the others at 0.
    """
    delta = claim_delta(claim)
    order = _size_order(arms)
    first = order[0] if order else None

    def at_first(d):
        return lambda r: _wd_shift(claim, r, d if r["size"] == first else 0.0)

    return {
        "true": Scenario(_arms_with_mu(arms, at_first(0.0)), "no schedule preference at any size (d = 0)"),
        "boundary": Scenario(_arms_with_mu(arms, at_first(delta)),
                             f"{first}: wd33 better by exactly delta = {delta:g}; other sizes d = 0"),
        "violation": Scenario(_arms_with_mu(arms, at_first(-2 * delta)),
                              f"{first}: wd10 better by 2 delta = {2 * delta:g}; other sizes d = 0"),
    }

"""Decision functions for the schedule claims C1..C5 (is wd33 optimal; does it depend on bits).

Owns:
- ``decide_c1``: wd33 is within delta of the best warmdown of one (bits, size) cell
  (multiple comparison with the best, paired by seed), with the set of warmdowns that
  cannot be excluded as best; premise: a landscape that tells warmdowns apart.
- ``decide_c2``: at one size, the warmdown landscape does not depend on bit-width
  (within-seed interaction contrasts, equivalence within +-delta).
- ``decide_null_arm``: C2's contrasts on another design's table (C3 AdamW arm, C4 cosine
  arm, C5 long-training arm), per size and step count, corrected over all of them.
- the premise of C2-C5 (``_check_penalty_premise``): a quantisation penalty clearly above
  delta, without which "no interaction" is reproduced trivially.
- ``scenarios_c1`` / ``scenarios_null``: the calibration scenarios of these rules.

Decisions are pure: a results table and a ``Claim`` in, a ``Verdict`` out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hypotheses.calibration import Scenario
from hypotheses.groupstats import ContrastStats, optimum_key
from hypotheses.intervals import bonferroni, inside, lower_bound, mcb_min, mean_ci, outside
from hypotheses.verdict import (
    MIN_FINITE_SEEDS,
    PREMISE_MET,
    RUN_KEY,
    Inconclusive,
    PremiseAbsent,
    ArmTable,
    WdRanking,
    claim_delta,
    count_stats,
    decider,
    fmt_bits,
    fmt_wd,
    is_wd,
    paired,
    paired_difference,
    require_table,
    require_unique_runs,
    scenarios,
    three_way,
    verdict,
)

_FACTORS = ("size", "bits", "warmdown", "lr_mult")


# ---------------------------------------------------------------------------------------
# C1
# ---------------------------------------------------------------------------------------


def _c1_best_set(ranked: dict, alpha: float, stats: dict):
    """The warmdowns that cannot be excluded as best (Hsu's MCB, ``intervals.mcb_min``), each
    at its best LR, paired by seed: reported, not decided on. Also ``mcb_low_wd<w>``, the
    simultaneous lower bound of mu(w) - min of the others (> 0: w is surely not the best)."""
    mcb = mcb_min(ranked, alpha, MIN_FINITE_SEEDS)
    if len(ranked) >= 2:
        stats["mcb_best_set"] = ",".join(fmt_wd(w) for w in mcb.best_set)
        stats["mcb_level"] = mcb.level
        for w in ranked:
            stats[f"mcb_low_wd{fmt_wd(w)}"] = mcb.low[w]
    return mcb


def _c1_premise(what: str, mcb, delta: float, stats: dict) -> None:
    """C1's premise: the landscape tells warmdowns apart. "wd33 is within delta of the best"
    is informative only where some warmdown is worse than the best by more than delta: on a
    landscape flatter than delta every warmdown "is optimal". Met iff some warmdown's MCB
    lower bound of mu(w) - min of the others exceeds delta (the same simultaneous bounds as
    the rule, so every table the rule would contradict meets it); else PremiseAbsent."""
    formed = [w for w, lo in mcb.low.items() if math.isfinite(lo)]
    stats.update(premise_statistic="largest_mcb_lower_bound_bpb", premise_threshold=delta)
    if not formed:
        raise Inconclusive(f"{what}: no two warmdowns share {MIN_FINITE_SEEDS} finite seeds at their best LRs.",
                           f"fewer than {MIN_FINITE_SEEDS} paired seeds between any two warmdowns", stats)
    worst = max(formed, key=lambda w: mcb.low[w])
    bound = mcb.low[worst]
    stats.update(premise_bound=bound, premise_wd=worst)
    if not bound > delta:
        raise PremiseAbsent(
            f"{what}: the warmdown landscape is flat within delta: no warmdown is surely worse than the best by "
            f"more than delta {delta:g} (largest MCB lower bound {bound:+.4f}, wd {fmt_wd(worst)}); cannot be "
            f"excluded as best (MCB): wd {stats.get('mcb_best_set', '')}.",
            f"the warmdown landscape cannot tell warmdowns apart (no warmdown surely worse than the best by more "
            f"than delta {delta:g}: largest lower bound {bound:+.4f}), so every warmdown would 'be optimal'", stats)
    stats["premise"] = PREMISE_MET


@decider("C1")
def decide_c1(table: pd.DataFrame, claim, *, bits: int, size: str):
    """C1 on one (bits, size) cell: is wd33 within delta of the best warmdown? The rule and
    premise: fixtures/claims.toml [C1] (``python -m hypotheses rules``).

    Steps: ``_c1_cell`` (validate, rank every warmdown at its best LR under the shared
    diverged-run rule), ``_c1_best_set`` + ``_c1_premise`` (Hsu's MCB set, reported; the
    landscape premise), ``_c1_differences`` (pair each ranked warmdown with wd33 by seed:
    ``dropped_wd`` diverged at every LR, ``too_few_pairs_wd`` under 2 paired seeds),
    ``_c1_explain`` (Bonferroni MCB bounds of theta, the outcome, the sentence). Why Bonferroni
    and not Hsu's exact constant: Hsu's d assumes equally correlated comparisons with one
    variance, which paired differences of unequal spread are not; with 2-3 comparisons
    Bonferroni costs little.
    """
    what = f"{claim.id}[{fmt_bits(bits)}-{size}]"
    cell, ref, ranking, arms, stats = _c1_cell(table, claim, bits, size, what)
    wds = sorted(cell["warmdown"].unique())
    ranked = {w: arms.at(bits, w, ranking.best_lr[w]) for w in wds if math.isfinite(ranking.scores[w])}
    _c1_premise(what, _c1_best_set(ranked, stats["alpha"], stats), stats["delta"], stats)
    diffs = _c1_differences(ranked, wds, ref, what, stats)
    return _c1_explain(claim, what, diffs, ref, ranking, stats)


def _c1_cell(table: pd.DataFrame, claim, bits: int, size: str, what: str):
    """The cell's validated runs, wd33, the ranking at the best LRs, the arm table and the stats so
    far; inconclusive (too few seeds) with < 2 finite seeds or no wd33 with 2 finite seeds."""
    metric = claim.threshold("metric")
    expected, tol = float(claim.threshold("expected_wd")), float(claim.threshold("wd_tol"))
    alpha, delta = float(claim.threshold("alpha")), claim_delta(claim)
    t = require_table(table, _FACTORS, metric, what=what)
    cell = t[(t["bits"] == bits) & (t["size"] == size)]
    if cell.empty:
        raise ValueError(f"{what}: no runs with bits={bits}, size={size!r} in the table")
    require_unique_runs(cell, RUN_KEY, what=what)
    stats = {**count_stats(cell), "bits": int(bits), "size": str(size), "metric": metric,
             "expected_wd": expected, "delta": delta, "alpha": alpha, "region": f"<= {delta:g}",
             "statistic": "wd33_minus_best_other_bpb", "ci_level": 1 - 2 * alpha}
    wds = sorted(cell["warmdown"].unique())
    n_finite_seeds = cell.loc[cell["finite"], "seed"].nunique()
    if n_finite_seeds < MIN_FINITE_SEEDS:
        raise Inconclusive(f"{what}: only {n_finite_seeds} seed(s) with a finite run.",
                           f"fewer than {MIN_FINITE_SEEDS} seeds with finite runs; no seed noise to judge", stats)
    ref = next((w for w in wds if is_wd(w, expected, tol)), None)
    if ref is None:
        raise Inconclusive(f"{what}: warmdowns {[fmt_wd(w) for w in wds]} do not include {fmt_wd(expected)}.",
                           f"wd={fmt_wd(expected)} is not among the warmdown values of this cell", stats)
    arms = ArmTable(cell, metric)
    ranking = arms.ranking(int(bits))
    for wd in wds:
        stats[f"mean_wd{fmt_wd(wd)}"] = ranking.scores[wd]
        stats[f"best_lr_wd{fmt_wd(wd)}"] = ranking.best_lr[wd]
    if ranking.n_ranked >= 1:
        stats["optimal_wd"] = ranking.best
        if ranking.n_ranked >= 2:
            stats["runner_up_wd"] = ranking.runner_up
            stats["margin_bpb"] = ranking.scores[ranking.runner_up] - ranking.scores[ranking.best]
    if not math.isfinite(ranking.scores[ref]):
        raise Inconclusive(f"{what}: wd {fmt_wd(ref)} has no LR with {MIN_FINITE_SEEDS} finite seeds.",
                           f"wd {fmt_wd(ref)} diverged at every LR; its mean cannot be compared", stats)
    return cell, ref, ranking, arms, stats


def _c1_differences(ranked: dict, wds: list, ref: float, what: str, stats: dict) -> dict:
    """{w: y(wd33) - y(w) per paired seed} for every other ranked warmdown; inconclusive when one
    has fewer than 2 seeds paired with wd33 or none can be compared."""
    diffs, dropped, too_few = {}, [], []
    for w in wds:
        if w == ref:
            continue
        if w not in ranked:  # diverged at every LR: ranks last under the shared rule, nothing to compare
            dropped.append(fmt_wd(w))
            continue
        _, d = paired_difference(ranked[ref], ranked[w])
        if len(d) >= MIN_FINITE_SEEDS:
            diffs[w] = d
        else:
            too_few.append(fmt_wd(w))
    stats["compared_wd"] = ",".join(fmt_wd(w) for w in diffs)
    stats["dropped_wd"] = ",".join(dropped)
    stats["too_few_pairs_wd"] = ",".join(too_few)
    if too_few:
        raise Inconclusive(f"{what}: wd {', '.join(too_few)} ha{'s' if len(too_few) == 1 else 've'} fewer than "
                           f"{MIN_FINITE_SEEDS} seeds paired with wd {fmt_wd(ref)} at their best LRs.",
                           f"fewer than {MIN_FINITE_SEEDS} paired seeds in the comparison of wd {fmt_wd(ref)} "
                           f"with wd {', '.join(too_few)}", stats)
    if not diffs:
        raise Inconclusive(f"{what}: no other warmdown has {MIN_FINITE_SEEDS} seeds paired with wd {fmt_wd(ref)}.",
                           "nothing to compare wd 0.33 with", stats)
    return diffs


def _c1_explain(claim, what: str, diffs: dict, ref: float, ranking: WdRanking, stats: dict):
    """Simultaneous bounds of theta (U = max upper, L = max lower of the one-sided 1 - alpha/(k-1)
    bounds), the outcome (U <= delta reproduces, L > delta contradicts) and the sentence."""
    delta = stats["delta"]
    level = 1 - 2 * stats["alpha"] / len(diffs)  # two-sided level whose ends are the one-sided 1 - alpha/(k-1) bounds
    cis = {w: mean_ci(d, level) for w, d in diffs.items()}
    upper = max(c.high for c in cis.values())
    lower = max(c.low for c in cis.values())
    worst = max(cis, key=lambda w: cis[w].mean)  # the warmdown that beats wd33 by the most
    for w, c in cis.items():
        stats[f"d_wd{fmt_wd(w)}:mean"] = c.mean
        stats[f"d_wd{fmt_wd(w)}:low"] = c.low
        stats[f"d_wd{fmt_wd(w)}:high"] = c.high
    stats.update(statistic_value=cis[worst].mean, ci_low=lower, ci_high=upper, closest_rival_wd=worst,
                 n_pairs=min(c.n for c in cis.values()), effect_size_name="cohens_dz",
                 effect_size=cis[worst].dz)
    outcome = three_way(upper <= delta, lower > delta)
    argmin = (f"argmin wd {fmt_wd(ranking.best)}" if ranking.n_ranked >= 1 else "no argmin")
    observed = (
        f"{what}: mean(wd{fmt_wd(ref)}) - mean(best other) = {cis[worst].mean:+.4f} bpb "
        f"(vs wd {fmt_wd(worst)}), simultaneous 95 % bounds [{lower:+.4f}, {upper:+.4f}] against "
        f"delta {delta:g}; {argmin}; cannot be excluded as best (MCB): wd {stats['mcb_best_set']}; "
        f"{min(c.n for c in cis.values())} paired seeds; "
        f"{stats['n_diverged']} diverged run(s)."
    )
    reason = ""
    if outcome == "inconclusive":
        reason = (f"the bounds [{lower:+.4f}, {upper:+.4f}] straddle delta {delta:g}: more seeds needed "
                  f"to tell whether wd33 is within delta of the best")
    return verdict(claim, outcome, observed, stats, reason)


# ---------------------------------------------------------------------------------------
# C2 and its arms (C3/C4/C5): within-seed interaction contrasts, equivalence within delta
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Contrast:
    label: str  # e.g. 't20k INT6 wd0.1'
    d: np.ndarray  # per-seed interaction contrast


def _group_contrasts(cell: pd.DataFrame, claim, label: str, stats: dict) -> tuple[list[_Contrast], list[str], object]:
    """Every planned contrast I(b, w) of one group (size, step count), the planned ones
    that could not be formed (too few paired finite seeds), and the group's quantisation
    penalty at the lowest QAT bit-width (``_penalty``; None with too few paired seeds)."""
    metric = claim.threshold("metric")
    ref_bits, ref_wd = int(claim.threshold("ref_bits")), float(claim.threshold("ref_wd"))
    bits = sorted(cell["bits"].unique(), reverse=True)
    wds = sorted(cell["warmdown"].unique())
    if ref_bits not in bits or len(bits) < 2:
        raise Inconclusive(f"{label}: bit-widths {bits} lack the reference {fmt_bits(ref_bits)} or a QAT width.",
                           f"need {fmt_bits(ref_bits)} and at least one QAT bit-width", stats)
    ref = next((w for w in wds if is_wd(w, ref_wd, 1e-6)), None)
    if ref is None or len(wds) < 2:
        raise Inconclusive(f"{label}: warmdowns {[fmt_wd(w) for w in wds]} lack {fmt_wd(ref_wd)} or a second value.",
                           f"need wd {fmt_wd(ref_wd)} and at least one other warmdown", stats)
    arms = ArmTable(cell, metric)
    rankings: dict[int, WdRanking] = {b: arms.ranking(b) for b in bits}
    for b, r in rankings.items():
        if r.n_ranked >= 1:
            stats[optimum_key(label, fmt_bits(b))] = r.best
    optima = {fmt_wd(r.best) for r in rankings.values() if r.n_ranked >= 1}
    stats[f"{label}:same_optimal_wd"] = int(len(optima) == 1)

    def arm(b, w) -> dict[int, float]:
        return arms.at(b, w, rankings[b].best_lr[w])

    out, missing = [], []
    for b in bits:
        if b == ref_bits:
            continue
        for w in wds:
            if w == ref:
                continue
            name = f"{label} {fmt_bits(b)} wd{fmt_wd(w)}"
            seeds, (bw, br, rw, rr) = paired(arm(b, w), arm(b, ref), arm(ref_bits, w), arm(ref_bits, ref))
            if len(seeds) < MIN_FINITE_SEEDS:
                missing.append(name)
                continue
            out.append(_Contrast(name, (bw - br) - (rw - rr)))
    low_bits = min(b for b in bits if b != ref_bits)
    return out, missing, _penalty(arm, low_bits, ref_bits, wds, label, float(claim.threshold("alpha")), stats)


def _penalty(arm, bits: int, ref_bits: int, wds: list, label: str, alpha: float, stats: dict):
    """The quantisation penalty of one group at ``bits``: per seed, the mean over warmdowns of
    y(bits, w) - y(ref_bits, w), each (bits, wd) at its best LR, over the warmdowns with both
    arms ranked, on the seeds with all those arms finite (the seed offset cancels, as in the contrasts); its mean with the
    two-sided 1 - 2 alpha interval (``ci.low`` is the one-sided 1 - alpha lower bound).
    None with fewer than MIN_FINITE_SEEDS such seeds."""
    usable = [w for w in wds if arm(bits, w) and arm(ref_bits, w)]  # a warmdown diverged at every LR has no penalty
    if not usable:
        return None
    arms_q = [arm(bits, w) for w in usable]
    arms_r = [arm(ref_bits, w) for w in usable]
    seeds, vals = paired(*arms_q, *arms_r)
    if len(seeds) < MIN_FINITE_SEEDS:
        return None
    n = len(usable)
    d = sum(vals[i] - vals[n + i] for i in range(n)) / n
    ci = lower_bound(d, alpha)
    stats[f"{label}:penalty_{fmt_bits(bits)}"] = ci.mean
    stats[f"{label}:penalty_{fmt_bits(bits)}_low"] = ci.low
    return bits, ci


def _check_penalty_premise(penalties: list[tuple[str, object]], delta: float, what: str, stats: dict) -> None:
    """C2-C5's premise: a quantisation penalty clearly above delta at the bit-width under test
    (the lowest QAT bit-width of the claim, INT6: the primary hypothesis is about it), in
    every group. Without a penalty there is nothing for a schedule x bit-width interaction to
    act on, and "no interaction within +-delta" would be reproduced trivially. Met iff every
    group's one-sided (1 - alpha) lower bound of the mean penalty exceeds delta (an
    intersection: no correction); a group with too few paired seeds for the check leaves the
    claim inconclusive (too few seeds); else PremiseAbsent, naming the groups."""
    stats.update(premise_statistic="quant_penalty_lower_bound_bpb", premise_threshold=delta)
    unchecked = [label for label, p in penalties if p is None]
    checked = [(label, p) for label, p in penalties if p is not None]
    if checked:
        label, (bits, ci) = min(checked, key=lambda x: x[1][1].low)
        stats.update(premise_bound=ci.low, premise_mean=ci.mean, premise_group=label,
                     premise_bits=int(bits))
    if unchecked:
        raise Inconclusive(f"{what}: too few paired seeds to measure the quantisation penalty of "
                           f"{', '.join(unchecked)}.",
                           f"fewer than {MIN_FINITE_SEEDS} paired seeds to check the premise "
                           f"(a quantisation penalty) in {', '.join(unchecked)}", stats)
    absent = [(label, bits, ci) for label, (bits, ci) in checked if not ci.low > delta]
    if absent:
        text = "; ".join(f"{label} {fmt_bits(bits)} - FP16 = {ci.mean:+.4f} (lower bound {ci.low:+.4f})"
                         for label, bits, ci in absent)
        raise PremiseAbsent(
            f"{what}: quantisation penalty not clearly above delta {delta:g}: {text}; "
            f"{stats['n_diverged']} diverged run(s).",
            f"no quantisation penalty clearly above delta {delta:g} for an interaction to act on ({text})",
            stats)
    stats["premise"] = PREMISE_MET


def _decide_contrasts(contrasts: list[_Contrast], missing: list[str], claim, stats: dict, what: str):
    """Equivalence of every contrast within +-delta (90 % CIs); contradiction by a
    Bonferroni-corrected CI wholly outside +-delta (corrected over every planned contrast)."""
    alpha, delta = float(claim.threshold("alpha")), claim_delta(claim)
    m = len(contrasts) + len(missing)
    tost_level, corr_level = 1 - 2 * alpha, bonferroni(1 - 2 * alpha, m)
    stats.update(delta=delta, alpha=alpha, region=f"[{-delta:g}, {delta:g}]", ci_level=tost_level,
                 statistic="binding_interaction_contrast_bpb", n_contrasts=m, n_contrasts_missing=len(missing),
                 missing_contrasts=";".join(missing), corrected_level=corr_level)
    if not contrasts:
        raise Inconclusive(f"{what}: no interaction contrast has {MIN_FINITE_SEEDS} paired finite seeds.",
                           "too few paired seeds for any interaction contrast", stats)
    rows = []
    for c in contrasts:
        eq, corr = mean_ci(c.d, tost_level), mean_ci(c.d, corr_level)
        rows.append((c, eq, corr))
        stats.update(ContrastStats(c.label, mean=eq.mean, ci90_low=eq.low, ci90_high=eq.high).as_stats())
    # headline: the contrast whose 90 % CI reaches furthest from 0 (the one that binds the decision)
    worst_c, worst_eq, _ = max(rows, key=lambda r: max(abs(r[1].low), abs(r[1].high)))
    stats.update(statistic_value=worst_eq.mean, ci_low=worst_eq.low, ci_high=worst_eq.high,
                 worst_contrast=worst_c.label, n_pairs=min(eq.n for _, eq, _ in rows),
                 effect_size_name="cohens_dz", effect_size=worst_eq.dz)
    all_inside = not missing and all(inside(eq.low, eq.high, -delta, delta) for _, eq, _ in rows)
    breaking = [c.label for c, _, corr in rows if outside(corr.low, corr.high, -delta, delta)]
    outcome = three_way(all_inside, bool(breaking))
    n_in = sum(inside(eq.low, eq.high, -delta, delta) for _, eq, _ in rows)
    observed = (
        f"{what}: {n_in}/{m} interaction contrasts have their 90 % CI inside +-{delta:g} bpb; binding "
        f"{worst_c.label} = {worst_eq.mean:+.4f} [{worst_eq.low:+.4f}, {worst_eq.high:+.4f}] "
        f"({worst_eq.n} paired seeds)"
        + (f"; outside +-delta at the corrected level: {', '.join(breaking)}" if breaking else "")
        + (f"; not formed (too few paired seeds): {', '.join(missing)}" if missing else "")
        + f"; {stats['n_diverged']} diverged run(s)."
    )
    reason = ""
    if outcome == "inconclusive":
        parts = [f"contrasts not formed (fewer than {MIN_FINITE_SEEDS} paired finite seeds): {', '.join(missing)}"] if missing else []
        if n_in < len(rows):
            parts.append(f"{len(rows) - n_in} contrast CI(s) cross +-{delta:g} without lying outside it: "
                         f"more seeds needed to tell")
        reason = "; ".join(parts)
    return verdict(claim, outcome, observed, stats, reason)


def _null_slice(table: pd.DataFrame, claim, what: str) -> pd.DataFrame:
    metric = claim.threshold("metric")
    t = require_table(table, _FACTORS, metric, what=what)
    bits = [int(b) for b in claim.threshold("bits")]
    return t[t["bits"].isin(bits)]


@decider("C2")
def decide_c2(table: pd.DataFrame, claim, *, size: str):
    """C2 at one size: the warmdown landscape does not depend on bit-width. The rule and premise:
    fixtures/claims.toml [C2] (``python -m hypotheses rules``).

    Steps: ``_group_contrasts`` (the within-seed interaction contrasts, each (bits, wd) at its best
    lr_mult, paired by seed: the seed is the block, so its offset cancels; an ANOVA that treats runs
    as independent inflates its error term 7-32x and favours this null claim), the premise
    (``_check_penalty_premise``), then ``_decide_contrasts`` (equivalence within +-delta). A
    contrast whose four arms share fewer than 2 finite seeds is not formed, which leaves the claim
    inconclusive unless another contrast contradicts.
    """
    what = f"{claim.id}[{size}]"
    t = _null_slice(table, claim, what)
    cell = t[t["size"] == size]
    if cell.empty:
        raise ValueError(f"{what}: no runs with size={size!r} and bits in {claim.threshold('bits')}")
    require_unique_runs(cell, RUN_KEY, what=what)
    stats = {**count_stats(cell), "size": str(size), "metric": claim.threshold("metric")}
    contrasts, missing, penalty = _group_contrasts(cell, claim, str(size), stats)
    _check_penalty_premise([(str(size), penalty)], claim_delta(claim), what, stats)
    return _decide_contrasts(contrasts, missing, claim, stats, what)


def _arm_groups(t: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Per-size groups, split further by step count when a size has several."""
    if "n_params" in t.columns:
        order = t.groupby("size")["n_params"].min().sort_values().index.tolist()
    else:
        order = sorted(t["size"].unique())
    groups = []
    for size in order:
        at = t[t["size"] == size]
        if "steps" in at.columns and at["steps"].nunique() > 1:
            for steps, g in at.groupby("steps", sort=True):
                groups.append((f"{size}@{int(steps)}steps", g))
        else:
            groups.append((str(size), at))
    return groups


@decider("C3", "C4", "C5")
def decide_null_arm(table: pd.DataFrame, claim):
    """C3/C4/C5: C2's contrasts (see ``decide_c2``) on another design's table. The rules:
    fixtures/claims.toml [C3], [C4], [C5].

    The arm's table (AdamW arm, cosine arm, long-training arm) is cut per size, and per
    step count where a size was trained for several lengths; every group's contrasts
    join one family. Reproduced iff every contrast of every group has its 90 % CI inside
    +-delta; contradicted iff some contrast's CI, Bonferroni-corrected over the whole
    family, lies wholly outside; else inconclusive. Premise: C2's, in every group.
    """
    what = f"{claim.id}[{claim.design}]"
    t = _null_slice(table, claim, what)
    if t.empty:
        raise ValueError(f"{what}: no runs with bits in {claim.threshold('bits')}")
    key = list(RUN_KEY) + (["steps"] if "steps" in t.columns else [])
    require_unique_runs(t, key, what=what)
    stats = {**count_stats(t), "metric": claim.threshold("metric")}
    contrasts, missing, penalties = [], [], []
    groups = _arm_groups(t)
    stats["groups"] = ",".join(label for label, _ in groups)
    for label, group in groups:
        c, m, p = _group_contrasts(group, claim, label, stats)
        contrasts += c
        missing += m
        penalties.append((label, p))
    _check_penalty_premise(penalties, claim_delta(claim), what, stats)
    return _decide_contrasts(contrasts, missing, claim, stats, what)


# ---------------------------------------------------------------------------------------
# Calibration scenarios
# ---------------------------------------------------------------------------------------

# The LR bowl of every scenario: x1 beats x0.5 and x2 by 3 delta, so "each warmdown at its
# best LR" picks x1 as the paper's LR grid (which brackets the optimum) would.
_LR_BOWL = 3.0
_BASE = 2.0  # any level: every rule works on differences


def _lr_term(arms: pd.DataFrame, delta: float) -> np.ndarray:
    return _LR_BOWL * delta * np.log2(arms["lr_mult"].to_numpy(dtype=float)) ** 2


# Depth of the scenarios' warmdown bowl, in deltas, at the warmdown farthest from 0.33: deep
# enough that the premises (a landscape that tells warmdowns apart, C1) hold with high
# probability, so the scenarios measure the rule, not the premise check.
_WD_BOWL = 3.0


def _wd_bowl(wd: np.ndarray, centre: float) -> np.ndarray:
    """(wd - centre)^2 scaled to 1 at the farthest warmdown of the design (0 if only one)."""
    shape = (wd - centre) ** 2
    return shape / shape.max() if shape.max() > 0 else shape


@scenarios("C1")
def scenarios_c1(claim, arms: pd.DataFrame, noise=None) -> dict[str, Scenario]:
    """C1 at one (bits, size) cell, on a warmdown bowl centred on wd33 whose farthest
    warmdown is worse by ``_WD_BOWL`` deltas (the premise: a landscape that tells warmdowns
    apart).

    true: the bowl alone (wd33 optimal). boundary: one rival warmdown (the shortest, the
    paper's most-argued alternative wd10) lifted out of the bowl to beat wd33 by exactly
    delta. violation: by 3 delta. In a two-warmdown design the premise rests on the rival
    alone, so 'true' is then inconclusive (premise absent) by construction.
    """
    delta = claim_delta(claim)
    expected = float(claim.threshold("expected_wd"))
    wd = arms["warmdown"].to_numpy(dtype=float)
    rivals = sorted({w for w in wd if abs(w - expected) > 1e-6})
    rival = rivals[0]  # the shortest warmdown: the paper's most-argued alternative (wd10)
    is_rival = np.abs(wd - rival) < 1e-6
    base = _BASE + _lr_term(arms, delta) + _WD_BOWL * delta * _wd_bowl(wd, expected)

    def with_rival(gain: float) -> pd.DataFrame:
        return arms.assign(mu=np.where(is_rival, _BASE + _lr_term(arms, delta) - gain, base))

    bowl = f"a warmdown bowl around wd33 ({_WD_BOWL:g} delta deep at its farthest warmdown)"
    return {
        "true": Scenario(arms.assign(mu=base), f"{bowl}: wd33 optimal"),
        "boundary": Scenario(with_rival(delta), f"{bowl}, but wd {rival:g} beats wd33 by exactly delta = {delta:g}"),
        "violation": Scenario(with_rival(3 * delta), f"{bowl}, but wd {rival:g} beats wd33 by 3 delta = {3 * delta:g}"),
    }


# The scenarios' quantisation penalty in deltas (no interaction in itself), by rank among the
# claim's QAT bit-widths: the lowest (INT6, or its stand-in at a profile that substitutes
# bit-widths) 3 delta, clearly above the premise's delta; every milder one (INT8) 1 delta.
_PENALTY_LOWEST, _PENALTY_MILDER = 3.0, 1.0


@scenarios("C2", "C3", "C4", "C5")
def scenarios_null(claim, arms: pd.DataFrame, noise=None) -> dict[str, Scenario]:
    """C2-C5 on one cell (one size, or an arm's sizes and lengths).

    All scenarios share a warmdown bowl (wd10 worse than wd33 by delta at FP16) and an
    additive quantisation penalty in deltas (``_PENALTY_LOWEST``: the lowest QAT bit-width,
    INT6 or its stand-in, 3; ``_PENALTY_MILDER``: INT8 1; no interaction in itself; the
    lowest's is clearly above delta, so the premise holds with high probability and the
    scenarios measure the rule). true: nothing else. boundary: INT6's bowl is deeper by an amount
    that makes its largest interaction contrast exactly delta (the paper's primary
    hypothesis at the edge of mattering). violation: 3 delta.
    """
    delta = claim_delta(claim)
    ref_wd = float(claim.threshold("ref_wd"))
    wd = arms["warmdown"].to_numpy(dtype=float)
    bits = arms["bits"].to_numpy(dtype=int)
    shape = (wd - ref_wd) ** 2
    shape = shape / shape.max() if shape.max() > 0 else shape
    qat = bits == min(bits)  # the lowest QAT bit-width carries the penalty the premise needs and the planted interaction
    milder = (bits != int(claim.threshold("ref_bits"))) & ~qat
    penalty = delta * (_PENALTY_LOWEST * qat + _PENALTY_MILDER * milder)
    base = _BASE + _lr_term(arms, delta) + delta * shape + penalty

    def deeper(amount: float) -> pd.DataFrame:
        return arms.assign(mu=base + amount * shape * qat)

    low = fmt_bits(int(bits.min()))
    return {
        "true": Scenario(arms.assign(mu=base), "same warmdown bowl at every bit-width (additive penalties)"),
        "boundary": Scenario(deeper(delta), f"{low}'s bowl deeper: largest contrast = delta = {delta:g}"),
        "violation": Scenario(deeper(3 * delta), f"{low}'s bowl deeper: largest contrast = 3 delta = {3 * delta:g}"),
    }

"""Decision functions for the schedule claims C1..C5 (is wd33 optimal; does it depend on bits).

Owns:
- ``decide_c1``: the optimal warmdown of one (bits, size) cell is 0.33.
- ``decide_c2``: at one size, the optimal warmdown does not depend on bit-width
  (same argmin at FP16/INT8/INT6 and no wd x bits interaction).
- ``decide_null_arm``: C2's rule on another design's table (C3 AdamW arm, C4 cosine arm,
  C5 long-training arm), decided per size (and per step count), holding iff it holds at
  every size present.

All functions are pure: a results table and a ``Claim`` in, a ``Verdict`` out.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats as sps
from statsmodels.stats.anova import anova_lm

from hypotheses.verdict import (
    MIN_FINITE_SEEDS,
    RUN_KEY,
    Verdict,
    arm_values,
    count_stats,
    decided,
    fmt_bits,
    fmt_wd,
    is_wd,
    paper_stats,
    rank_warmdowns,
    require_table,
    require_unique_runs,
    undecided,
)

_FACTORS = ("size", "bits", "wd", "lr_mult")
_INTERACTION = "C(wd):C(bits)"


def _quiet_ttest_rel(a: np.ndarray, b: np.ndarray):
    """scipy's paired t-test, without the warnings it emits on zero-variance differences."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return sps.ttest_rel(a, b)


# ---------------------------------------------------------------------------------------
# C1
# ---------------------------------------------------------------------------------------


def decide_c1(table: pd.DataFrame, claim, *, bits: int, size: str) -> Verdict:
    """C1 on one (bits, size) cell: is the optimal warmdown 0.33?

    Rule: for each warmdown take its best lr_mult (lowest mean ``metric`` over finite
    seeds, "at its best LR"); the optimal warmdown is the argmin of those means.
    Reproduced iff the optimum equals ``expected_wd`` (0.33, tolerance ``wd_tol``).
    The margin to the runner-up and a paired t-test across seeds (runner-up minus best,
    each at its own best LR, paired by seed) are reported but do not decide: the paper's
    claim is about the argmin.
    Diverged runs: excluded from means, counted in n_diverged; an (wd, lr) arm with fewer
    than 2 finite seeds scores +inf (ranks last).
    Undecided if fewer than 2 seeds have a finite run, ``expected_wd`` is not in the
    design, fewer than 2 warmdowns can be ranked on data, or the top two tie exactly.
    """
    metric = claim.threshold("metric")
    expected, tol = float(claim.threshold("expected_wd")), float(claim.threshold("wd_tol"))
    what = f"{claim.id}[{fmt_bits(bits)}-{size}]"
    t = require_table(table, _FACTORS, metric, what=what)
    cell = t[(t["bits"] == bits) & (t["size"] == size)]
    if cell.empty:
        raise ValueError(f"{what}: no runs with bits={bits}, size={size!r} in the table")
    require_unique_runs(cell, RUN_KEY, what=what)

    stats = {
        **count_stats(cell),
        "bits": int(bits),
        "size": str(size),
        "metric": metric,
        "expected_wd": expected,
        "statistic": "optimal_wd",
        "statistic_value": math.nan,
        "p_value": math.nan,
        "effect_size_name": "margin_bpb",
        "effect_size": math.nan,
        **paper_stats(claim),
    }
    n_finite_seeds = cell.loc[cell["finite"], "seed"].nunique()
    wds = sorted(cell["wd"].unique())
    if n_finite_seeds < MIN_FINITE_SEEDS:
        return undecided(
            claim,
            f"{what}: only {n_finite_seeds} seed(s) with a finite run.",
            f"fewer than {MIN_FINITE_SEEDS} seeds with finite runs; no seed noise to judge",
            stats,
        )
    if not any(is_wd(w, expected, tol) for w in wds):
        return undecided(
            claim,
            f"{what}: warmdowns {[fmt_wd(w) for w in wds]} do not include {fmt_wd(expected)}.",
            f"wd={fmt_wd(expected)} is not among the warmdown values of this cell",
            stats,
        )

    ranking = rank_warmdowns(cell, metric)
    for wd in wds:
        stats[f"mean_wd{fmt_wd(wd)}"] = ranking.scores[wd]
        stats[f"best_lr_wd{fmt_wd(wd)}"] = ranking.best_lr[wd]
    if ranking.n_ranked < 2:
        return undecided(
            claim,
            f"{what}: only {ranking.n_ranked} warmdown(s) kept {MIN_FINITE_SEEDS}+ finite "
            f"seeds at some LR.",
            f"fewer than 2 warmdown arms with >= {MIN_FINITE_SEEDS} finite seeds to compare",
            stats,
        )
    best, runner = ranking.best, ranking.runner_up
    if ranking.tied:
        return undecided(
            claim,
            f"{what}: wd {fmt_wd(best)} and wd {fmt_wd(runner)} tie exactly.",
            "the two best warmdowns tie exactly; the argmin is not unique",
            stats,
        )

    margin = ranking.scores[runner] - ranking.scores[best]
    a = arm_values(cell, metric, runner, ranking.best_lr[runner])
    b = arm_values(cell, metric, best, ranking.best_lr[best])
    paired = pd.concat([a.rename("runner"), b.rename("best")], axis=1, join="inner")
    t_stat = p = dz = math.nan
    if len(paired) >= 2:
        diff = paired["runner"] - paired["best"]
        res = _quiet_ttest_rel(paired["runner"].to_numpy(), paired["best"].to_numpy())
        t_stat, p = float(res.statistic), float(res.pvalue)
        sd = float(diff.std(ddof=1))
        dz = float(diff.mean()) / sd if sd > 0 else math.inf
    stats.update(
        statistic_value=best,
        optimal_wd=best,
        runner_up_wd=runner,
        best_lr_mult=ranking.best_lr[best],
        effect_size=margin,
        margin_bpb=margin,
        t_paired=t_stat,
        p_value=p,
        cohens_dz=dz,
        n_pairs=len(paired),
    )
    holds = is_wd(best, expected, tol)
    observed = (
        f"{what}: optimal wd = {fmt_wd(best)} at its best LR x{ranking.best_lr[best]:g} "
        f"(mean {metric} {ranking.scores[best]:.4f}); runner-up wd {fmt_wd(runner)} is "
        f"{margin:+.4f} bpb worse (paired t = {t_stat:.2f}, p = {p:.3g}, "
        f"{len(paired)} seeds); {stats['n_diverged']} diverged run(s)."
    )
    return decided(claim, holds, observed, stats)


# ---------------------------------------------------------------------------------------
# C2 and its arms (C3/C4/C5)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NullResult:
    """C2's rule on one size: holds is None when undecided."""

    holds: bool | None
    observed: str
    reason: str
    stats: dict


def _null_one_size(cell: pd.DataFrame, claim, label: str) -> _NullResult:
    metric = claim.threshold("metric")
    alpha = float(claim.threshold("alpha"))
    stats: dict = {
        "statistic": "F_wd_x_bits",
        "statistic_value": math.nan,
        "p_value": math.nan,
        "effect_size_name": "partial_eta2",
        "effect_size": math.nan,
        "alpha": alpha,
        "lr_handling": "best lr_mult per (bits, wd), then two-way ANOVA on those rows",
    }
    bits_present = sorted(cell["bits"].unique(), reverse=True)
    wds = sorted(cell["wd"].unique())
    n_finite_seeds = cell.loc[cell["finite"], "seed"].nunique()
    if n_finite_seeds < MIN_FINITE_SEEDS:
        return _NullResult(
            None,
            f"{label}: only {n_finite_seeds} seed(s) with a finite run.",
            f"fewer than {MIN_FINITE_SEEDS} seeds with finite runs (no residual df)",
            stats,
        )
    if len(bits_present) < 2 or len(wds) < 2:
        return _NullResult(
            None,
            f"{label}: {len(bits_present)} bit-width(s) x {len(wds)} warmdown(s).",
            "need at least 2 bit-widths and 2 warmdown values",
            stats,
        )
    rankings = {}
    for b in bits_present:
        ranking = rank_warmdowns(cell[cell["bits"] == b], metric)
        rankings[b] = ranking
        if ranking.n_ranked >= 1:
            stats[f"optimal_wd_{fmt_bits(b)}"] = ranking.best
        if ranking.n_ranked < 2 or ranking.tied:
            why = "ties exactly" if ranking.tied else "has fewer than 2 rankable warmdowns"
            return _NullResult(
                None,
                f"{label}: the argmin at {fmt_bits(b)} {why}.",
                f"{fmt_bits(b)} {why} (each needs >= {MIN_FINITE_SEEDS} finite seeds at some LR)",
                stats,
            )
    optima = {b: r.best for b, r in rankings.items()}
    same_argmin = len({fmt_wd(w) for w in optima.values()}) == 1
    stats["same_optimal_wd"] = int(same_argmin)

    # ANOVA on each (bits, wd) cell's best-LR runs; keep warmdowns ranked at every bits
    # (a warmdown that diverged at some bit-width has no cell there and cannot enter the
    # interaction test; it still ranked last in the argmin above).
    kept = [w for w in wds if all(math.isfinite(r.scores[w]) for r in rankings.values())]
    stats["anova_wd_levels"] = ",".join(fmt_wd(w) for w in kept)
    stats["anova_dropped_wd"] = ",".join(fmt_wd(w) for w in wds if w not in kept)
    if len(kept) < 2:
        return _NullResult(
            None,
            f"{label}: only {len(kept)} warmdown(s) have finite seeds at every bit-width.",
            "fewer than 2 warmdown values with >= 2 finite seeds at every bit-width",
            stats,
        )
    parts = []
    for b, ranking in rankings.items():
        for w in kept:
            vals = arm_values(cell[cell["bits"] == b], metric, w, ranking.best_lr[w])
            parts.append(pd.DataFrame({"y": vals.to_numpy(), "wd": w, "bits": b}))
    data = pd.concat(parts, ignore_index=True)
    model = smf.ols("y ~ C(wd) * C(bits)", data=data).fit()
    if model.df_resid < 1:
        return _NullResult(
            None, f"{label}: no residual degrees of freedom.", "no replicate seeds", stats
        )
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        table = anova_lm(model, typ=2)
    ss_int, ss_res = float(table.loc[_INTERACTION, "sum_sq"]), float(table.loc["Residual", "sum_sq"])
    f_val, p = float(table.loc[_INTERACTION, "F"]), float(table.loc[_INTERACTION, "PR(>F)"])
    eta2 = ss_int / (ss_int + ss_res) if ss_int + ss_res > 0 else math.nan
    stats.update(
        statistic_value=f_val,
        F=f_val,
        df_num=float(table.loc[_INTERACTION, "df"]),
        df_den=float(model.df_resid),
        p_value=p,
        effect_size=eta2,
        partial_eta2=eta2,
        n_anova_rows=len(data),
    )
    if not math.isfinite(p):
        return _NullResult(
            None, f"{label}: the ANOVA is degenerate (F = {f_val}).", "degenerate ANOVA", stats
        )
    no_interaction = p >= alpha
    argmins = ", ".join(f"{fmt_bits(b)} {fmt_wd(w)}" for b, w in optima.items())
    anova = (
        f"wd x bits F({stats['df_num']:.0f},{stats['df_den']:.0f}) = {f_val:.2f}, "
        f"p = {p:.3g}, partial eta^2 = {eta2:.3f}"
    )
    failed = []
    if not same_argmin:
        failed.append("the optimal wd differs by bit-width")
    if not no_interaction:
        failed.append(f"the wd x bits interaction is significant (p < {alpha})")
    verdict_part = ("fails: " + " and ".join(failed)) if failed else "holds"
    observed = (
        f"{label}: {verdict_part}; optimal wd {argmins}; {anova}."
    )
    return _NullResult(same_argmin and no_interaction, observed, "", stats)


def _null_slice(table: pd.DataFrame, claim, what: str) -> pd.DataFrame:
    metric = claim.threshold("metric")
    t = require_table(table, _FACTORS, metric, what=what)
    bits = [int(b) for b in claim.threshold("bits")]
    return t[t["bits"].isin(bits)]


def decide_c2(table: pd.DataFrame, claim, *, size: str) -> Verdict:
    """C2 at one size: the optimal warmdown does not depend on bit-width.

    Rule (bits in ``thresholds.bits``, FP16/INT8/INT6): reproduced iff (a) the optimal
    warmdown (C1's rule: each wd at its best lr_mult, argmin of mean ``metric``) is the
    same at every bit-width AND (b) the wd x bits interaction of a two-way ANOVA
    (statsmodels OLS ``y ~ C(wd) * C(bits)``, ``anova_lm(typ=2)``) has p >= alpha.
    LR handling: only each (bits, wd) cell's best-LR runs enter the ANOVA (seeds are the
    replicates), because the claim is about the schedule at its best LR; a fixed
    C(lr_mult) term would leave the lr x wd and lr x bits interactions in the residual
    and so inflate it, which biases the test towards this null claim.
    No multiplicity correction across sizes: correcting would favour the null claim.
    Partial eta^2 of the interaction is reported (not decided on) to show how large a
    non-significant effect is.
    Diverged runs: excluded, counted; a wd with < 2 finite seeds at every LR ranks last
    in (a) and is dropped from the ANOVA (listed in stats['anova_dropped_wd']).
    Undecided if fewer than 2 seeds with finite runs (no residual df), 2 bit-widths or 2
    warmdowns; a bit-width whose argmin cannot be ranked (fewer than 2 warmdowns with
    >= 2 finite seeds) or ties; or fewer than 2 warmdowns with >= 2 finite seeds at every
    bit-width.
    """
    what = f"{claim.id}[{size}]"
    t = _null_slice(table, claim, what)
    cell = t[t["size"] == size]
    if cell.empty:
        raise ValueError(f"{what}: no runs with size={size!r} and bits in {claim.threshold('bits')}")
    require_unique_runs(cell, RUN_KEY, what=what)
    result = _null_one_size(cell, claim, what)
    stats = {**count_stats(cell), "size": str(size), **result.stats, **paper_stats(claim)}
    if result.holds is None:
        return undecided(claim, result.observed, result.reason, stats)
    return decided(claim, result.holds, result.observed, stats)


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


def decide_null_arm(table: pd.DataFrame, claim) -> Verdict:
    """C3/C4/C5: C2's rule (see ``decide_c2``) on another design's table.

    The arm's table (AdamW arm, cosine arm, long-training arm) is decided per size, and
    per step count where a size was trained for several lengths; the claim holds iff it
    holds in every group present. Not reproduced as soon as one group fails (even if
    another is undecided); undecided if no group fails but one is undecided.
    Per-group details are in stats under '<group>:' prefixed keys; the headline
    statistic is the smallest interaction p over groups, the effect size the largest
    partial eta^2.
    """
    what = f"{claim.id}[{claim.design}]"
    t = _null_slice(table, claim, what)
    if t.empty:
        raise ValueError(f"{what}: no runs with bits in {claim.threshold('bits')}")
    key = list(RUN_KEY) + (["steps"] if "steps" in t.columns else [])
    require_unique_runs(t, key, what=what)

    stats = {**count_stats(t), **paper_stats(claim)}
    results = []
    for label, group in _arm_groups(t):
        r = _null_one_size(group, claim, f"{claim.id}[{label}]")
        results.append((label, r))
        outcome = "undecided" if r.holds is None else ("holds" if r.holds else "fails")
        stats[f"{label}:outcome"] = outcome
        for k in ("F", "p_value", "partial_eta2", "same_optimal_wd"):
            if k in r.stats:
                stats[f"{label}:{k}"] = r.stats[k]
        for k, v in r.stats.items():
            if k.startswith("optimal_wd_"):
                stats[f"{label}:{k}"] = v
    decided_ = [(lab, r) for lab, r in results if r.holds is not None]
    ps = [r.stats["p_value"] for _, r in decided_]
    etas = [r.stats["partial_eta2"] for _, r in decided_]
    n_hold = sum(bool(r.holds) for _, r in decided_)
    stats.update(
        statistic="min_p_wd_x_bits",
        statistic_value=min(ps) if ps else math.nan,
        p_value=min(ps) if ps else math.nan,
        effect_size_name="max_partial_eta2",
        effect_size=max(etas) if etas else math.nan,
        alpha=float(claim.threshold("alpha")),
        groups_holding=f"{n_hold}/{len(results)}",
    )
    observed = " ".join(r.observed for _, r in results)
    failing = [lab for lab, r in results if r.holds is False]
    pending = [lab for lab, r in results if r.holds is None]
    if failing:
        return decided(claim, False, f"Fails at {', '.join(failing)}. {observed}", stats)
    if pending:
        reasons = "; ".join(f"{lab}: {r.reason}" for lab, r in results if r.holds is None)
        return undecided(claim, observed, reasons, stats)
    return decided(claim, True, f"Holds at all {len(results)} group(s). {observed}", stats)

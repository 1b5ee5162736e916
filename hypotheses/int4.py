"""Decision functions for the INT4 claims: C7 (wd33 decisive at 50M+), C8 (noise below 50M).

Owns:
- ``paired_wd_differences``: per-seed d = metric(wd_short) - metric(wd_long) at INT4.
- ``decide_c7``: one large size, wd33 beats wd10 decisively (paired z, every seed).
- ``decide_c8``: the small sizes together, no size has a significant preference (Holm).
All pure: a results table in, a Verdict out.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from hypotheses.verdict import (
    RUN_KEY,
    Verdict,
    count_stats,
    decided,
    fmt_wd,
    paper_stats,
    require_table,
    require_unique_runs,
    undecided,
)

_FACTORS = ("size", "bits", "wd", "lr_mult")


def paired_wd_differences(
    cell: pd.DataFrame, metric: str, wd_short: float, wd_long: float, tol: float
) -> pd.DataFrame:
    """d = metric(wd_short) - metric(wd_long), paired on (seed, lr_mult); d > 0: wd_long wins.

    A pair with a diverged (non-finite) member is dropped.
    """
    key = ["seed", "lr_mult"]
    finite = cell[cell["finite"]]
    short = finite[(finite["wd"] - wd_short).abs() <= tol].set_index(key)[metric]
    long_ = finite[(finite["wd"] - wd_long).abs() <= tol].set_index(key)[metric]
    pairs = pd.concat([short.rename("short"), long_.rename("long")], axis=1, join="inner")
    pairs["d"] = pairs["short"] - pairs["long"]
    return pairs.reset_index()


def _int4_slice(table: pd.DataFrame, claim, what: str):
    metric = claim.threshold("metric")
    bits = int(claim.threshold("bits"))
    wd_short, wd_long = float(claim.threshold("wd_short")), float(claim.threshold("wd_long"))
    tol = float(claim.threshold("wd_tol"))
    t = require_table(table, _FACTORS, metric, what=what)
    near = ((t["wd"] - wd_short).abs() <= tol) | ((t["wd"] - wd_long).abs() <= tol)
    return t[(t["bits"] == bits) & near], metric, wd_short, wd_long, tol


def _paired_summary(pairs: pd.DataFrame, ci_level: float) -> dict:
    """Paired statistics of d (>= 2 pairs): z (= paired t), p two/one-sided, CI, d_z, wins."""
    d = pairs["d"].to_numpy(dtype=float)
    n = len(d)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sps.ttest_rel(pairs["short"], pairs["long"])
        one = sps.ttest_rel(pairs["short"], pairs["long"], alternative="greater")
        ci = res.confidence_interval(confidence_level=ci_level)
    if sd > 0:
        z = mean / (sd / math.sqrt(n))
    else:  # identical differences: infinitely precise, sign of the mean decides
        z = math.copysign(math.inf, mean) if mean != 0 else math.nan
    return {
        "z": z,
        "p_two_sided": float(res.pvalue),
        "p_one_sided": float(one.pvalue),
        "mean_diff": mean,
        "sd_diff": sd,
        "ci_low": float(ci.low),
        "ci_high": float(ci.high),
        "cohens_dz": mean / sd if sd > 0 else z,
        "wins_long": int((d > 0).sum()),
        "n_pairs": n,
    }


def decide_c7(table: pd.DataFrame, claim, *, size: str) -> Verdict:
    """C7 at one large size: at INT4, wd33 is decisively better than wd10.

    Rule: d = ``metric``(wd_short=0.10) - ``metric``(wd_long=0.33), paired on (seed,
    lr_mult); z = mean(d) / (sd(d) / sqrt(n)) (the paper's "paired z"; numerically the
    paired t statistic). Reproduced iff z >= ``z_threshold`` (3.0) AND wd33 wins
    (d > 0) in every pair. The scipy ttest_rel p-values (two- and one-sided), the 95 % CI
    of mean(d), Cohen's d_z and the sign count are reported.
    Diverged runs: a pair with a diverged member is dropped (counted in n_diverged).
    Undecided if fewer than ``min_pairs`` (3) seeds have a complete pair.
    """
    what = f"{claim.id}[{size}]"
    t, metric, wd_short, wd_long, tol = _int4_slice(table, claim, what)
    cell = t[t["size"] == size]
    if cell.empty:
        raise ValueError(f"{what}: no INT4 runs at wd {wd_short}/{wd_long} for size={size!r}")
    require_unique_runs(cell, RUN_KEY, what=what)
    z_thr, min_pairs = float(claim.threshold("z_threshold")), int(claim.threshold("min_pairs"))
    ci_level = float(claim.threshold("ci_level"))
    pairs = paired_wd_differences(cell, metric, wd_short, wd_long, tol)
    n_pair_seeds = pairs["seed"].nunique()
    stats = {
        **count_stats(cell),
        "size": str(size),
        "metric": metric,
        "statistic": "paired_z",
        "statistic_value": math.nan,
        "p_value": math.nan,
        "effect_size_name": "cohens_dz",
        "effect_size": math.nan,
        "z_threshold": z_thr,
        "n_pairs": len(pairs),
        **paper_stats(claim),
    }
    label = f"wd{fmt_wd(wd_short)} - wd{fmt_wd(wd_long)}"
    if n_pair_seeds < min_pairs:
        return undecided(
            claim,
            f"{what}: only {n_pair_seeds} seed(s) with both warmdowns finite.",
            f"fewer than {min_pairs} paired seeds",
            stats,
        )
    s = _paired_summary(pairs, ci_level)
    n = s["n_pairs"]
    stats.update(
        statistic_value=s["z"],
        p_value=s["p_two_sided"],
        p_one_sided=s["p_one_sided"],
        effect_size=s["cohens_dz"],
        mean_diff_bpb=s["mean_diff"],
        sd_diff_bpb=s["sd_diff"],
        ci_low=s["ci_low"],
        ci_high=s["ci_high"],
        wins_wd_long=f"{s['wins_long']}/{n}",
    )
    holds = s["z"] >= z_thr and s["wins_long"] == n
    observed = (
        f"{what}: {label} = {s['mean_diff']:+.4f} bpb "
        f"(95% CI [{s['ci_low']:+.4f}, {s['ci_high']:+.4f}]), paired z = {s['z']:.2f} "
        f"(threshold {z_thr:g}, p = {s['p_two_sided']:.2g}); wd{fmt_wd(wd_long)} wins "
        f"{s['wins_long']}/{n} pairs; {stats['n_diverged']} diverged run(s)."
    )
    return decided(claim, holds, observed, stats)


def decide_c8(table: pd.DataFrame, claim) -> Verdict:
    """C8: at INT4 below 50M no individual size shows a significant schedule preference.

    Rule: per size, a paired t-test (scipy ttest_rel, pairs on (seed, lr_mult)) of
    d = ``metric``(wd10) - ``metric``(wd33); the per-size p-values are Holm-corrected
    together (statsmodels multipletests, method='holm') at ``alpha`` (0.05). Reproduced
    iff no size is significant after Holm; a significant size fails the claim whatever
    its direction, and a significant wd10 win (d < 0) also contradicts "not a region
    where wd10 wins" (reported in the sentence). The second half of the claim (mean
    penalty within seed noise) is reported, not decided on: per size mean(d), its 95 %
    CI, the seed-level sd(d) and |mean(d)| / sd(d).
    Diverged runs: a pair with a diverged member is dropped (counted in n_diverged).
    Undecided if fewer than ``min_sizes`` (2) sizes are present, or if a size has fewer
    than ``min_pairs`` (3) paired seeds and no testable size is significant (a
    significant size decides 'not reproduced' regardless).
    """
    what = f"{claim.id}[{claim.role or claim.design}]"
    t, metric, wd_short, wd_long, tol = _int4_slice(table, claim, what)
    if t.empty:
        raise ValueError(f"{what}: no INT4 runs at wd {wd_short}/{wd_long}")
    require_unique_runs(t, RUN_KEY, what=what)
    alpha, min_pairs = float(claim.threshold("alpha")), int(claim.threshold("min_pairs"))
    min_sizes, ci_level = int(claim.threshold("min_sizes")), float(claim.threshold("ci_level"))
    if "n_params" in t.columns:
        sizes = t.groupby("size")["n_params"].min().sort_values().index.tolist()
    else:
        sizes = sorted(t["size"].unique())
    stats = {
        **count_stats(t),
        "metric": metric,
        "n_sizes": len(sizes),
        "alpha": alpha,
        "correction": "holm",
        "statistic": "min_p_holm",
        "statistic_value": math.nan,
        "p_value": math.nan,
        "effect_size_name": "max_abs_mean_over_sd",
        "effect_size": math.nan,
        **paper_stats(claim),
    }
    if len(sizes) < min_sizes:
        return undecided(
            claim, f"{what}: only {len(sizes)} size(s) present.", f"fewer than {min_sizes} sizes", stats
        )
    summaries, untestable = {}, []
    for size in sizes:
        pairs = paired_wd_differences(t[t["size"] == size], metric, wd_short, wd_long, tol)
        stats[f"{size}:n_pairs"] = len(pairs)
        if pairs["seed"].nunique() < min_pairs:
            untestable.append(str(size))
            continue
        summaries[size] = s = _paired_summary(pairs, ci_level)
        stats.update({
            f"{size}:mean_diff": s["mean_diff"],
            f"{size}:ci_low": s["ci_low"],
            f"{size}:ci_high": s["ci_high"],
            f"{size}:sd_diff": s["sd_diff"],
            f"{size}:mean_over_sd": abs(s["mean_diff"]) / s["sd_diff"] if s["sd_diff"] > 0 else math.inf,
            f"{size}:p": s["p_two_sided"],
            f"{size}:direction": "wd33_better" if s["mean_diff"] > 0 else "wd10_better",
        })
    stats["untestable_sizes"] = ",".join(untestable)
    if not summaries:
        return undecided(
            claim,
            f"{what}: no size has {min_pairs}+ paired seeds.",
            f"every size has fewer than {min_pairs} paired seeds",
            stats,
        )
    tested = list(summaries)
    raw_p = [summaries[s]["p_two_sided"] for s in tested]
    reject, p_holm, _, _ = multipletests(raw_p, alpha=alpha, method="holm")
    for size, r, ph in zip(tested, reject, p_holm):
        stats[f"{size}:p_holm"] = float(ph)
        stats[f"{size}:significant"] = int(r)
    ratios = [stats[f"{s}:mean_over_sd"] for s in tested]
    significant = [s for s, r in zip(tested, reject) if r]
    wd10_wins = [s for s in significant if summaries[s]["mean_diff"] < 0]
    stats.update(
        statistic_value=float(min(p_holm)),
        p_value=float(min(p_holm)),
        effect_size=float(max(ratios)),
        significant_sizes=f"{len(significant)}/{len(tested)}",
        significant_wd10_wins=len(wd10_wins),
    )
    per_size = "; ".join(
        f"{s} {summaries[s]['mean_diff']:+.4f} (p_holm {stats[f'{s}:p_holm']:.2g})" for s in tested
    )
    summary = (
        f"{what}: wd{fmt_wd(wd_short)} - wd{fmt_wd(wd_long)} per size: {per_size}; "
        f"{len(significant)}/{len(tested)} significant after Holm at {alpha:g}"
    )
    if significant:
        extra = f" (wd10 wins significantly at {', '.join(map(str, wd10_wins))})" if wd10_wins else ""
        return decided(claim, False, summary + extra + ".", stats)
    if untestable:
        return undecided(
            claim,
            summary + f"; untestable: {', '.join(untestable)}.",
            f"sizes {', '.join(untestable)} have fewer than {min_pairs} paired seeds",
            stats,
        )
    return decided(claim, True, summary + f"; max |mean|/sd = {max(ratios):.2f}.", stats)

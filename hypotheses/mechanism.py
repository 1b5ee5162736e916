"""Decision function for C9: INT6-QAT weights do not snap to the INT6 grid before warmdown.

Owns ``decide_c9``: the ratio of mean pre-warmdown grid distances, INT6-QAT runs over
matched FP16 runs, with a paired bootstrap CI. Pure: a results table in, a Verdict out.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

from hypotheses.verdict import (
    RUN_KEY,
    Verdict,
    count_stats,
    decided,
    fmt_bits,
    paper_stats,
    require_table,
    require_unique_runs,
    undecided,
)

_PAIR_KEY = ["size", "wd", "lr_mult", "seed"]


def _ratio_of_means(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) / np.mean(b, axis=axis)


def _bootstrap_ratio_ci(q: np.ndarray, r: np.ndarray, claim) -> tuple[float, float, str]:
    """Paired bootstrap CI of mean(q)/mean(r): BCa, percentile if BCa degenerates."""
    rng_seed = int(claim.threshold("bootstrap_seed"))
    kwargs = dict(
        statistic=_ratio_of_means,
        paired=True,
        vectorized=True,
        n_resamples=int(claim.threshold("n_resamples")),
        confidence_level=float(claim.threshold("ci_level")),
    )
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            res = sps.bootstrap((q, r), method=method, rng=np.random.default_rng(rng_seed), **kwargs)
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return lo, hi, method
    return lo, hi, method


def decide_c9(table: pd.DataFrame, claim) -> Verdict:
    """C9: before warmdown, INT6-QAT weights are about as far from the INT6 grid as FP16's.

    Rule: R = mean(``metric`` | bits=quant_bits) / mean(``metric`` | bits=ref_bits) over
    runs matched on (size, wd, lr_mult, seed) (``metric`` = grid_dist_int6_prewd); a
    paired 95 % bootstrap CI (scipy.stats.bootstrap, paired=True, BCa falling back to
    percentile, ``n_resamples`` 2000, fixed seed). Reproduced iff band_low <= R <=
    band_high ([0.90, 1.15]) AND the CI's upper bound is not below band_low (no
    evidence of snapping). Not reproduced if R < band_low (INT6 weights sit closer to the
    grid: snapping) or R > band_high (further from the grid than FP16's).
    Diverged runs: a pair with a diverged member is dropped (counted in n_diverged).
    Undecided if fewer than ``min_pairs`` (3) matched pairs, or the FP16 mean is 0.
    """
    metric = claim.threshold("metric")
    quant_bits, ref_bits = int(claim.threshold("quant_bits")), int(claim.threshold("ref_bits"))
    low, high = float(claim.threshold("band_low")), float(claim.threshold("band_high"))
    min_pairs = int(claim.threshold("min_pairs"))
    what = f"{claim.id}[{fmt_bits(quant_bits)} vs {fmt_bits(ref_bits)}]"
    t = require_table(table, ["size", "bits", "wd", "lr_mult"], metric, what=what)
    t = t[t["bits"].isin([quant_bits, ref_bits])]
    if t.empty:
        raise ValueError(f"{what}: no runs at bits {quant_bits}/{ref_bits}")
    require_unique_runs(t, RUN_KEY, what=what)
    q = t[(t["bits"] == quant_bits) & t["finite"]].set_index(_PAIR_KEY)[metric]
    r = t[(t["bits"] == ref_bits) & t["finite"]].set_index(_PAIR_KEY)[metric]
    pairs = pd.concat([q.rename("q"), r.rename("r")], axis=1, join="inner")
    stats = {
        **count_stats(t),
        "metric": metric,
        "n_pairs": len(pairs),
        "band_low": low,
        "band_high": high,
        "statistic": "distance_ratio",
        "statistic_value": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "effect_size_name": "relative_difference",
        "effect_size": math.nan,
        **paper_stats(claim),
    }
    mean_r = float(pairs["r"].mean()) if len(pairs) else math.nan
    if len(pairs) < min_pairs:
        return undecided(
            claim,
            f"{what}: only {len(pairs)} matched pair(s) with finite grid distances.",
            f"fewer than {min_pairs} matched {fmt_bits(quant_bits)}/{fmt_bits(ref_bits)} pairs",
            stats,
        )
    if mean_r <= 0:
        return undecided(
            claim, f"{what}: FP16 mean grid distance is {mean_r}.", "FP16 distances are all zero", stats
        )
    qa, ra = pairs["q"].to_numpy(dtype=float), pairs["r"].to_numpy(dtype=float)
    ratio = float(qa.mean() / ra.mean())
    ci_low, ci_high, method = _bootstrap_ratio_ci(qa, ra, claim)
    stats.update(
        statistic_value=ratio,
        ratio=ratio,
        ci_low=ci_low,
        ci_high=ci_high,
        ci_method=method,
        effect_size=ratio - 1.0,
        mean_dist_quant=float(qa.mean()),
        mean_dist_ref=mean_r,
    )
    in_band = low <= ratio <= high
    holds = in_band and ci_high >= low
    if ratio < low:
        why = f"below {low:g}: {fmt_bits(quant_bits)} weights sit closer to the grid (snapping)"
    elif ratio > high:
        why = (
            f"above {high:g}: {fmt_bits(quant_bits)} weights sit further from the grid "
            f"than {fmt_bits(ref_bits)}'s"
        )
    elif not holds:
        why = f"the CI lies below {low:g} (evidence of snapping)"
    else:
        why = f"inside [{low:g}, {high:g}]"
    observed = (
        f"{what}: pre-warmdown INT6-grid distance ratio R = {ratio:.3f} "
        f"(95% CI [{ci_low:.3f}, {ci_high:.3f}], {len(pairs)} matched pairs; "
        f"{qa.mean():.4f} vs {ra.mean():.4f}), {why}."
    )
    return decided(claim, holds, observed, stats)

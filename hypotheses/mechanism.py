"""Decision function for C9: INT6-QAT weights do not snap to the INT6 grid before warmdown.

Owns ``decide_c9`` (the ratio of mean pre-warmdown INT6-grid distances, INT6-QAT runs over
matched FP16 runs, with Fieller's interval for a ratio of paired means) and
``scenarios_c9`` (its calibration scenarios). Pure: a results table in, a Verdict out; the
decider works on numpy arrays after the shared validation, since calibration calls it
thousands of times.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hypotheses.calibration import Scenario
from hypotheses.intervals import fieller_paired, inside, outside
from hypotheses.verdict import (
    CONTRADICTED,
    REPRODUCED,
    RUN_KEY,
    ArmTable,
    Inconclusive,
    Verdict,
    count_stats,
    decider,
    fmt_bits,
    require_table,
    require_unique_runs,
    scenarios,
    three_way,
    verdict,
)

_PAIR_KEY = ("size", "warmdown", "lr_mult")  # and the seed
BASE_DISTANCE = 0.24  # FP16 weights' mean distance to the INT6 grid (uniform = 0.25 of a step)


def _pairs(t: pd.DataFrame, metric: str, quant_bits: int, ref_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(q, r): the metric of the finite INT6 and FP16 runs matched on (size, wd, lr_mult, seed)."""
    pairs = ArmTable(t, metric, ("bits", *_PAIR_KEY)).matched("bits", quant_bits, ref_bits)
    if not pairs:
        return np.array([], dtype=float), np.array([], dtype=float)
    return np.concatenate([p.a for p in pairs]), np.concatenate([p.b for p in pairs])


@decider("C9", uses_delta=False)  # its band [band_low, band_high] is the margin
def decide_c9(table: pd.DataFrame, claim) -> Verdict:
    """C9: before warmdown, INT6-QAT weights are about as far from the INT6 grid as FP16's. The
    rule: fixtures/claims.toml [C9] (``python -m hypotheses rules``).

    Steps: validate and pair INT6 with FP16 runs on (size, wd, lr_mult, seed) (``_pairs``; a pair
    with a diverged member is dropped, the run counted in ``n_diverged``), Fieller's 90 % and 95 %
    intervals of the ratio of paired means (``intervals.fieller_paired``), then ``_c9_explain``.
    Headline ci_low/ci_high: the 90 % interval, or the 95 % one that decided a contradiction;
    both are reported (ci90_*, ci95_*).
    """
    metric = claim.threshold("metric")
    quant_bits, ref_bits = int(claim.threshold("quant_bits")), int(claim.threshold("ref_bits"))
    low, high = float(claim.threshold("band_low")), float(claim.threshold("band_high"))
    alpha, min_pairs = float(claim.threshold("alpha")), int(claim.threshold("min_pairs"))
    what = f"{claim.id}[{fmt_bits(quant_bits)} vs {fmt_bits(ref_bits)}]"
    t = require_table(table, ["size", "bits", "warmdown", "lr_mult"], metric, what=what)
    t = t[np.isin(t["bits"].to_numpy(), [quant_bits, ref_bits])]
    if t.empty:
        raise ValueError(f"{what}: no runs at bits {quant_bits}/{ref_bits}")
    require_unique_runs(t, RUN_KEY, what=what)
    q, r = _pairs(t, metric, quant_bits, ref_bits)
    level_r, level_c = 1 - 2 * alpha, 1 - alpha
    stats = {
        **count_stats(t),
        "metric": metric,
        "alpha": alpha,
        "n_pairs": len(q),
        "band_low": low,
        "band_high": high,
        "statistic": "distance_ratio",
        "ci_level": level_r,
        "region": f"[{low:.2f}, {high:.2f}]",
        "ci_method": "fieller_paired",
    }
    if len(q) < min_pairs:
        raise Inconclusive(
            f"{what}: only {len(q)} matched pair(s) with finite grid distances; "
            f"{stats['n_diverged']} diverged run(s).",
            f"fewer than {min_pairs} matched {fmt_bits(quant_bits)}/{fmt_bits(ref_bits)} pairs ({len(q)})",
            stats,
        )
    qb, rb = float(q.mean()), float(r.mean())
    ci_r, ci_c = fieller_paired(q, r, level_r), fieller_paired(q, r, level_c)
    ratio = ci_r.ratio
    stats.update(
        statistic_value=ratio,
        ratio=ratio,
        ci_low=ci_r.low,
        ci_high=ci_r.high,
        ci90_low=ci_r.low,
        ci90_high=ci_r.high,
        ci95_low=ci_c.low,
        ci95_high=ci_c.high,
        bounded=int(ci_r.bounded),
        relative_difference=ratio - 1.0 if math.isfinite(ratio) else math.nan,
        mean_dist_quant=qb,
        mean_dist_ref=rb,
    )
    return _c9_explain(claim, what, ci_r, ci_c, stats)


def _c9_explain(claim, what: str, ci_r, ci_c, stats: dict) -> Verdict:
    """The outcome (the 90 % interval inside the band reproduces, the 95 % one wholly outside it
    contradicts) and the sentence."""
    quant_bits, ref_bits = int(claim.threshold("quant_bits")), int(claim.threshold("ref_bits"))
    low, high = stats["band_low"], stats["band_high"]
    level_c, ratio = 1 - stats["alpha"], ci_r.ratio
    qb, rb, n = stats["mean_dist_quant"], stats["mean_dist_ref"], stats["n_pairs"]
    head = (
        f"{what}: pre-warmdown INT6-grid distance ratio R = {ratio:.3f} "
        f"({qb:.4f} vs {rb:.4f} over {n} matched pairs; Fieller 90% [{ci_r.low:.3f}, {ci_r.high:.3f}], "
        f"95% [{ci_c.low:.3f}, {ci_c.high:.3f}]; band [{low:g}, {high:g}]; "
        f"{stats['n_diverged']} diverged run(s))"
    )
    if not ci_r.bounded:
        raise Inconclusive(head + ".", "Fieller's set is unbounded: the FP16 mean distance is not "
                           "distinguishable from 0", stats)
    reproduce = inside(ci_r.low, ci_r.high, low, high)
    contradict = ci_c.bounded and outside(ci_c.low, ci_c.high, low, high)
    outcome = three_way(reproduce, contradict)
    if outcome == REPRODUCED:
        return verdict(claim, outcome, head + f": inside [{low:g}, {high:g}].", stats)
    if outcome == CONTRADICTED:
        stats.update(ci_low=ci_c.low, ci_high=ci_c.high, ci_level=level_c)
        if ci_c.high < low:
            why = f"below {low:g}: {fmt_bits(quant_bits)} weights sit closer to the grid (snapping)"
        else:
            why = (f"above {high:g}: {fmt_bits(quant_bits)} weights sit further from the grid "
                   f"than {fmt_bits(ref_bits)}'s")
        return verdict(claim, outcome, head + f": the 95% interval lies wholly {why}.", stats)
    if not ci_c.bounded:
        reason = "the 90 % interval is not inside the band and the 95 % Fieller set is unbounded"
    else:
        reason = (f"the 90 % interval [{ci_r.low:.3f}, {ci_r.high:.3f}] is not inside [{low:g}, {high:g}] "
                  f"and the 95 % interval [{ci_c.low:.3f}, {ci_c.high:.3f}] overlaps it")
    raise Inconclusive(head + ".", reason, stats)


@scenarios("C9")
def scenarios_c9(claim, arms: pd.DataFrame, noise=None) -> dict[str, Scenario]:
    """Calibration scenarios of C9: true mean distance of INT6 arms = ratio x the FP16 one.

    Base FP16 distance 0.24 of a grid step (uniform-ish weights sit at 0.25; the tiny runs
    measure ~0.242). true: ratio 1.04 (the paper's); boundary: ratio = band_low exactly
    (false reproduction rate <= alpha); violation: ratio 0.75 (clear snapping).
    """
    quant_bits = int(claim.threshold("quant_bits"))
    band_low = float(claim.threshold("band_low"))
    paper = float(claim.paper.get("paper_ratio", 1.04))

    def with_ratio(ratio: float) -> pd.DataFrame:
        out = arms.reset_index(drop=True).copy()
        out["mu"] = np.where(out["bits"].to_numpy() == quant_bits, BASE_DISTANCE * ratio, BASE_DISTANCE)
        return out

    return {
        "true": Scenario(with_ratio(paper), f"INT6/FP16 distance ratio {paper:g} (the paper's)"),
        "boundary": Scenario(with_ratio(band_low), f"ratio at the band's lower edge {band_low:g}"),
        "violation": Scenario(with_ratio(0.75), "ratio 0.75: INT6 weights snap toward the grid"),
    }

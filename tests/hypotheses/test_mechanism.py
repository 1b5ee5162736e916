"""Unit tests of the C9 judge: the pre-warmdown INT6-grid distance ratio (INT6 / FP16) with
Fieller's interval, three outcomes, negative controls (snapping, off-grid), diverged runs,
malformed input, and the rule's calibration at every profile."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hypotheses.claims import load_claims
from hypotheses.intervals import fieller_paired
from hypotheses.mechanism import decide_c9, scenarios_c9
from hypotheses.verdict import REQUIRED_STATS



@pytest.fixture(scope="module")
def claim():
    return load_claims()["C9"]


def probe_table(*, ratio=1.04, seeds=5, sizes=("15M", "30M"), wds=(0.2, 0.33), noise=0.002,
                base=0.243, rng_seed=0) -> pd.DataFrame:
    """Matched FP16/INT6 runs: FP16 distance = base + seed offset + noise, INT6 = ratio x
    (base + the same seed offset) + noise. FP16 distances sit just under the uniform 0.25,
    as for weights that ignore the grid."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for size in sizes:
        for wd in wds:
            for seed in range(seeds):
                shared = base + rng.normal(0, noise)
                for bits, g in ((16, shared + rng.normal(0, noise)), (6, ratio * shared + rng.normal(0, noise))):
                    rows.append({
                        "run_id": f"{size}-b{bits}-wd{wd}-s{seed}", "status": "ok",
                        "diverged_step": math.nan, "size": size, "n_params": 15_000_000,
                        "bits": bits, "warmdown": wd, "lr_mult": 1.0, "seed": seed,
                        "optimizer": "muon", "warmdown_shape": "linear", "steps": 1000,
                        "val_bpb": 1.4, "val_bpb_q": 1.41, "val_bpb_int8": 1.402,
                        "quant_penalty": 0.01, "grid_dist_int6_prewd": g, "grid_dist_own_prewd": g,
                    })
    return pd.DataFrame(rows)


def matched(table):
    q = table[table["bits"] == 6].sort_values(["size", "warmdown", "seed"])["grid_dist_int6_prewd"].to_numpy()
    r = table[table["bits"] == 16].sort_values(["size", "warmdown", "seed"])["grid_dist_int6_prewd"].to_numpy()
    return q, r


def assert_complete_stats(v):
    for key in REQUIRED_STATS:
        assert key in v.stats, key
    for key in ("statistic_value", "ci_low", "ci_high", "ci_level"):
        assert math.isfinite(v.stats[key]), (key, v.stats[key])
    assert v.stats["statistic"] == "distance_ratio" and v.stats["region"] == "[0.90, 1.15]"
    assert v.stats["ci_low"] <= v.stats["statistic_value"] <= v.stats["ci_high"]


def test_c9_reproduced_when_int6_weights_ignore_the_grid(claim):
    table = probe_table()
    v = decide_c9(table, claim)
    assert v.outcome == "reproduced", v.observed
    assert_complete_stats(v)
    q, r = matched(table)
    assert v.stats["ratio"] == pytest.approx(q.mean() / r.mean())
    ci90, ci95 = fieller_paired(q, r, 0.90), fieller_paired(q, r, 0.95)
    assert (v.stats["ci_low"], v.stats["ci_high"]) == pytest.approx((ci90.low, ci90.high))
    assert (v.stats["ci95_low"], v.stats["ci95_high"]) == pytest.approx((ci95.low, ci95.high))
    assert v.stats["ci_level"] == pytest.approx(0.90)
    assert 0.90 <= v.stats["ci_low"] and v.stats["ci_high"] <= 1.15
    assert v.stats["n_pairs"] == 20 and v.stats["paper_ratio"] == 1.04


def test_c9_contradicted_when_int6_weights_snap(claim):
    """Negative control: INT6 weights sit much closer to the grid (snapping)."""
    v = decide_c9(probe_table(ratio=0.6), claim)
    assert v.outcome == "contradicted", v.observed
    assert_complete_stats(v)
    assert v.stats["ci_high"] < 0.9 and v.stats["ci_level"] == pytest.approx(0.95)
    assert "snapping" in v.observed


def test_c9_contradicted_when_int6_weights_move_off_the_grid(claim):
    """Negative control: the ratio is far above the band."""
    v = decide_c9(probe_table(ratio=1.3), claim)
    assert v.outcome == "contradicted", v.observed
    assert v.stats["ci_low"] > 1.15
    assert "further from the grid" in v.observed


def test_c9_inconclusive_when_the_interval_straddles_the_band(claim):
    v = decide_c9(probe_table(ratio=0.9, seeds=5, sizes=("15M",), wds=(0.33,), noise=0.01), claim)
    assert v.outcome == "inconclusive", v.observed
    assert v.stats["ci_low"] < 0.9 < v.stats["ci_high"]
    assert "not inside" in v.reason
    assert_complete_stats(v)


def test_c9_inconclusive_with_fewer_than_five_pairs(claim):
    v = decide_c9(probe_table(seeds=3, sizes=("15M",), wds=(0.33,)), claim)
    assert v.outcome == "inconclusive"
    assert "fewer than 5" in v.reason and v.stats["n_pairs"] == 3
    assert math.isnan(v.stats["statistic_value"])


def test_c9_inconclusive_when_fieller_is_unbounded(claim):
    # FP16 distances indistinguishable from 0: the ratio's denominator is pure noise.
    v = decide_c9(probe_table(base=0.001, seeds=5, sizes=("15M",), wds=(0.33,), noise=0.02), claim)
    assert v.outcome == "inconclusive", v.observed
    assert "unbounded" in v.reason and v.stats["bounded"] == 0


def test_c9_unmatched_runs_do_not_enter_the_ratio(claim):
    table = probe_table()
    extra = table[table["bits"] == 6].assign(seed=lambda d: d["seed"] + 100, grid_dist_int6_prewd=0.01)
    v = decide_c9(pd.concat([table, extra]), claim)
    assert v.stats["n_pairs"] == 20
    assert v.outcome == "reproduced"


def test_c9_diverged_runs_drop_their_pairs(claim):
    table = probe_table()
    mask = (table["bits"] == 6) & (table["seed"] == 0)
    table.loc[mask, ["status", "grid_dist_int6_prewd"]] = ["diverged", math.nan]
    v = decide_c9(table, claim)
    assert v.stats["n_diverged"] == 4 and v.stats["n_pairs"] == 16
    assert v.outcome == "reproduced"


def test_c9_ignores_other_bit_widths(claim):
    table = probe_table()
    v = decide_c9(pd.concat([table, table[table["bits"] == 6].assign(bits=8)]), claim)
    assert v.stats["n_runs"] == len(table) and v.outcome == "reproduced"


def test_c9_malformed_input_is_a_pipeline_error(claim):
    with pytest.raises(ValueError, match="grid_dist_int6_prewd"):
        decide_c9(probe_table().drop(columns=["grid_dist_int6_prewd"]), claim)
    with pytest.raises(ValueError, match="no runs"):
        decide_c9(probe_table().assign(bits=8), claim)
    with pytest.raises(ValueError, match="duplicate"):
        decide_c9(pd.concat([probe_table(), probe_table()]), claim)
    with pytest.raises(ValueError, match="non-finite"):
        decide_c9(probe_table().assign(grid_dist_int6_prewd=math.inf), claim)


def test_c9_scenarios_set_the_ratio(claim):
    arms = pd.DataFrame([{"size": "15M", "n_params": 15_000_000, "bits": b, "warmdown": 0.33, "lr_mult": 1.0}
                         for b in (16, 6)])
    sc = scenarios_c9(claim, arms)

    def ratio(a):
        return float(a.loc[a["bits"] == 6, "mu"].iloc[0] / a.loc[a["bits"] == 16, "mu"].iloc[0])

    assert ratio(sc["true"].arms) == pytest.approx(1.04)
    assert ratio(sc["boundary"].arms) == pytest.approx(0.90)
    assert ratio(sc["violation"].arms) == pytest.approx(0.75)
    assert sc["true"].arms.loc[sc["true"].arms["bits"] == 16, "mu"].iloc[0] == pytest.approx(0.24)

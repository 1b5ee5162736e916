"""Unit tests of the INT4 judges: C7 (wd33 decisive at 50M+) and C8 (noise below 50M)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hypotheses.claims import load_claims
from hypotheses.int4 import decide_c7, decide_c8

N_PARAMS = {
    "3M": 3_145_728, "5M": 5_242_880, "8M": 8_126_464, "12M": 12_058_624,
    "20M": 19_922_944, "30M": 29_884_416, "50M": 50_331_648, "100M": 101_187_584,
}
SMALL = ["3M", "5M", "8M", "12M", "20M", "30M"]
LARGE = ["50M", "100M"]


@pytest.fixture(scope="module")
def claims():
    return load_claims()


def int4_table(*, sizes, seeds=10, delta=lambda size: 0.0, noise=0.004, rng_seed=0) -> pd.DataFrame:
    """INT4 runs at wd 0.10 and 0.33; val_bpb_q(wd10) - val_bpb_q(wd33) ~ delta(size) + noise.

    A per-seed offset is shared by both warmdowns of a seed (that is what pairing removes).
    """
    rng = np.random.default_rng(rng_seed)
    rows = []
    for size in sizes:
        base = 1.60 - 0.04 * math.log(N_PARAMS[size] / 1e7)
        offsets = rng.normal(0, 0.01, size=seeds)
        for seed in range(seeds):
            for wd in (0.1, 0.33):
                q = base + offsets[seed] + (delta(size) if wd == 0.1 else 0.0) + rng.normal(0, noise)
                rows.append({
                    "run_id": f"{size}-b4-wd{wd}-s{seed}", "status": "ok", "diverged_step": math.nan,
                    "size": size, "n_params": N_PARAMS[size], "bits": 4, "wd": wd, "lr_mult": 1.0,
                    "seed": seed, "optimizer": "muon", "wd_shape": "linear", "steps": 1000,
                    "val_bpb": q - 0.05, "val_bpb_q": q, "val_bpb_int8": q - 0.048,
                    "quant_penalty": 0.05, "grid_dist_int6_prewd": 0.245, "grid_dist_own_prewd": 0.245,
                })
    return pd.DataFrame(rows)


def diverge(table, mask):
    out = table.copy()
    out.loc[mask, ["status", "diverged_step", "val_bpb", "val_bpb_q"]] = ["diverged", 300.0, math.nan, math.nan]
    return out


# --------------------------------------------------------------------------- C7


@pytest.mark.parametrize("size", LARGE)
def test_c7_reproduced_when_wd33_wins_decisively(claims, size):
    v = decide_c7(int4_table(sizes=LARGE, delta=lambda s: 0.03), claims["C7"], size=size)
    assert v.outcome == "reproduced", v.observed
    assert v.stats["statistic_value"] >= 10
    assert v.stats["wins_wd_long"] == "10/10"
    assert v.stats["p_value"] < 1e-6
    assert v.stats["ci_low"] > 0
    assert v.stats["paper_z"] == "[12, 15]" and v.stats["paper_wins"] == "10/10"
    for key in ("n_runs", "n_seeds", "n_diverged", "statistic", "effect_size_name", "effect_size"):
        assert key in v.stats


def test_c7_z_equals_the_paired_t_statistic(claims):
    from scipy.stats import ttest_rel

    table = int4_table(sizes=["50M"], delta=lambda s: 0.01)
    v = decide_c7(table, claims["C7"], size="50M")
    w10 = table[table["wd"] == 0.1].sort_values("seed")["val_bpb_q"].to_numpy()
    w33 = table[table["wd"] == 0.33].sort_values("seed")["val_bpb_q"].to_numpy()
    assert v.stats["statistic_value"] == pytest.approx(ttest_rel(w10, w33).statistic)


def test_c7_not_reproduced_without_an_effect(claims):
    v = decide_c7(int4_table(sizes=["100M"]), claims["C7"], size="100M")
    assert v.outcome == "not_reproduced"
    assert v.stats["statistic_value"] < 3


def test_c7_not_reproduced_when_a_seed_loses_despite_large_z(claims):
    table = int4_table(sizes=["50M"], delta=lambda s: 0.008, rng_seed=0)
    v = decide_c7(table, claims["C7"], size="50M")
    assert v.stats["statistic_value"] >= 3.0  # the z part alone would pass ...
    assert v.stats["wins_wd_long"] != "10/10"  # ... but not every seed is a wd33 win
    assert v.outcome == "not_reproduced"


def test_c7_undecided_with_two_seeds(claims):
    v = decide_c7(int4_table(sizes=["50M"], seeds=2, delta=lambda s: 0.03), claims["C7"], size="50M")
    assert v.outcome == "undecided"
    assert "paired seeds" in v.reason


def test_c7_diverged_run_drops_its_pair(claims):
    table = int4_table(sizes=["50M"], delta=lambda s: 0.03)
    table = diverge(table, (table["wd"] == 0.1) & (table["seed"] == 4))
    v = decide_c7(table, claims["C7"], size="50M")
    assert v.outcome == "reproduced"
    assert v.stats["n_diverged"] == 1 and v.stats["n_pairs"] == 9
    assert v.stats["wins_wd_long"] == "9/9"


def test_c7_undecided_when_divergence_leaves_two_pairs(claims):
    table = int4_table(sizes=["50M"], seeds=4, delta=lambda s: 0.03)
    table = diverge(table, (table["wd"] == 0.33) & (table["seed"] <= 1))
    v = decide_c7(table, claims["C7"], size="50M")
    assert v.outcome == "undecided"
    assert v.stats["n_diverged"] == 2


def test_c7_ignores_other_warmdowns_and_bit_widths(claims):
    table = int4_table(sizes=["50M"], delta=lambda s: 0.03)
    noise = pd.concat([table.assign(wd=0.2), table.assign(bits=6)])
    v = decide_c7(pd.concat([table, noise]), claims["C7"], size="50M")
    assert v.outcome == "reproduced" and v.stats["n_runs"] == len(table)


def test_c7_missing_column_and_absent_size_are_pipeline_errors(claims):
    table = int4_table(sizes=["50M"])
    with pytest.raises(ValueError, match="wd"):
        decide_c7(table.drop(columns=["wd"]), claims["C7"], size="50M")
    with pytest.raises(ValueError, match="100M"):
        decide_c7(table, claims["C7"], size="100M")


# --------------------------------------------------------------------------- C8


def test_c8_reproduced_when_no_size_prefers_a_schedule(claims):
    v = decide_c8(int4_table(sizes=SMALL, noise=0.006), claims["C8"])
    assert v.outcome == "reproduced", v.observed
    assert v.stats["significant_sizes"] == "0/6"
    assert v.stats["p_value"] >= 0.05
    for size in SMALL:
        assert v.stats[f"{size}:ci_low"] < v.stats[f"{size}:mean_diff"] < v.stats[f"{size}:ci_high"]
        assert v.stats[f"{size}:sd_diff"] > 0
    for key in ("n_runs", "n_seeds", "n_diverged", "statistic", "effect_size", "paper_significant_sizes"):
        assert key in v.stats


def test_c8_not_reproduced_when_one_size_prefers_wd33(claims):
    table = int4_table(sizes=SMALL, noise=0.006, delta=lambda s: 0.02 if s == "20M" else 0.0)
    v = decide_c8(table, claims["C8"])
    assert v.outcome == "not_reproduced"
    assert v.stats["20M:significant"] == 1 and v.stats["20M:direction"] == "wd33_better"
    assert v.stats["significant_wd10_wins"] == 0


def test_c8_not_reproduced_and_named_when_wd10_wins(claims):
    table = int4_table(sizes=SMALL, noise=0.006, delta=lambda s: -0.02 if s == "12M" else 0.0)
    v = decide_c8(table, claims["C8"])
    assert v.outcome == "not_reproduced"
    assert v.stats["significant_wd10_wins"] == 1
    assert "wd10 wins significantly at 12M" in v.observed


def test_c8_holm_correction_absorbs_one_borderline_size(claims):
    # 12M's differences give an uncorrected p near 0.02: significant alone, not among six.
    table = int4_table(sizes=SMALL, noise=0.006)
    d = np.array([0.010, 0.004, 0.012, -0.002, 0.008, 0.001, 0.009, 0.011, -0.003, 0.006])
    at = (table["size"] == "12M") & (table["wd"] == 0.1)
    long_ = table[(table["size"] == "12M") & (table["wd"] == 0.33)].sort_values("seed")["val_bpb_q"].to_numpy()
    table.loc[at, "val_bpb_q"] = long_ + d
    v = decide_c8(table, claims["C8"])
    assert v.stats["12M:p"] < 0.05 <= v.stats["12M:p_holm"]
    assert v.outcome == "reproduced"


def test_c8_undecided_with_one_size(claims):
    v = decide_c8(int4_table(sizes=["8M"]), claims["C8"])
    assert v.outcome == "undecided"
    assert "sizes" in v.reason


def test_c8_undecided_when_a_size_lacks_seeds(claims):
    table = pd.concat([int4_table(sizes=SMALL[:5], noise=0.006), int4_table(sizes=["30M"], seeds=2, rng_seed=5)])
    v = decide_c8(table, claims["C8"])
    assert v.outcome == "undecided"
    assert "30M" in v.reason and v.stats["untestable_sizes"] == "30M"


def test_c8_significant_size_decides_even_if_another_is_untestable(claims):
    table = pd.concat([
        int4_table(sizes=SMALL[:5], noise=0.006, delta=lambda s: 0.02 if s == "3M" else 0.0),
        int4_table(sizes=["30M"], seeds=2, rng_seed=5),
    ])
    assert decide_c8(table, claims["C8"]).outcome == "not_reproduced"


def test_c8_diverged_runs_are_counted_and_dropped(claims):
    table = int4_table(sizes=SMALL, noise=0.006)
    table = diverge(table, (table["size"] == "3M") & (table["seed"] < 3) & (table["wd"] == 0.1))
    v = decide_c8(table, claims["C8"])
    assert v.stats["n_diverged"] == 3 and v.stats["3M:n_pairs"] == 7
    assert v.outcome == "reproduced"


def test_c8_empty_slice_is_a_pipeline_error(claims):
    table = int4_table(sizes=SMALL).assign(bits=6)
    with pytest.raises(ValueError, match="no INT4 runs"):
        decide_c8(table, claims["C8"])

"""Unit tests of the C9 judge (pre-warmdown INT6 grid-distance ratio, paired bootstrap)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hypotheses.claims import load_claims
from hypotheses.mechanism import decide_c9


@pytest.fixture(scope="module")
def claim():
    return load_claims()["C9"]


def probe_table(*, ratio=1.04, seeds=5, sizes=("15M", "30M"), noise=0.004, rng_seed=0) -> pd.DataFrame:
    """Matched FP16/INT6 runs; INT6 grid distance = ratio x the matched FP16 distance + noise.

    FP16 distances sit just under the uniform 0.25, as for weights that ignore the grid.
    """
    rng = np.random.default_rng(rng_seed)
    rows = []
    for size in sizes:
        for wd in (0.2, 0.33):
            for seed in range(seeds):
                g16 = 0.243 + rng.normal(0, noise)
                for bits, g in ((16, g16), (6, ratio * g16 + rng.normal(0, noise))):
                    rows.append({
                        "run_id": f"{size}-b{bits}-wd{wd}-s{seed}", "status": "ok",
                        "diverged_step": math.nan, "size": size, "n_params": 15_000_000,
                        "bits": bits, "wd": wd, "lr_mult": 1.0, "seed": seed,
                        "optimizer": "muon", "wd_shape": "linear", "steps": 1000,
                        "val_bpb": 1.4, "val_bpb_q": 1.41, "val_bpb_int8": 1.402,
                        "quant_penalty": 0.01, "grid_dist_int6_prewd": g, "grid_dist_own_prewd": g,
                    })
    return pd.DataFrame(rows)


def test_c9_reproduced_when_int6_weights_ignore_the_grid(claim):
    v = decide_c9(probe_table(), claim)
    assert v.outcome == "reproduced", v.observed
    assert v.stats["ratio"] == pytest.approx(1.04, abs=0.02)
    assert v.stats["ci_low"] < v.stats["ratio"] < v.stats["ci_high"]
    assert v.stats["n_pairs"] == 20
    assert v.stats["paper_ratio"] == 1.04
    for key in ("n_runs", "n_seeds", "n_diverged", "statistic", "statistic_value", "effect_size"):
        assert key in v.stats


def test_c9_not_reproduced_when_int6_weights_snap(claim):
    v = decide_c9(probe_table(ratio=0.6), claim)
    assert v.outcome == "not_reproduced"
    assert v.stats["ci_high"] < 0.9
    assert "snapping" in v.observed


def test_c9_not_reproduced_when_int6_weights_move_off_the_grid(claim):
    v = decide_c9(probe_table(ratio=1.3), claim)
    assert v.outcome == "not_reproduced"
    assert "further from the grid" in v.observed


def test_c9_undecided_with_two_pairs(claim):
    v = decide_c9(probe_table(seeds=1, sizes=("15M",)), claim)
    assert v.outcome == "undecided"
    assert "pairs" in v.reason


def test_c9_bootstrap_is_reproducible(claim):
    a, b = decide_c9(probe_table(), claim), decide_c9(probe_table(), claim)
    assert (a.stats["ci_low"], a.stats["ci_high"]) == (b.stats["ci_low"], b.stats["ci_high"])


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


def test_c9_missing_grid_column_is_a_pipeline_error(claim):
    with pytest.raises(ValueError, match="grid_dist_int6_prewd"):
        decide_c9(probe_table().drop(columns=["grid_dist_int6_prewd"]), claim)


def test_c9_no_int6_or_fp16_runs_is_a_pipeline_error(claim):
    with pytest.raises(ValueError, match="no runs"):
        decide_c9(probe_table().assign(bits=8), claim)

"""Unit tests of the schedule judges (C1..C5) on synthetic results tables.

Each claim gets a table where it is true, one where it is false, and one where it cannot
be decided; plus the diverged-run rule and input validation.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hypotheses.claims import load_claims
from hypotheses.schedule import decide_c1, decide_c2, decide_null_arm

WDS = (0.1, 0.2, 0.33, 0.5)
LRS = (0.5, 1.0, 2.0)
BITS = (16, 8, 6)
N_PARAMS = {"15M": 15_137_280, "30M": 29_884_416, "50M": 50_331_648}
QUANT_PENALTY = {16: 0.0003, 8: 0.002, 6: 0.009}  # additive: no wd x bits interaction
DECIDED_KEYS = ("n_runs", "n_seeds", "n_diverged", "statistic", "statistic_value",
                "p_value", "effect_size_name", "effect_size")


@pytest.fixture(scope="module")
def claims():
    return load_claims()


def schedule_table(
    *,
    sizes=("15M",),
    bits=BITS,
    wds=WDS,
    seeds=3,
    opt_wd=lambda bits, size: 0.33,
    curvature=lambda bits, size: 0.4,
    noise=0.0015,
    steps=1000,
    rng_seed=0,
) -> pd.DataFrame:
    """A Phase-2-like table: a quadratic bowl in wd around ``opt_wd``, LR optimum at x1,
    a per-seed offset shared by all runs of a seed, per-run noise."""
    rng = np.random.default_rng(rng_seed)
    seed_offset = rng.normal(0, 0.003, size=seeds)
    rows = []
    for size in sizes:
        base = 1.42 - 0.04 * math.log(N_PARAMS[size] / N_PARAMS["15M"])
        for b in bits:
            for wd in wds:
                for lr in LRS:
                    for seed in range(seeds):
                        bpb = (base + curvature(b, size) * (wd - opt_wd(b, size)) ** 2
                               + 0.012 * math.log2(lr) ** 2 + seed_offset[seed]
                               + rng.normal(0, noise))
                        bpb_q = bpb + QUANT_PENALTY[b] + rng.normal(0, noise / 3)
                        rows.append({
                            "run_id": f"{size}-b{b}-wd{wd}-lr{lr}-s{seed}-{steps}",
                            "status": "ok", "diverged_step": math.nan,
                            "size": size, "n_params": N_PARAMS[size], "bits": b, "wd": wd,
                            "lr_mult": lr, "seed": seed, "optimizer": "muon",
                            "wd_shape": "linear", "steps": steps,
                            "val_bpb": bpb, "val_bpb_q": bpb_q, "val_bpb_int8": bpb + 0.002,
                            "quant_penalty": bpb_q - bpb,
                            "grid_dist_int6_prewd": 0.245, "grid_dist_own_prewd": 0.245,
                        })
    return pd.DataFrame(rows)


def diverge(table: pd.DataFrame, mask) -> pd.DataFrame:
    """Mark the rows of ``mask`` diverged, the way the engine records them."""
    out = table.copy()
    out.loc[mask, "status"] = "diverged"
    out.loc[mask, "diverged_step"] = 400.0
    for col in ("val_bpb", "val_bpb_q", "val_bpb_int8", "quant_penalty",
                "grid_dist_int6_prewd", "grid_dist_own_prewd"):
        out.loc[mask, col] = math.nan
    return out


def assert_decided_stats(verdict):
    missing = [k for k in DECIDED_KEYS if k not in verdict.stats]
    assert not missing, missing
    assert any(k.startswith("paper_") for k in verdict.stats)


# --------------------------------------------------------------------------- C1


@pytest.mark.parametrize("bits", BITS, ids=["fp16", "int8", "int6"])
def test_c1_reproduced_when_wd33_is_best(claims, bits):
    v = decide_c1(schedule_table(), claims["C1"], bits=bits, size="15M")
    assert v.outcome == "reproduced", v.observed
    assert v.stats["optimal_wd"] == pytest.approx(0.33)
    assert v.stats["margin_bpb"] > 0
    assert v.stats["n_runs"] == len(WDS) * len(LRS) * 3 and v.stats["n_seeds"] == 3
    assert v.stats["best_lr_mult"] == 1.0
    assert_decided_stats(v)


def test_c1_not_reproduced_when_another_wd_is_best(claims):
    table = schedule_table(opt_wd=lambda b, s: 0.2 if b == 6 else 0.33)
    v = decide_c1(table, claims["C1"], bits=6, size="15M")
    assert v.outcome == "not_reproduced"
    assert v.stats["optimal_wd"] == pytest.approx(0.2)
    assert "optimal wd = 0.2" in v.observed
    # the other cells of the same table still reproduce
    assert decide_c1(table, claims["C1"], bits=16, size="15M").outcome == "reproduced"


def test_c1_undecided_with_one_seed(claims):
    v = decide_c1(schedule_table(seeds=1), claims["C1"], bits=8, size="15M")
    assert v.outcome == "undecided"
    assert "seed" in v.reason


def test_c1_undecided_when_wd33_not_in_design(claims):
    v = decide_c1(schedule_table(wds=(0.1, 0.2, 0.5)), claims["C1"], bits=8, size="15M")
    assert v.outcome == "undecided"
    assert "0.33" in v.reason


def test_c1_reports_paired_test_of_runner_up(claims):
    v = decide_c1(schedule_table(seeds=4), claims["C1"], bits=16, size="15M")
    assert v.stats["n_pairs"] == 4
    assert 0 <= v.stats["p_value"] <= 1
    assert v.stats["t_paired"] > 0  # runner-up minus best is positive on average
    assert v.stats["runner_up_wd"] in (0.2, 0.5)


def test_c1_diverged_seed_is_excluded_but_counted(claims):
    table = schedule_table()
    table = diverge(table, (table["bits"] == 6) & (table["wd"] == 0.33) & (table["seed"] == 0))
    v = decide_c1(table, claims["C1"], bits=6, size="15M")
    assert v.outcome == "reproduced"  # two finite seeds remain, still ranked
    assert v.stats["n_diverged"] == len(LRS)
    assert v.stats["n_pairs"] == 2


def test_c1_wd_with_one_finite_seed_ranks_last(claims):
    table = schedule_table()
    table = diverge(table, (table["bits"] == 6) & (table["wd"] == 0.33) & (table["seed"] >= 1))
    v = decide_c1(table, claims["C1"], bits=6, size="15M")
    assert v.outcome == "not_reproduced"
    assert v.stats["mean_wd0.33"] == math.inf
    assert v.stats["n_diverged"] == 2 * len(LRS)


def test_c1_undecided_when_fewer_than_two_wds_rankable(claims):
    table = schedule_table()
    table = diverge(table, (table["bits"] == 6) & (table["wd"] != 0.33) & (table["seed"] >= 1))
    v = decide_c1(table, claims["C1"], bits=6, size="15M")
    assert v.outcome == "undecided"
    assert "fewer than 2 warmdown arms" in v.reason


# --------------------------------------------------------------------------- C2


def test_c2_reproduced_when_bits_only_shift_the_curve(claims):
    v = decide_c2(schedule_table(), claims["C2"], size="15M")
    assert v.outcome == "reproduced", v.observed
    assert v.stats["same_optimal_wd"] == 1
    assert v.stats["p_value"] >= 0.05
    assert {v.stats[f"optimal_wd_{b}"] for b in ("FP16", "INT8", "INT6")} == {0.33}
    assert 0 <= v.stats["partial_eta2"] < 1
    assert v.stats["df_num"] == (len(WDS) - 1) * (len(BITS) - 1)
    assert_decided_stats(v)


def test_c2_not_reproduced_when_int6_wants_a_longer_warmdown(claims):
    table = schedule_table(opt_wd=lambda b, s: 0.5 if b == 6 else 0.33)
    v = decide_c2(table, claims["C2"], size="15M")
    assert v.outcome == "not_reproduced"
    assert v.stats["optimal_wd_INT6"] == 0.5
    assert v.stats["p_value"] < 0.05
    assert "differs by bit-width" in v.observed and "interaction is significant" in v.observed


def test_c2_not_reproduced_on_interaction_alone(claims):
    # same argmin everywhere, but INT6 is far more sensitive to the warmdown
    table = schedule_table(curvature=lambda b, s: 3.0 if b == 6 else 0.4)
    v = decide_c2(table, claims["C2"], size="15M")
    assert v.outcome == "not_reproduced"
    assert v.stats["same_optimal_wd"] == 1
    assert "interaction is significant" in v.observed
    assert "differs by bit-width" not in v.observed


def test_c2_undecided_with_one_seed(claims):
    v = decide_c2(schedule_table(seeds=1), claims["C2"], size="15M")
    assert v.outcome == "undecided"
    assert "seeds" in v.reason and "residual" in v.reason


def test_c2_undecided_with_one_bit_width(claims):
    v = decide_c2(schedule_table(bits=(16,)), claims["C2"], size="15M")
    assert v.outcome == "undecided"
    assert "2 bit-widths" in v.reason


def test_c2_ignores_bit_widths_outside_the_claim(claims):
    table = schedule_table(bits=(16, 8, 6))
    int4 = table[table["bits"] == 6].assign(bits=4, val_bpb_q=lambda d: d["val_bpb_q"] + 0.2)
    v = decide_c2(pd.concat([table, int4]), claims["C2"], size="15M")
    assert v.outcome == "reproduced"
    assert v.stats["n_runs"] == len(table)


def test_c2_fully_diverged_wd_ranks_last_and_leaves_the_anova(claims):
    table = schedule_table()
    table = diverge(table, (table["bits"] == 6) & (table["wd"] == 0.5))
    v = decide_c2(table, claims["C2"], size="15M")
    assert v.outcome == "reproduced", v.observed
    assert v.stats["anova_dropped_wd"] == "0.5"
    assert v.stats["n_diverged"] == len(LRS) * 3
    assert v.stats["df_num"] == (len(WDS) - 2) * (len(BITS) - 1)


# --------------------------------------------------------------------------- C3/C4/C5


@pytest.mark.parametrize("claim_id", ["C3", "C4", "C5"])
def test_arm_reproduced_when_every_size_holds(claims, claim_id):
    v = decide_null_arm(schedule_table(sizes=("15M", "30M")), claims[claim_id])
    assert v.outcome == "reproduced", v.observed
    assert v.stats["groups_holding"] == "2/2"
    assert v.stats["15M:outcome"] == v.stats["30M:outcome"] == "holds"
    assert_decided_stats(v)


@pytest.mark.parametrize("claim_id", ["C3", "C4", "C5"])
def test_arm_not_reproduced_when_one_size_fails(claims, claim_id):
    table = schedule_table(sizes=("15M", "30M"), opt_wd=lambda b, s: 0.5 if (b, s) == (6, "30M") else 0.33)
    v = decide_null_arm(table, claims[claim_id])
    assert v.outcome == "not_reproduced"
    assert v.stats["15M:outcome"] == "holds" and v.stats["30M:outcome"] == "fails"
    assert "30M" in v.observed.split(".")[0]


@pytest.mark.parametrize("claim_id", ["C3", "C4", "C5"])
def test_arm_undecided_when_a_size_has_one_seed(claims, claim_id):
    table = pd.concat([schedule_table(sizes=("15M",)), schedule_table(sizes=("30M",), seeds=1)])
    v = decide_null_arm(table, claims[claim_id])
    assert v.outcome == "undecided"
    assert "30M" in v.reason


def test_long_training_arm_splits_sizes_by_step_count(claims):
    table = pd.concat([
        schedule_table(steps=1000, rng_seed=1),
        schedule_table(steps=9000, rng_seed=2, opt_wd=lambda b, s: 0.5 if b == 6 else 0.33),
    ])
    v = decide_null_arm(table, claims["C5"])
    assert v.outcome == "not_reproduced"
    assert v.stats["15M@1000steps:outcome"] == "holds"
    assert v.stats["15M@9000steps:outcome"] == "fails"


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("column", ["val_bpb_q", "lr_mult", "status", "seed"])
def test_missing_column_is_a_pipeline_error(claims, column):
    table = schedule_table().drop(columns=[column])
    with pytest.raises(ValueError, match=column):
        decide_c1(table, claims["C1"], bits=6, size="15M")
    with pytest.raises(ValueError, match=column):
        decide_null_arm(table, claims["C3"])


def test_empty_table_is_a_pipeline_error(claims):
    empty = schedule_table().iloc[0:0]
    with pytest.raises(ValueError, match="empty"):
        decide_c2(empty, claims["C2"], size="15M")


def test_cell_absent_from_table_is_a_pipeline_error(claims):
    with pytest.raises(ValueError, match="no runs"):
        decide_c1(schedule_table(), claims["C1"], bits=6, size="100M")


def test_mixed_designs_are_a_pipeline_error(claims):
    table = schedule_table()
    mixed = pd.concat([table, table.assign(optimizer="adamw")])
    with pytest.raises(ValueError, match="duplicate runs"):
        decide_c2(mixed, claims["C2"], size="15M")


def test_ok_run_without_metric_is_a_pipeline_error(claims):
    table = schedule_table()
    table.loc[0, "val_bpb_q"] = math.nan
    with pytest.raises(ValueError, match="non-finite"):
        decide_c1(table, claims["C1"], bits=16, size="15M")


def test_unknown_status_is_a_pipeline_error(claims):
    table = schedule_table()
    table.loc[0, "status"] = "crashed"
    with pytest.raises(ValueError, match="crashed"):
        decide_c1(table, claims["C1"], bits=16, size="15M")

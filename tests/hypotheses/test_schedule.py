"""Unit tests of the schedule judges (C1..C5) on synthetic results tables.

Each claim gets a table where it is true, one where it is false, and one where it cannot
be decided; plus the diverged-run rule and input validation.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from engine.design import load_profile
from hypotheses.claims import load_claims
from hypotheses.schedule import decide_c1, decide_c2, decide_null_arm

WDS = (0.1, 0.2, 0.33, 0.5)
LRS = (0.5, 1.0, 2.0)
BITS = (16, 8, 6)
N_PARAMS = {"15M": 15_137_280, "30M": 29_884_416, "50M": 50_331_648}
QUANT_PENALTY = {16: 0.0003, 8: 0.002, 6: 0.009}  # additive: no wd x bits interaction
DECIDED_KEYS = ("n_runs", "n_seeds", "n_diverged", "seeds", "statistic", "statistic_value",
                "ci_low", "ci_high", "ci_level", "region", "delta", "effect_size_name", "effect_size")


DELTA = 0.005  # the paper profile's smallest effect of interest


@pytest.fixture(scope="module")
def claims():
    """The claims at the paper profile with delta pinned to ``DELTA`` (the tables below are
    built in its units), so these tests do not move when a profile's delta does."""
    paper = load_profile("paper")
    out = {}
    for k, c in load_claims().items():
        c = c.at_profile(paper)
        out[k] = replace(c, thresholds={**c.thresholds, "delta": DELTA})
    return out


def schedule_table(
    *,
    sizes=("15M",),
    bits=BITS,
    wds=WDS,
    seeds=5,
    opt_wd=lambda bits, size: 0.33,
    curvature=lambda bits, size: 0.4,
    noise=0.001,
    steps=1000,
    rng_seed=0,
    penalty=None,
) -> pd.DataFrame:
    """A Phase-2-like table: a quadratic bowl in wd around ``opt_wd``, LR optimum at x1,
    a per-seed offset shared by all runs of a seed, per-run noise; ``penalty`` (bits -> bpb,
    default ``QUANT_PENALTY``) is the additive quantisation penalty."""
    penalty = QUANT_PENALTY if penalty is None else penalty
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
                        bpb_q = bpb + penalty[b] + rng.normal(0, noise / 3)
                        rows.append({
                            "run_id": f"{size}-b{b}-wd{wd}-lr{lr}-s{seed}-{steps}",
                            "status": "ok", "diverged_step": math.nan,
                            "size": size, "n_params": N_PARAMS[size], "bits": b, "warmdown": wd,
                            "lr_mult": lr, "seed": seed, "optimizer": "muon",
                            "warmdown_shape": "linear", "steps": steps,
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
    assert v.stats["ci_high"] <= DELTA and v.stats["region"] == f"<= {DELTA:g}"
    assert v.stats["n_runs"] == len(WDS) * len(LRS) * 5 and v.stats["n_seeds"] == 5
    assert v.stats["best_lr_wd0.33"] == 1.0 and v.stats["seeds"] == "0,1,2,3,4"
    assert_decided_stats(v)


def test_c1_contradicted_when_another_wd_is_clearly_best(claims):
    """Negative control: wd10 beats wd33 by 0.021 bpb (4 delta) at INT6."""
    table = schedule_table(opt_wd=lambda b, s: 0.1 if b == 6 else 0.33, seeds=5)
    v = decide_c1(table, claims["C1"], bits=6, size="15M")
    assert v.outcome == "contradicted", v.observed
    assert v.stats["optimal_wd"] == pytest.approx(0.1) and v.stats["closest_rival_wd"] == pytest.approx(0.1)
    assert v.stats["ci_low"] > DELTA
    assert "vs wd 0.1" in v.observed
    # the other cells of the same table still reproduce
    assert decide_c1(table, claims["C1"], bits=16, size="15M").outcome == "reproduced"


def test_c1_inconclusive_near_a_tie_instead_of_a_coin_flip(claims):
    """A rival better by about delta with noise as large: the bare argmin would decide by
    chance; the bounds straddle delta and say so."""
    table = schedule_table(opt_wd=lambda b, s: 0.2 if b == 6 else 0.33, noise=0.004, seeds=3)
    v = decide_c1(table, claims["C1"], bits=6, size="15M")
    assert v.outcome == "inconclusive", v.observed
    assert v.stats["ci_low"] <= DELTA < v.stats["ci_high"]
    assert "straddle" in v.reason


def test_c1_inconclusive_with_one_seed(claims):
    v = decide_c1(schedule_table(seeds=1), claims["C1"], bits=8, size="15M")
    assert v.outcome == "inconclusive"
    assert "seed" in v.reason


def test_c1_inconclusive_when_wd33_not_in_design(claims):
    v = decide_c1(schedule_table(wds=(0.1, 0.2, 0.5)), claims["C1"], bits=8, size="15M")
    assert v.outcome == "inconclusive"
    assert "0.33" in v.reason


def test_c1_diverged_seed_is_excluded_but_counted(claims):
    table = schedule_table(seeds=5)
    table = diverge(table, (table["bits"] == 6) & (table["warmdown"] == 0.33) & (table["seed"] == 0))
    v = decide_c1(table, claims["C1"], bits=6, size="15M")
    assert v.outcome == "reproduced", v.observed  # four finite seeds remain, still compared
    assert v.stats["n_diverged"] == len(LRS)
    assert v.stats["n_pairs"] == 4


def test_c1_wd33_diverged_at_every_lr_is_inconclusive(claims):
    table = schedule_table()
    table = diverge(table, (table["bits"] == 6) & (table["warmdown"] == 0.33) & (table["seed"] >= 1))
    v = decide_c1(table, claims["C1"], bits=6, size="15M")
    assert v.outcome == "inconclusive"
    assert v.stats["mean_wd0.33"] == math.inf
    assert v.stats["n_diverged"] == 4 * len(LRS)


def test_c1_diverged_rival_leaves_the_comparison(claims):
    table = schedule_table()
    table = diverge(table, (table["bits"] == 6) & (table["warmdown"] == 0.5))
    v = decide_c1(table, claims["C1"], bits=6, size="15M")
    assert v.outcome == "reproduced", v.observed
    assert v.stats["dropped_wd"] == "0.5" and "0.5" not in v.stats["compared_wd"]


# --------------------------------------------------------------------------- C2


def test_c2_reproduced_when_bits_only_shift_the_curve(claims):
    v = decide_c2(schedule_table(), claims["C2"], size="15M")
    assert v.outcome == "reproduced", v.observed
    assert v.stats["15M:same_optimal_wd"] == 1
    assert {v.stats[f"15M:optimal_wd_{b}"] for b in ("FP16", "INT8", "INT6")} == {0.33}
    assert v.stats["n_contrasts"] == (len(WDS) - 1) * (len(BITS) - 1)
    assert -DELTA <= v.stats["ci_low"] and v.stats["ci_high"] <= DELTA
    assert_decided_stats(v)


def test_c2_contradicted_when_int6_wants_a_longer_warmdown(claims):
    """Negative control: the paper's primary hypothesis, true: INT6's optimum moves to 0.5."""
    table = schedule_table(opt_wd=lambda b, s: 0.5 if b == 6 else 0.33, seeds=5)
    v = decide_c2(table, claims["C2"], size="15M")
    assert v.outcome == "contradicted", v.observed
    assert v.stats["15M:optimal_wd_INT6"] == 0.5
    assert "INT6" in v.stats["worst_contrast"]
    assert "outside +-delta" in v.observed


def test_c2_contradicted_on_interaction_alone(claims):
    """Same argmin everywhere, but INT6 is far more sensitive to the warmdown."""
    table = schedule_table(curvature=lambda b, s: 3.0 if b == 6 else 0.4, seeds=5)
    v = decide_c2(table, claims["C2"], size="15M")
    assert v.outcome == "contradicted", v.observed
    assert v.stats["15M:same_optimal_wd"] == 1


def test_c2_different_argmin_on_a_flat_landscape_is_not_a_contradiction(claims):
    """The old rule failed C2 whenever the argmins differed; on a flat landscape they differ
    by chance. Flat + precise: reproduced, whatever the argmins."""
    table = schedule_table(curvature=lambda b, s: 0.0, seeds=5, noise=0.0008)
    v = decide_c2(table, claims["C2"], size="15M")
    assert v.outcome == "reproduced", v.observed


def test_c2_inconclusive_when_seeds_are_too_few_for_the_margin(claims):
    """With the premise clearly met (INT6 penalty 4 delta), noisy runs and 3 seeds leave the
    contrasts' CIs across +-delta: inconclusive for want of seeds, not of a premise."""
    table = schedule_table(noise=0.006, seeds=3, penalty={16: 0.0, 8: 0.01, 6: 0.02})
    v = decide_c2(table, claims["C2"], size="15M")
    assert v.outcome == "inconclusive", v.observed
    assert "more seeds" in v.reason
    assert v.premise == "met" and v.inconclusive_kind == "seeds"


def test_c2_inconclusive_with_one_seed(claims):
    v = decide_c2(schedule_table(seeds=1), claims["C2"], size="15M")
    assert v.outcome == "inconclusive"
    assert "paired seeds" in v.reason


def test_c2_inconclusive_with_one_bit_width(claims):
    v = decide_c2(schedule_table(bits=(16,)), claims["C2"], size="15M")
    assert v.outcome == "inconclusive"
    assert "QAT bit-width" in v.reason


def test_c2_ignores_bit_widths_outside_the_claim(claims):
    table = schedule_table(bits=(16, 8, 6))
    int4 = table[table["bits"] == 6].assign(bits=4, val_bpb_q=lambda d: d["val_bpb_q"] + 0.2)
    v = decide_c2(pd.concat([table, int4]), claims["C2"], size="15M")
    assert v.outcome == "reproduced"
    assert v.stats["n_runs"] == len(table)


def test_c2_fully_diverged_wd_leaves_its_contrasts_unformed(claims):
    table = schedule_table()
    table = diverge(table, (table["bits"] == 6) & (table["warmdown"] == 0.5))
    v = decide_c2(table, claims["C2"], size="15M")
    assert v.outcome == "inconclusive", v.observed  # an unformed contrast cannot be shown equivalent
    assert v.stats["missing_contrasts"] == "15M INT6 wd0.5"
    assert v.stats["n_diverged"] == len(LRS) * 5


# --------------------------------------------------------------------------- C3/C4/C5


@pytest.mark.parametrize("claim_id", ["C3", "C4", "C5"])
def test_arm_reproduced_when_every_size_holds(claims, claim_id):
    v = decide_null_arm(schedule_table(sizes=("15M", "30M")), claims[claim_id])
    assert v.outcome == "reproduced", v.observed
    assert v.stats["groups"] == "15M,30M"
    assert v.stats["n_contrasts"] == 2 * (len(WDS) - 1) * (len(BITS) - 1)
    assert_decided_stats(v)


@pytest.mark.parametrize("claim_id", ["C3", "C4", "C5"])
def test_arm_contradicted_when_one_size_fails(claims, claim_id):
    table = schedule_table(sizes=("15M", "30M"), seeds=5,
                           opt_wd=lambda b, s: 0.5 if (b, s) == (6, "30M") else 0.33)
    v = decide_null_arm(table, claims[claim_id])
    assert v.outcome == "contradicted", v.observed
    assert v.stats["worst_contrast"].startswith("30M INT6")


@pytest.mark.parametrize("claim_id", ["C3", "C4", "C5"])
def test_arm_inconclusive_when_a_size_has_one_seed(claims, claim_id):
    table = pd.concat([schedule_table(sizes=("15M",)), schedule_table(sizes=("30M",), seeds=1)])
    v = decide_null_arm(table, claims[claim_id])
    assert v.outcome == "inconclusive"
    assert "30M" in v.reason


def test_long_training_arm_splits_sizes_by_step_count(claims):
    table = pd.concat([
        schedule_table(steps=1000, rng_seed=1, seeds=5),
        schedule_table(steps=9000, rng_seed=2, seeds=5, opt_wd=lambda b, s: 0.5 if b == 6 else 0.33),
    ])
    v = decide_null_arm(table, claims["C5"])
    assert v.outcome == "contradicted", v.observed
    assert v.stats["groups"] == "15M@1000steps,15M@9000steps"
    assert v.stats["worst_contrast"].startswith("15M@9000steps INT6")


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


# --------------------------------------------------------------------------- premises (issue 22 item 1)


def _rates(decide, make_table, draws):
    out = {"reproduced": 0, "contradicted": 0, "inconclusive": 0, "premise_absent": 0}
    for i in range(draws):
        v = decide(make_table(i))
        out[v.outcome] += 1
        out["premise_absent"] += v.premise == "absent"
    return {k: n / draws for k, n in out.items()}


def test_c1_premise_absent_on_a_flat_landscape(claims):
    """Negative control: every warmdown equal (a landscape flatter than delta). The rule
    alone would reproduce 'wd33 is optimal' here, and for any other warmdown too; with the
    premise checked first the cell is not testable: inconclusive(premise), never reproduced."""
    table = schedule_table(curvature=lambda b, s: 0.0, noise=0.0008)
    v = decide_c1(table, claims["C1"], bits=6, size="15M")
    assert v.outcome == "inconclusive", v.observed
    assert v.reason.startswith("premise absent at this profile: ")
    assert v.premise == "absent" and v.inconclusive_kind == "premise"
    assert v.stats["premise"] == "absent" and v.stats["inconclusive_kind"] == "premise"
    assert v.stats["premise_bound"] <= DELTA
    assert "cannot tell warmdowns apart" in v.reason


def test_c1_premise_met_and_claim_true_still_reproduces(claims):
    v = decide_c1(schedule_table(), claims["C1"], bits=6, size="15M")
    assert v.outcome == "reproduced", v.observed
    assert v.premise == "met" and v.inconclusive_kind == "" and v.stats["premise_bound"] > DELTA


def test_c1_premise_simulation_flat_is_never_reproduced_and_power_is_kept(claims, monkeypatch):
    """By simulation through the decider (200 tables each): on a flat landscape P(reproduced)
    <= alpha with the premise (the rule alone reproduces almost always); on a bowl (wd10 4
    delta, wd50 1.2 delta worse than wd33: the claim true, the premise present) P(reproduced)
    is within 0.05 of the rule alone."""
    import hypotheses.schedule as schedule

    c1 = claims["C1"]

    def decide(t):
        return decide_c1(t, c1, bits=6, size="15M")

    def flat(i):
        return schedule_table(curvature=lambda b, s: 0.0, noise=0.0008, seeds=5, rng_seed=100 + i)

    def bowl(i):
        return schedule_table(noise=0.004, seeds=5, rng_seed=100 + i)

    with_premise_flat = _rates(decide, flat, 200)
    with_premise_bowl = _rates(decide, bowl, 200)
    monkeypatch.setattr(schedule, "_c1_premise", lambda *a, **k: None)
    rule_flat = _rates(decide, flat, 200)
    rule_bowl = _rates(decide, bowl, 200)
    assert rule_flat["reproduced"] > 0.9, rule_flat  # what the premise guards against
    assert with_premise_flat["reproduced"] <= 0.05 and with_premise_flat["premise_absent"] >= 0.95, with_premise_flat
    assert with_premise_bowl["premise_absent"] <= 0.05, with_premise_bowl
    assert abs(with_premise_bowl["reproduced"] - rule_bowl["reproduced"]) <= 0.05, (with_premise_bowl, rule_bowl)


def test_c2_premise_absent_without_a_quantisation_penalty(claims):
    """Negative control (issue 22's tiny cache): no INT6 penalty, so no interaction can act;
    the rule alone reproduces 'no interaction' trivially, the premise makes it not testable."""
    table = schedule_table(penalty={16: 0.0, 8: 0.0, 6: 0.0})
    v = decide_c2(table, claims["C2"], size="15M")
    assert v.outcome == "inconclusive", v.observed
    assert v.reason.startswith("premise absent at this profile: ") and v.inconclusive_kind == "premise"
    assert v.stats["premise_bits"] == 6 and v.stats["premise_bound"] <= DELTA
    assert "15M INT6 - FP16" in v.reason


@pytest.mark.parametrize("claim_id", ["C3", "C4", "C5"])
def test_arm_premise_absent_in_one_group_names_it(claims, claim_id):
    table = pd.concat([schedule_table(sizes=("15M",)),
                       schedule_table(sizes=("30M",), penalty={16: 0.0, 8: 0.0, 6: 0.001}, rng_seed=3)])
    v = decide_null_arm(table, claims[claim_id])
    assert v.outcome == "inconclusive" and v.inconclusive_kind == "premise", v.observed
    assert "30M" in v.reason and "15M" not in v.reason
    assert v.stats["premise_group"] == "30M"


def test_c2_premise_simulation_no_penalty_is_never_reproduced_and_power_is_kept(claims, monkeypatch):
    """200 simulated tables each: without a penalty P(reproduced) <= alpha (the rule alone:
    > 0.9); with INT6's penalty at 3 delta and the claim true, P(reproduced) within 0.05 of
    the rule alone."""
    import hypotheses.schedule as schedule

    c2 = claims["C2"]

    def decide(t):
        return decide_c2(t, c2, size="15M")

    def none(i):
        return schedule_table(penalty={16: 0.0, 8: 0.0, 6: 0.0}, noise=0.001, seeds=5, rng_seed=200 + i)

    def present(i):
        return schedule_table(penalty={16: 0.0, 8: DELTA, 6: 3 * DELTA}, noise=0.0015, seeds=5, rng_seed=200 + i)

    with_none, with_present = _rates(decide, none, 200), _rates(decide, present, 200)
    monkeypatch.setattr(schedule, "_check_penalty_premise", lambda *a, **k: None)
    rule_none, rule_present = _rates(decide, none, 200), _rates(decide, present, 200)
    assert rule_none["reproduced"] > 0.9, rule_none
    assert with_none["reproduced"] <= 0.05 and with_none["premise_absent"] >= 0.95, with_none
    assert with_present["premise_absent"] <= 0.05, with_present
    assert abs(with_present["reproduced"] - rule_present["reproduced"]) <= 0.05, (with_present, rule_present)


# --------------------------------------------------------------------------- C1: MCB set, too few pairs (item 6)


def test_c1_reports_the_warmdowns_that_cannot_be_excluded_as_best(claims):
    """A sharp bowl: only wd33 can be best. A landscape where wd20 and wd33 tie: both stay."""
    v = decide_c1(schedule_table(curvature=lambda b, s: 2.0), claims["C1"], bits=6, size="15M")
    assert v.stats["mcb_best_set"] == "0.33", v.observed
    assert v.stats["mcb_low_wd0.1"] > 0 and v.stats["mcb_low_wd0.33"] <= 0
    assert "cannot be excluded as best (MCB): wd 0.33" in v.observed
    # 0.2 and 0.33 equidistant from the optimum 0.265: both stay in the set, except at the
    # set's error rate (<= alpha per true best), so judged over 50 tables
    both = 0
    for i in range(50):
        tie = schedule_table(opt_wd=lambda b, s: 0.265, curvature=lambda b, s: 2.0, noise=0.004, rng_seed=i)
        v = decide_c1(tie, claims["C1"], bits=6, size="15M")
        both += set(v.stats["mcb_best_set"].split(",")) == {"0.2", "0.33"}
    assert both >= 44


def test_c1_mcb_best_set_is_a_junit_property(claims):
    from hypotheses.decide import verdict_row

    v = decide_c1(schedule_table(), claims["C1"], bits=6, size="15M")
    row = verdict_row(v, load_profile("paper"), "int6-15M")
    assert row["stat_mcb_best_set"] == v.stats["mcb_best_set"]
    assert row["stat_premise"] == "met" and row["stat_inconclusive_kind"] == ""


def test_mcb_covers_the_true_best_at_its_level():
    """Hsu's MCB (intervals.mcb_min), by simulation: 4 paired arms, the true best at 0 and
    two rivals close behind (0.3 SD): P(true best in the set) >= 1 - alpha - 0.02 over 500
    draws, and a far worse arm is excluded almost always."""
    from hypotheses.intervals import mcb_min

    rng = np.random.default_rng(7)
    mu = {"a": 0.0, "b": 0.3, "c": 0.3, "d": 3.0}
    covered = excluded_far = 0
    for _ in range(500):
        seed_off = rng.normal(0, 1.0, 6)
        arms = {k: {s: m + seed_off[s] + rng.normal(0, 1.0) for s in range(6)} for k, m in mu.items()}
        res = mcb_min(arms, 0.05)
        covered += "a" in res.best_set
        excluded_far += "d" not in res.best_set
    assert covered / 500 >= 0.93
    assert excluded_far / 500 >= 0.9


def test_c1_rival_with_too_few_paired_seeds_is_inconclusive(claims):
    """Issue 22 item 6: the rule says a comparison with fewer than 2 paired seeds is
    inconclusive; the code used to drop that warmdown and carry on (reproduced). wd50 keeps 2
    finite seeds (0, 1) and wd33 keeps 2 others (3, 4): no seed pairs them."""
    table = schedule_table(seeds=5)
    i6 = table["bits"] == 6
    table = diverge(table, i6 & (table["warmdown"] == 0.33) & table["seed"].isin([0, 1, 2]))
    table = diverge(table, i6 & (table["warmdown"] == 0.5) & table["seed"].isin([2, 3, 4]))
    v = decide_c1(table, claims["C1"], bits=6, size="15M")
    assert v.outcome == "inconclusive", v.observed
    assert v.inconclusive_kind == "seeds" and v.stats["too_few_pairs_wd"] == "0.5"
    assert "fewer than 2 paired seeds" in v.reason and "0.5" in v.reason

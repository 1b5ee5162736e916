"""Unit tests of the INT4 judges: C7 (wd33 better by more than delta at 50M+) and C8
(every small size's preference within delta, no size where wd10 wins).

Three outcomes each, with negative controls (a table where the claim is false MUST be
contradicted), diverged runs, malformed input, and the calibration of both rules at every
profile (type-I errors by simulation; the power figures are printed for the lead).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_rel

from hypotheses.claims import load_claims
from hypotheses.int4 import (
    _holm,
    decide_c7,
    decide_c8,
    paired_wd_differences,
    scenarios_c7,
    scenarios_c8,
    small_telescope_dz,
)
from hypotheses.verdict import REQUIRED_STATS, require_table

DELTA = 0.005
N_PARAMS = {
    "3M": 3_145_728, "5M": 5_242_880, "8M": 8_126_464, "12M": 12_058_624,
    "20M": 19_922_944, "30M": 29_884_416, "50M": 50_331_648, "100M": 101_187_584,
}
SMALL = ["3M", "5M", "8M", "12M", "20M", "30M"]
LARGE = ["50M", "100M"]


def with_delta(claim, delta=DELTA):
    """The claim with an explicit delta, so these tests do not depend on a profile's value."""
    return replace(claim, thresholds={**claim.thresholds, "delta": delta})


@pytest.fixture(scope="module")
def claims():
    loaded = load_claims()
    return {"C7": with_delta(loaded["C7"]), "C8": with_delta(loaded["C8"])}


def int4_table(*, sizes, seeds=10, delta=lambda size: 0.0, noise=0.002, lrs=(1.0,), rng_seed=0) -> pd.DataFrame:
    """INT4 runs at wd 0.10 and 0.33; val_bpb_q(wd10) - val_bpb_q(wd33) ~ delta(size) + noise.

    A per-seed offset is shared by both warmdowns of a seed (that is what pairing removes);
    ``noise`` is the per-run SD, so sd(d) ~ sqrt(2) x noise.
    """
    rng = np.random.default_rng(rng_seed)
    rows = []
    for size in sizes:
        base = 1.60 - 0.04 * math.log(N_PARAMS[size] / 1e7)
        offsets = rng.normal(0, 0.01, size=seeds)
        for seed in range(seeds):
            for lr in lrs:
                for wd in (0.1, 0.33):
                    q = base + offsets[seed] + (delta(size) if wd == 0.1 else 0.0) + rng.normal(0, noise)
                    rows.append({
                        "run_id": f"{size}-b4-wd{wd}-lr{lr}-s{seed}", "status": "ok", "diverged_step": math.nan,
                        "size": size, "n_params": N_PARAMS[size], "bits": 4, "warmdown": wd, "lr_mult": lr,
                        "seed": seed, "optimizer": "muon", "warmdown_shape": "linear", "steps": 1000,
                        "val_bpb": q - 0.05, "val_bpb_q": q, "val_bpb_int8": q - 0.048,
                        "quant_penalty": 0.05, "grid_dist_int6_prewd": 0.245, "grid_dist_own_prewd": 0.245,
                    })
    return pd.DataFrame(rows)


def diverge(table, mask):
    out = table.copy()
    out.loc[mask, ["status", "diverged_step", "val_bpb", "val_bpb_q"]] = ["diverged", 300.0, math.nan, math.nan]
    return out


def wd_values(table, size, wd):
    rows = table[(table["size"] == size) & (table["warmdown"] == wd) & (table["status"] == "ok")]
    return rows.sort_values("seed")["val_bpb_q"].to_numpy()


def assert_complete_stats(v):
    for key in REQUIRED_STATS:
        assert key in v.stats, key
    for key in ("statistic_value", "ci_low", "ci_high", "ci_level"):
        assert math.isfinite(v.stats[key]), (key, v.stats[key])
    assert v.stats["statistic"] and v.stats["region"]
    assert v.stats["ci_low"] <= v.stats["statistic_value"] <= v.stats["ci_high"]


# --------------------------------------------------------------------------- C7


@pytest.mark.parametrize("size", LARGE)
def test_c7_reproduced_when_wd33_wins_by_more_than_delta(claims, size):
    table = int4_table(sizes=LARGE, delta=lambda s: 0.03)
    v = decide_c7(table, claims["C7"], size=size)
    assert v.outcome == "reproduced", v.observed
    assert_complete_stats(v)
    assert v.stats["ci_low"] > DELTA and v.stats["region"] == "> 0.005"
    assert v.stats["ci_level"] == pytest.approx(0.90)
    assert v.stats["wins_wd_long"] == "10/10"
    assert v.stats["n_paired_seeds"] == 10 and v.stats["n_runs"] == 20
    assert v.stats["paper_z"] == "[12, 15]" and v.stats["paper_wins"] == "10/10"


def test_c7_statistics_match_scipy(claims):
    table = int4_table(sizes=["50M"], delta=lambda s: 0.004, noise=0.004)
    v = decide_c7(table, claims["C7"], size="50M")
    w10, w33 = wd_values(table, "50M", 0.1), wd_values(table, "50M", 0.33)
    res = ttest_rel(w10, w33)
    ci = res.confidence_interval(confidence_level=0.90)  # ends = the one-sided 95 % bounds
    d = w10 - w33
    assert v.stats["paired_z"] == pytest.approx(res.statistic)
    assert v.stats["p_value"] == pytest.approx(res.pvalue)
    assert (v.stats["ci_low"], v.stats["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert v.stats["statistic_value"] == pytest.approx(d.mean())
    assert v.stats["cohens_dz"] == pytest.approx(d.mean() / d.std(ddof=1))
    assert v.stats["upper_dz"] == pytest.approx(ci.high / d.std(ddof=1))
    assert v.stats["upper_dz_below_d33"] == int(v.stats["upper_dz"] < v.stats["d33"])


def test_c7_small_telescope_effect_matches_statsmodels():
    from statsmodels.stats.power import TTestPower

    expected = TTestPower().solve_power(nobs=10, alpha=0.05, power=0.33, alternative="larger")
    assert small_telescope_dz(0.05, 10) == pytest.approx(expected, rel=1e-4)


def test_c7_contradicted_without_an_effect(claims):
    """Negative control: no schedule preference at all."""
    v = decide_c7(int4_table(sizes=["100M"]), claims["C7"], size="100M")
    assert v.outcome == "contradicted", v.observed
    assert_complete_stats(v)
    assert v.stats["ci_high"] < DELTA


def test_c7_contradicted_when_wd10_wins(claims):
    """Negative control: the opposite preference."""
    v = decide_c7(int4_table(sizes=["50M"], delta=lambda s: -0.02), claims["C7"], size="50M")
    assert v.outcome == "contradicted", v.observed
    assert v.stats["wins_wd_long"] == "0/10"
    assert v.stats["upper_dz_below_d33"] == 1 and "d33" in v.observed


def test_c7_contradicted_when_wd33_wins_every_seed_by_less_than_delta(claims):
    """Negative control: significant (every seed, large z) yet immaterial: not 'decisive'."""
    v = decide_c7(int4_table(sizes=["50M"], delta=lambda s: 0.002, noise=0.0002), claims["C7"], size="50M")
    assert v.stats["wins_wd_long"] == "10/10" and v.stats["paired_z"] > 10
    assert v.outcome == "contradicted", v.observed


def test_c7_inconclusive_when_the_bounds_straddle_delta(claims):
    v = decide_c7(int4_table(sizes=["50M"], seeds=4, delta=lambda s: 0.006, noise=0.004), claims["C7"], size="50M")
    assert v.outcome == "inconclusive", v.observed
    assert v.stats["ci_low"] < DELTA < v.stats["ci_high"]
    assert "straddle" in v.reason
    assert_complete_stats(v)


def test_c7_inconclusive_with_two_seeds(claims):
    v = decide_c7(int4_table(sizes=["50M"], seeds=2, delta=lambda s: 0.03), claims["C7"], size="50M")
    assert v.outcome == "inconclusive"
    assert "paired seeds" in v.reason
    assert v.stats["n_runs"] == 4 and math.isnan(v.stats["ci_low"])


def test_c7_diverged_run_drops_its_pair(claims):
    table = int4_table(sizes=["50M"], delta=lambda s: 0.03)
    table = diverge(table, (table["warmdown"] == 0.1) & (table["seed"] == 4))
    v = decide_c7(table, claims["C7"], size="50M")
    assert v.outcome == "reproduced"
    assert v.stats["n_diverged"] == 1 and v.stats["n_pairs"] == 9
    assert v.stats["wins_wd_long"] == "9/9"


def test_c7_inconclusive_when_divergence_leaves_two_pairs(claims):
    table = int4_table(sizes=["50M"], seeds=4, delta=lambda s: 0.03)
    table = diverge(table, (table["warmdown"] == 0.33) & (table["seed"] <= 1))
    v = decide_c7(table, claims["C7"], size="50M")
    assert v.outcome == "inconclusive"
    assert v.stats["n_diverged"] == 2 and "fewer than 3 paired seeds" in v.reason


def test_c7_averages_a_seeds_learning_rates(claims):
    table = int4_table(sizes=["50M"], delta=lambda s: 0.03, lrs=(0.5, 1.0))
    v = decide_c7(table, claims["C7"], size="50M")
    assert v.stats["n_pairs"] == 20 and v.stats["n_paired_seeds"] == 10
    assert v.stats["wins_wd_long"] == "10/10"
    t = require_table(table, ["size", "bits", "warmdown", "lr_mult"], "val_bpb_q", what="t")
    d = paired_wd_differences(t, "val_bpb_q", 0.1, 0.33, 1e-6)
    assert len(d) == 10 and v.stats["statistic_value"] == pytest.approx(d["d"].mean())


def test_c7_ignores_other_warmdowns_and_bit_widths(claims):
    table = int4_table(sizes=["50M"], delta=lambda s: 0.03)
    noise = pd.concat([table.assign(warmdown=0.2), table.assign(bits=6)])
    v = decide_c7(pd.concat([table, noise]), claims["C7"], size="50M")
    assert v.outcome == "reproduced" and v.stats["n_runs"] == len(table)


def test_c7_malformed_input_is_a_pipeline_error(claims):
    table = int4_table(sizes=["50M"])
    with pytest.raises(ValueError, match="warmdown"):
        decide_c7(table.drop(columns=["warmdown"]), claims["C7"], size="50M")
    with pytest.raises(ValueError, match="100M"):
        decide_c7(table, claims["C7"], size="100M")
    with pytest.raises(ValueError, match="status"):
        decide_c7(table.assign(status="running"), claims["C7"], size="50M")
    with pytest.raises(ValueError, match="non-finite"):
        decide_c7(table.assign(val_bpb_q=math.nan), claims["C7"], size="50M")
    with pytest.raises(ValueError, match="duplicate"):
        decide_c7(pd.concat([table, table]), claims["C7"], size="50M")
    with pytest.raises(ValueError, match="delta"):
        decide_c7(table, load_claims()["C7"], size="50M")  # no profile merged: no delta


# --------------------------------------------------------------------------- C8


def test_c8_reproduced_when_every_size_is_within_delta(claims):
    v = decide_c8(int4_table(sizes=SMALL, noise=0.001), claims["C8"])
    assert v.outcome == "reproduced", v.observed
    assert_complete_stats(v)
    assert v.stats["region"] == "[-0.005, 0.005]" and v.stats["ci_level"] == pytest.approx(0.90)
    assert v.stats["n_sizes_tested"] == 6
    assert v.stats["ci_level_bonferroni"] == pytest.approx(1 - 0.1 / 6)
    means = {s: v.stats[f"{s}:mean_diff"] for s in SMALL}
    head = max(means, key=lambda s: abs(means[s]))
    assert v.stats["headline_size"] == head and v.stats["statistic_value"] == means[head]
    for size in SMALL:
        lo, hi = v.stats[f"{size}:ci_low"], v.stats[f"{size}:ci_high"]
        assert -DELTA <= lo < v.stats[f"{size}:mean_diff"] < hi <= DELTA
        assert v.stats[f"{size}:ci_low_bonf"] < lo and v.stats[f"{size}:ci_high_bonf"] > hi
    assert v.stats["paper_significant_sizes"] == "0/6"


def test_c8_holm_matches_statsmodels_and_is_only_reported(claims):
    from statsmodels.stats.multitest import multipletests

    # 12M prefers wd33 by 0.002 (inside delta) with precision: significant, yet equivalent.
    table = int4_table(sizes=SMALL, noise=0.0005, delta=lambda s: 0.002 if s == "12M" else 0.0)
    v = decide_c8(table, claims["C8"])
    p = [v.stats[f"{s}:p"] for s in SMALL]
    expected = multipletests(p, alpha=0.05, method="holm")[1]
    assert [v.stats[f"{s}:p_holm"] for s in SMALL] == pytest.approx(list(expected))
    assert v.stats["12M:p_holm"] < 0.05
    assert v.outcome == "reproduced", v.observed  # a significant test is not a material effect
    assert _holm(np.array([0.04, 0.01, 0.03])) == pytest.approx([0.06, 0.03, 0.06])


def test_c8_contradicted_when_one_size_prefers_wd33_beyond_delta(claims):
    """Negative control: a size with a material wd33 preference."""
    table = int4_table(sizes=SMALL, noise=0.001, delta=lambda s: 0.02 if s == "20M" else 0.0)
    v = decide_c8(table, claims["C8"])
    assert v.outcome == "contradicted", v.observed
    assert_complete_stats(v)
    assert v.stats["headline_size"] == "20M" and v.stats["ci_low"] > DELTA
    assert v.stats["ci_level"] == pytest.approx(1 - 0.1 / 6)  # the corrected CI decided
    assert "wd33 better by more than delta at 20M" in v.observed


def test_c8_contradicted_and_named_when_wd10_wins(claims):
    """Negative control: a region where wd10 wins clearly."""
    table = int4_table(sizes=SMALL, noise=0.001, delta=lambda s: -0.02 if s == "12M" else 0.0)
    v = decide_c8(table, claims["C8"])
    assert v.outcome == "contradicted", v.observed
    assert "wd10 wins at 12M by more than delta" in v.observed and v.stats["wd10_wins_sizes"] == "12M"


def test_c8_significant_but_immaterial_wd10_win_is_reported_not_decisive(claims):
    """Issue 22 item 3 (this test asserted 'contradicted' before): every CI inside
    [-delta, delta], one wholly below 0. A wd10 win smaller than delta is not "a region where
    wd10 wins" by any effect of interest: reproduced, with the significant immaterial
    preference named in the stats and the observed text."""
    table = int4_table(sizes=SMALL, noise=0.0003, delta=lambda s: -0.003 if s == "8M" else 0.0)
    v = decide_c8(table, claims["C8"])
    assert all(-DELTA <= v.stats[f"{s}:ci_low"] and v.stats[f"{s}:ci_high"] <= DELTA for s in SMALL)
    assert v.outcome == "reproduced", v.observed
    assert "8M" in v.stats["wd10_immaterial_sizes"].split(",") and v.stats["wd10_wins_sizes"] == ""
    assert "not decisive" in v.observed and "wd0.1 at" in v.observed and "8M" in v.observed


def _c8_rates(claims, true_d, seeds, draws, noise=0.004, sizes=("3M", "5M")):
    """Outcome rates of decide_c8 over ``draws`` simulated tables where the first size's
    true wd10 - wd33 difference is ``true_d`` and the others' 0 (sd(d) = sqrt(2) x noise)."""
    out = {"reproduced": 0, "contradicted": 0, "inconclusive": 0}
    for i in range(draws):
        table = int4_table(sizes=list(sizes), seeds=seeds, noise=noise, rng_seed=1000 + i,
                           delta=lambda s: true_d if s == sizes[0] else 0.0)
        out[decide_c8(table, claims["C8"]).outcome] += 1
    return {k: v / draws for k, v in out.items()}


def test_c8_a_true_wd10_win_inside_delta_is_not_contradicted_more_than_alpha(claims):
    """Issue 22 item 3: at a true wd10 win of 0.4 delta (the claim true, near its edge), the
    old point-null clause contradicted 84 % of the time as seeds grew. Now P(contradicted)
    <= alpha + 0.03 (2.4 binomial SEs at 300 draws), by simulation through the decider, at a
    seed count where the win is usually significant (it would have been contradicted)."""
    rates = _c8_rates(claims, -0.4 * DELTA, seeds=30, draws=300, noise=0.002)
    assert rates["contradicted"] <= 0.05 + 0.03, rates


def test_c8_a_material_wd10_win_is_contradicted_with_high_probability(claims):
    """The negative control of the same simulation: a true wd10 win of 2 delta."""
    rates = _c8_rates(claims, -2 * DELTA, seeds=10, draws=200, noise=0.002)
    assert rates["contradicted"] >= 0.9, rates


def test_c8_inconclusive_when_noise_swamps_delta(claims):
    v = decide_c8(int4_table(sizes=SMALL, seeds=4, noise=0.006), claims["C8"])
    assert v.outcome == "inconclusive", v.observed
    assert "beyond [-delta, delta]" in v.reason
    assert_complete_stats(v)


def test_c8_inconclusive_with_one_size(claims):
    v = decide_c8(int4_table(sizes=["8M"]), claims["C8"])
    assert v.outcome == "inconclusive"
    assert "fewer than 2 sizes" in v.reason


def test_c8_inconclusive_when_a_size_lacks_seeds(claims):
    table = pd.concat([int4_table(sizes=SMALL[:5], noise=0.001), int4_table(sizes=["30M"], seeds=2, rng_seed=5)])
    v = decide_c8(table, claims["C8"])
    assert v.outcome == "inconclusive"
    assert "30M" in v.reason and v.stats["untestable_sizes"] == "30M"
    assert v.stats["n_sizes_tested"] == 5


def test_c8_contradiction_decides_even_if_another_size_is_untestable(claims):
    table = pd.concat([
        int4_table(sizes=SMALL[:5], noise=0.001, delta=lambda s: -0.02 if s == "3M" else 0.0),
        int4_table(sizes=["30M"], seeds=2, rng_seed=5),
    ])
    v = decide_c8(table, claims["C8"])
    assert v.outcome == "contradicted" and "wd10 wins at 3M" in v.observed


def test_c8_orders_sizes_by_parameter_count(claims):
    v = decide_c8(int4_table(sizes=["30M", "12M", "3M"], noise=0.001), claims["C8"])
    assert v.stats["sizes"] == "3M,12M,30M"  # not the string order 12M,30M,3M


def test_c8_diverged_runs_are_counted_and_dropped(claims):
    table = int4_table(sizes=SMALL, noise=0.001)
    table = diverge(table, (table["size"] == "3M") & (table["seed"] < 3) & (table["warmdown"] == 0.1))
    v = decide_c8(table, claims["C8"])
    assert v.stats["n_diverged"] == 3 and v.stats["3M:n_pairs"] == 7
    assert v.outcome == "reproduced"


def test_c8_malformed_input_is_a_pipeline_error(claims):
    with pytest.raises(ValueError, match="no INT4 runs"):
        decide_c8(int4_table(sizes=SMALL).assign(bits=6), claims["C8"])
    with pytest.raises(ValueError, match="lr_mult"):
        decide_c8(int4_table(sizes=SMALL).drop(columns=["lr_mult"]), claims["C8"])
    with pytest.raises(ValueError, match="empty"):
        decide_c8(int4_table(sizes=SMALL).iloc[:0], claims["C8"])


# --------------------------------------------------------------------------- scenarios


def _mean_d(arms, size=None):
    a = arms if size is None else arms[arms["size"] == size]
    return float(a.loc[a["warmdown"] == 0.1, "mu"].mean() - a.loc[a["warmdown"] == 0.33, "mu"].mean())


def _arms(sizes):
    return pd.DataFrame([{"size": s, "n_params": N_PARAMS[s], "bits": 4, "warmdown": wd, "lr_mult": 1.0}
                         for s in sizes for wd in (0.1, 0.33)])


def test_c7_scenarios_set_the_true_difference(claims):
    sc = scenarios_c7(claims["C7"], _arms(["50M"]))
    assert set(sc) == {"true", "boundary", "violation"}
    assert _mean_d(sc["true"].arms) == pytest.approx(3 * DELTA)
    assert _mean_d(sc["boundary"].arms) == pytest.approx(DELTA)
    assert _mean_d(sc["violation"].arms) == pytest.approx(0.0)


def test_c8_scenarios_move_the_smallest_size_only(claims):
    sc = scenarios_c8(claims["C8"], _arms(["8M", "3M", "5M"]))
    assert all(_mean_d(sc["true"].arms, s) == pytest.approx(0.0) for s in ("3M", "5M", "8M"))
    assert _mean_d(sc["boundary"].arms, "3M") == pytest.approx(DELTA)
    assert _mean_d(sc["violation"].arms, "3M") == pytest.approx(-2 * DELTA)
    assert _mean_d(sc["violation"].arms, "8M") == pytest.approx(0.0)


# --------------------------------------------------------------------------- premise (issue 22 item 1)


def with_fp16(table: pd.DataFrame, penalty: float, noise: float = 0.002, rng_seed: int = 9) -> pd.DataFrame:
    """The INT4 table plus FP16 partners (same size, wd, lr, seed) whose val_bpb_q is lower by
    ``penalty`` (the INT4 penalty) up to run noise."""
    rng = np.random.default_rng(rng_seed)
    fp = table.copy()
    fp["bits"] = 16
    fp["run_id"] = fp["run_id"].str.replace("-b4-", "-b16-")
    fp["val_bpb_q"] = fp["val_bpb_q"] - penalty + rng.normal(0, noise, len(fp))
    return pd.concat([table, fp], ignore_index=True)


def test_c7_premise_absent_without_an_int4_penalty(claims):
    """Negative control: wd33 clearly better (the rule alone reproduces), but INT4 costs
    nothing against FP16 at this 'profile': the claim about INT4 is not testable here."""
    table = with_fp16(int4_table(sizes=LARGE, delta=lambda s: 4 * DELTA, noise=0.001), penalty=0.0, noise=0.0005)
    v = decide_c7(table, claims["C7"], size="50M")
    assert v.outcome == "inconclusive", v.observed
    assert v.reason.startswith("premise absent at this profile: ") and v.inconclusive_kind == "premise"
    assert v.stats["premise_bound"] < DELTA


def test_c7_premise_met_and_claim_true_still_reproduces(claims):
    table = with_fp16(int4_table(sizes=LARGE, delta=lambda s: 4 * DELTA, noise=0.001), penalty=0.05)
    v = decide_c7(table, claims["C7"], size="50M")
    assert v.outcome == "reproduced" and v.premise == "met", v.observed
    assert v.stats["n_runs"] == 20  # the FP16 partners enter the premise only, not the counts


def test_c7_c8_premise_unchecked_without_fp16_partners(claims):
    v7 = decide_c7(int4_table(sizes=LARGE, delta=lambda s: 4 * DELTA, noise=0.001), claims["C7"], size="50M")
    v8 = decide_c8(int4_table(sizes=SMALL, noise=0.001), claims["C8"])
    assert (v7.outcome, v7.premise) == ("reproduced", "unchecked")
    assert (v8.outcome, v8.premise) == ("reproduced", "unchecked")


def test_c8_premise_absent_without_an_int4_penalty(claims):
    """Negative control: every size equivalent (the rule alone reproduces) and INT4 surely
    costs less than delta at every size: inconclusive(premise), not reproduced."""
    table = with_fp16(int4_table(sizes=SMALL, noise=0.001), penalty=0.0, noise=0.0005)
    v = decide_c8(table, claims["C8"])
    assert v.outcome == "inconclusive" and v.inconclusive_kind == "premise", v.observed
    assert v.reason.startswith("premise absent at this profile: ")
    assert v.stats["premise_sizes"] == ",".join(SMALL)


def test_c8_premise_met_and_claim_true_still_reproduces(claims):
    table = with_fp16(int4_table(sizes=SMALL, noise=0.001), penalty=0.03)
    v = decide_c8(table, claims["C8"])
    assert v.outcome == "reproduced" and v.premise == "met", v.observed


def test_c8_premise_simulation_keeps_power(claims, monkeypatch):
    """100 simulated tables: with an INT4 penalty of 3 delta and the claim true, P(reproduced)
    is that of the rule alone (within 0.05); without a penalty P(reproduced) <= alpha."""
    import hypotheses.int4 as int4

    def rates(penalty):
        out = {"reproduced": 0, "absent": 0}
        for i in range(100):
            t = with_fp16(int4_table(sizes=["3M", "5M"], seeds=8, noise=0.002, rng_seed=500 + i), penalty=penalty,
                          noise=0.002, rng_seed=900 + i)
            v = decide_c8(t, claims["C8"])
            out["reproduced"] += v.outcome == "reproduced"
            out["absent"] += v.premise == "absent"
        return {k: n / 100 for k, n in out.items()}

    with_none, with_pen = rates(0.0), rates(3 * DELTA)
    monkeypatch.setattr(int4, "_int4_penalty_premise", lambda *a, **k: None)
    rule_none, rule_pen = rates(0.0), rates(3 * DELTA)
    assert rule_none["reproduced"] > 0.8, rule_none
    assert with_none["reproduced"] <= 0.05, with_none
    assert with_pen["absent"] <= 0.05 and abs(with_pen["reproduced"] - rule_pen["reproduced"]) <= 0.05, (with_pen, rule_pen)

"""Unit tests of the C6 judge (log-linear INT6 penalty, held-out prediction errors within delta)
and its calibration (type-I errors of both kinds at every profile)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from engine.design import load_profile
from hypotheses.calibration import cell_arms
from hypotheses.cells import cells_for
from hypotheses.claims import load_claims
from hypotheses.scaling import decide_c6, matched_penalties, scenarios_c6
from hypotheses.verdict import REQUIRED_STATS, require_table

N_PARAMS = {
    "5M": 5_242_880, "8M": 8_126_464, "15M": 15_137_280, "30M": 29_884_416,
    "50M": 50_331_648, "100M": 101_187_584, "175M": 176_160_768, "250M": 251_658_240,
    "350M": 352_321_536,
}
FIT = ["15M", "30M", "50M", "100M"]
HELDOUT = ["5M", "8M", "175M", "250M", "350M"]
DELTA = 0.005  # the paper profile's [verdicts.delta] C6


@pytest.fixture(scope="module")
def raw_claim():
    return load_claims()["C6"]


@pytest.fixture(scope="module")
def claim(raw_claim):
    """C6 at the paper profile with delta pinned to ``DELTA`` (the tables below are built in
    its units), so these tests do not move when the profile's delta does."""
    c = raw_claim.at_profile(load_profile("paper"))
    return replace(c, thresholds={**c.thresholds, "delta": DELTA})


def law(n_params: float) -> float:
    """INT6 penalty in bpb: 0.020 at 15M, shrinking by 0.004 per e-fold of parameters."""
    return 0.020 - 0.004 * math.log(n_params / N_PARAMS["15M"])


def size_sweep_table(
    *, sizes=FIT + HELDOUT, seeds=3, shift=lambda size: 0.0, noise=0.0008, rng_seed=1,
    wds=(0.2, 0.33), wd_effect=0.0,
) -> pd.DataFrame:
    """Matched FP16/INT6 runs; ``shift(size)`` moves the INT6 penalty off the law.

    ``noise`` is the SD of one run pair's penalty (seed effects cancel in the pair)."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for size in sizes:
        n = N_PARAMS[size]
        for wd in wds:
            for seed in range(seeds):
                fp16 = 1.45 - 0.05 * math.log(n / 1e7) + 0.01 * (wd - 0.33) ** 2 + rng.normal(0, 0.004)
                penalty = law(n) + shift(size) + wd_effect * (0.33 - wd) + rng.normal(0, noise)
                for bits, q in ((16, fp16 + 0.0003), (6, fp16 + penalty)):
                    rows.append({
                        "run_id": f"{size}-b{bits}-wd{wd}-s{seed}", "status": "ok",
                        "diverged_step": math.nan, "size": size, "n_params": n, "bits": bits,
                        "warmdown": wd, "lr_mult": 1.0, "seed": seed, "optimizer": "muon",
                        "warmdown_shape": "linear", "steps": 1000, "val_bpb": fp16, "val_bpb_q": q,
                        "val_bpb_int8": fp16 + 0.002, "quant_penalty": q - fp16,
                        "grid_dist_int6_prewd": 0.245, "grid_dist_own_prewd": 0.245,
                    })
    return pd.DataFrame(rows)


def decide(table, claim, fit=FIT, held=HELDOUT):
    return decide_c6(table, claim, fit_sizes=fit, heldout_sizes=held)


# ---------------------------------------------------------------------------------------
# The three outcomes
# ---------------------------------------------------------------------------------------


def test_c6_reproduced_when_heldout_sizes_follow_the_law(claim):
    v = decide(size_sweep_table(), claim)
    assert v.outcome == "reproduced", v.observed
    s = v.stats
    for key in REQUIRED_STATS:  # a decided verdict sets every headline statistic
        assert key in s and s[key] == s[key] and s[key] != "", key
    assert s["statistic"] == "max_abs_prediction_error"
    assert s["region"] == "[-0.005, 0.005]" and s["delta"] == DELTA
    assert s["ci_level"] == pytest.approx(0.90)
    assert -DELTA <= s["ci_low"] <= s["statistic_value"] <= s["ci_high"] <= DELTA
    assert abs(s["statistic_value"]) == max(abs(s[f"{z}:error"]) for z in HELDOUT)
    assert s["n_within_delta"] == 5 and s["breaking_sizes"] == ""
    assert s["inside"] == "5/5" and s["paper_inside"] == "5/5"
    assert s["slope_per_log_param"] == pytest.approx(-0.004, abs=0.0008)
    assert s["r_squared"] > 0.9 and 0 < s["chow_p"] <= 1 and s["chow_df_num"] == 5 * 6
    assert s["n_runs"] == 9 * 2 * 2 * 3 and s["n_seeds"] == 3 and s["n_diverged"] == 0
    assert "largest |e|" in v.observed and "Chow F" in v.observed


def test_c6_contradicted_when_a_heldout_size_is_far_off_the_law(claim):
    # Negative control: 350M's penalty sits 4 delta above the law; the claim is false there.
    shift = lambda size: 4 * DELTA if size == "350M" else 0.0  # noqa: E731
    v = decide(size_sweep_table(shift=shift), claim)
    assert v.outcome == "contradicted", v.observed
    s = v.stats
    assert s["breaking_sizes"] == "350M" and s["worst_size"] == "350M"
    assert s["350M:outside_delta"] == 1 and s["350M:corr_low"] > DELTA
    assert s["statistic_value"] == pytest.approx(4 * DELTA, abs=0.002)
    assert s["ci_low"] > DELTA
    assert s["corrected_level"] == pytest.approx(1 - 0.10 / 5)
    assert s["350M:inside"] == 0 and s["inside"] == "4/5"  # the paper's PI check agrees
    assert "outside +-delta at the corrected level: 350M" in v.observed


def test_c6_contradicted_below_the_law_too(claim):
    shift = lambda size: -4 * DELTA if size == "5M" else 0.0  # noqa: E731
    v = decide(size_sweep_table(shift=shift), claim)
    assert v.outcome == "contradicted", v.observed
    assert v.stats["breaking_sizes"] == "5M" and v.stats["5M:corr_high"] < -DELTA


def test_c6_inconclusive_when_the_data_are_too_noisy(claim):
    # A true law, but a penalty SD of 0.01 bpb (2 delta) per pair: the CIs are wider than +-delta.
    v = decide(size_sweep_table(noise=0.01), claim)
    assert v.outcome == "inconclusive", v.observed
    assert "more seeds" in v.reason
    assert v.stats["ci_high"] - v.stats["ci_low"] > 2 * DELTA
    assert v.stats["breaking_sizes"] == ""


def test_c6_a_deviation_near_delta_is_never_reproduced(claim):
    # 250M and 350M sit 1.2 delta off the law: not reproducible; with 6 pairs not yet contradicted.
    shift = lambda size: 1.2 * DELTA if size in ("250M", "350M") else 0.0  # noqa: E731
    v = decide(size_sweep_table(shift=shift), claim)
    assert v.outcome != "reproduced", v.observed
    assert v.stats["350M:within_delta"] == 0


def test_c6_paper_pi_check_is_reported_not_decided(claim):
    # A deviation of 0.4 delta with precise data: outside the paper's 95 % PI for a mean, yet the
    # law predicts the size to within delta, so the claim (as operationalised) is reproduced.
    shift = lambda size: 0.4 * DELTA if size == "175M" else 0.0  # noqa: E731
    v = decide(size_sweep_table(shift=shift, noise=0.0003), claim)
    assert v.stats["175M:inside"] == 0 and v.stats["inside"] == "4/5"
    assert v.outcome == "reproduced", v.observed


# ---------------------------------------------------------------------------------------
# Inconclusive with a reason
# ---------------------------------------------------------------------------------------


def test_c6_inconclusive_when_a_requested_heldout_size_is_missing(claim):
    v = decide(size_sweep_table(sizes=FIT + ["8M", "175M"]), claim)
    assert v.outcome == "inconclusive"
    assert "5M (0 pairs)" in v.reason and "250M (0 pairs)" in v.reason and "350M (0 pairs)" in v.reason
    assert v.stats["heldout_missing"] == "5M,250M,350M"
    assert v.stats["heldout_compared"] == "8M,175M"
    assert v.stats["8M:within_delta"] == 1  # what could be computed is still reported
    assert math.isfinite(v.stats["statistic_value"])


def test_c6_inconclusive_with_two_fit_sizes(claim):
    v = decide(size_sweep_table(sizes=["15M", "30M", "175M"]), claim)
    assert v.outcome == "inconclusive"
    assert "fit sizes" in v.reason
    assert v.stats["fit_sizes"] == "15M,30M"
    for key in REQUIRED_STATS:
        assert key in v.stats


def test_c6_inconclusive_without_heldout_sizes(claim):
    v = decide(size_sweep_table(sizes=FIT), claim)
    assert v.outcome == "inconclusive"
    assert "held-out" in v.reason
    assert v.stats["heldout_missing"] == ",".join(HELDOUT)


def test_c6_inconclusive_without_a_shared_setting(claim):
    fit = size_sweep_table(sizes=FIT, wds=(0.2,))
    held = size_sweep_table(sizes=HELDOUT, wds=(0.33,))
    v = decide(pd.concat([fit, held]), claim)
    assert v.outcome == "inconclusive"
    assert "setting" in v.reason


def test_c6_heldout_size_with_one_pair_makes_it_inconclusive(claim):
    table = size_sweep_table()
    mask = (table["size"] == "5M") & (table["bits"] == 6) & ~((table["seed"] == 0) & (table["warmdown"] == 0.2))
    table.loc[mask, ["status", "val_bpb", "val_bpb_q"]] = ["diverged", math.nan, math.nan]
    v = decide(table, claim)
    assert v.outcome == "inconclusive"
    assert "5M (1 pair)" in v.reason
    assert v.stats["heldout_missing"] == "5M" and v.stats["n_heldout"] == 4
    assert v.stats["n_diverged"] == 5


# ---------------------------------------------------------------------------------------
# Matched settings, diverged runs, the arithmetic
# ---------------------------------------------------------------------------------------


def test_c6_compares_only_settings_shared_with_the_heldout_sizes(claim):
    # Shorter warmdowns raise the penalty; the held-out sizes ran wd 0.33 only, so the
    # fit must use wd 0.33 only, else its line sits 0.004 above every held-out mean.
    fit = size_sweep_table(sizes=FIT, wds=(0.1, 0.33, 0.5), wd_effect=0.02)
    held = size_sweep_table(sizes=HELDOUT, wds=(0.33,), wd_effect=0.02, rng_seed=2)
    v = decide(pd.concat([fit, held]), claim)
    assert v.stats["settings"] == "wd0.33/lr1"
    assert v.stats["n_pairs_fit"] == len(FIT) * 3
    assert v.outcome == "reproduced", v.observed


def test_c6_diverged_runs_drop_their_pairs_and_are_counted(claim):
    table = size_sweep_table()
    mask = (table["size"] == "350M") & (table["bits"] == 6) & (table["seed"] == 0)
    table.loc[mask, ["status", "val_bpb", "val_bpb_q"]] = ["diverged", math.nan, math.nan]
    v = decide(table, claim)
    assert v.stats["n_diverged"] == 2
    assert v.stats["350M:k"] == 4
    assert v.outcome == "reproduced", v.observed
    assert "2 diverged run(s)" in v.observed


def test_c6_counts_the_runs_the_verdict_rests_on(claim):
    # Runs at settings the held-out sizes lack (here wd 0.1, one of them diverged) do not enter.
    fit = size_sweep_table(sizes=FIT, wds=(0.1, 0.33))
    held = size_sweep_table(sizes=HELDOUT, wds=(0.33,), rng_seed=2)
    table = pd.concat([fit, held], ignore_index=True)
    table.loc[(table["warmdown"] == 0.1) & (table["seed"] == 0) & (table["bits"] == 6), ["status", "val_bpb_q"]] = [
        "diverged", math.nan]
    v = decide(table, claim)
    assert v.stats["n_runs"] == 9 * 2 * 3 and v.stats["n_runs_slice"] == len(table)
    assert v.stats["n_diverged"] == 0

def test_c6_fit_matches_statsmodels_ols(claim):
    table = size_sweep_table(noise=0.002, rng_seed=3)
    v = decide(table, claim)
    t = require_table(table, ["size", "n_params", "bits", "warmdown", "lr_mult"], "val_bpb_q", what="t")
    pairs = matched_penalties(t, "val_bpb_q", 6, 16)
    fit, held = pairs[pairs["size"].isin(FIT)], pairs[pairs["size"].isin(HELDOUT)]
    ols = sm.OLS(fit["penalty"].to_numpy(), sm.add_constant(np.log(fit["n_params"].to_numpy()))).fit()
    assert v.stats["intercept"] == pytest.approx(ols.params[0], rel=1e-9)
    assert v.stats["slope_per_log_param"] == pytest.approx(ols.params[1], rel=1e-9)
    assert v.stats["p_slope"] == pytest.approx(ols.pvalues[1], rel=1e-6)
    assert v.stats["r_squared"] == pytest.approx(ols.rsquared, rel=1e-9)
    assert v.stats["df_resid"] == ols.df_resid
    size = "350M"
    pred = ols.get_prediction(np.array([[1.0, math.log(N_PARAMS[size])]]))
    k = int((held["size"] == size).sum())
    se = math.sqrt(float(pred.se_mean[0]) ** 2 + ols.scale / k)
    e = float(held.loc[held["size"] == size, "penalty"].mean() - pred.predicted_mean[0])
    assert v.stats[f"{size}:error"] == pytest.approx(e, rel=1e-9)
    assert v.stats[f"{size}:se"] == pytest.approx(se, rel=1e-9)
    single = pred.summary_frame(alpha=0.05).iloc[0]
    assert v.stats[f"{size}:pi_single_low"] == pytest.approx(single["obs_ci_lower"], rel=1e-9)
    # Chow's predictive-failure F: the restricted fit on all runs against the fit sizes' own.
    both = pd.concat([fit, held])
    rss_all = sm.OLS(both["penalty"].to_numpy(), sm.add_constant(np.log(both["n_params"].to_numpy()))).fit().ssr
    f = ((rss_all - ols.ssr) / len(held)) / (ols.ssr / ols.df_resid)
    assert v.stats["chow_f"] == pytest.approx(f, rel=1e-9)


def test_matched_penalties_pair_on_the_full_key():
    table = size_sweep_table(sizes=["15M"], seeds=2)
    t = require_table(table, ["size", "n_params", "bits", "warmdown", "lr_mult"], "val_bpb_q", what="t")
    pairs = matched_penalties(t, "val_bpb_q", 6, 16)
    assert len(pairs) == 4
    row = table.set_index(["bits", "warmdown", "seed"])["val_bpb_q"]
    first = pairs.iloc[0]
    assert (first["warmdown"], first["seed"]) == (0.2, 0)
    assert first["penalty"] == pytest.approx(row[(6, 0.2, 0)] - row[(16, 0.2, 0)])


# ---------------------------------------------------------------------------------------
# Pipeline errors
# ---------------------------------------------------------------------------------------


def test_c6_overlapping_size_lists_are_a_pipeline_error(claim):
    with pytest.raises(ValueError, match="both fitted and held out"):
        decide(size_sweep_table(), claim, held=["15M"])


def test_c6_missing_n_params_is_a_pipeline_error(claim):
    with pytest.raises(ValueError, match="n_params"):
        decide(size_sweep_table().drop(columns=["n_params"]), claim)


def test_c6_inconsistent_n_params_is_a_pipeline_error(claim):
    table = size_sweep_table()
    table.loc[0, "n_params"] += 1
    with pytest.raises(ValueError, match="several n_params"):
        decide(table, claim)


def test_c6_empty_table_is_a_pipeline_error(claim):
    with pytest.raises(ValueError, match="empty"):
        decide(size_sweep_table().iloc[0:0], claim)


def test_c6_ok_run_without_a_value_is_a_pipeline_error(claim):
    table = size_sweep_table()
    table.loc[3, "val_bpb_q"] = math.nan
    with pytest.raises(ValueError, match="non-finite"):
        decide(table, claim)


def test_c6_duplicate_runs_are_a_pipeline_error(claim):
    table = size_sweep_table()
    with pytest.raises(ValueError, match="duplicate runs"):
        decide(pd.concat([table, table.iloc[:1]]), claim)


def test_c6_without_a_profile_delta_is_a_pipeline_error(raw_claim):
    with pytest.raises(ValueError, match="delta"):
        decide(size_sweep_table(), raw_claim)


# ---------------------------------------------------------------------------------------
# Scenarios and calibration
# ---------------------------------------------------------------------------------------


def _penalties(arms: pd.DataFrame) -> pd.DataFrame:
    key = ["size", "n_params", "warmdown", "lr_mult"]
    q = arms[arms["bits"] == 6].set_index(key)["mu"]
    r = arms[arms["bits"] == 16].set_index(key)["mu"]
    return (q - r).rename("penalty").reset_index()


def test_scenarios_c6_follow_the_law_then_break_it_at_the_largest_heldout_size(raw_claim):
    profile = load_profile("paper")
    claim = raw_claim.at_profile(profile)
    arms, _ = cell_arms(profile, cells_for(claim, profile)[0])
    sc = scenarios_c6(claim, arms)
    assert set(sc) == {"true", "boundary", "violation"}
    true = _penalties(sc["true"].arms)
    at = true[np.isclose(true["warmdown"], 0.33) & (true["lr_mult"] == 1.0)]
    fit = np.polyfit(np.log(at["n_params"]), at["penalty"], 1)
    assert np.allclose(np.polyval(fit, np.log(at["n_params"])), at["penalty"], atol=1e-12)  # exact law
    assert (true["penalty"] > 0).all()
    for name, factor in (("boundary", 1), ("violation", 3)):
        off = _penalties(sc[name].arms).set_index(["size", "warmdown", "lr_mult"])["penalty"] - true.set_index(
            ["size", "warmdown", "lr_mult"])["penalty"]
        moved = off[off.abs() > 1e-12]
        assert set(moved.index.get_level_values("size")) == {"350M"}
        assert np.allclose(moved, factor * claim.thresholds["delta"])
        assert "350M" in sc[name].note


# ---------------------------------------------------------------------------------------
# Premise (issue 22 item 1): a penalty clearly above delta at some size
# ---------------------------------------------------------------------------------------


def test_c6_premise_absent_without_a_penalty(claim, monkeypatch):
    """Negative control (issue 22's tiny cache: R^2 = 0, a zero-everywhere 'law' inside
    +-delta): no INT6 penalty at any size. The rule alone reproduces; with the premise the
    verdict is inconclusive(premise)."""
    import hypotheses.scaling as scaling

    table = size_sweep_table(shift=lambda size: -law(N_PARAMS[size]))  # penalty 0 + noise everywhere
    v = decide(table, claim)
    assert v.outcome == "inconclusive", v.observed
    assert v.reason.startswith("premise absent at this profile: ") and v.inconclusive_kind == "premise"
    assert v.premise == "absent" and v.stats["premise_bound"] <= DELTA
    monkeypatch.setattr(scaling, "_check_premise", lambda *a, **k: None)
    assert decide(table, claim).outcome == "reproduced"  # what the premise guards against


def test_c6_premise_met_and_law_true_still_reproduces(claim):
    v = decide(size_sweep_table(), claim)
    assert v.outcome == "reproduced" and v.premise == "met", v.observed
    assert v.stats["premise_bound"] > DELTA and v.stats["premise_size"] == "5M"  # the largest penalty


def test_c6_premise_simulation_keeps_power_and_blocks_the_trivial_case(claim, monkeypatch):
    """100 simulated tables each: with no penalty P(reproduced) <= alpha (the rule alone:
    > 0.9); with the law (penalties 0.008-0.031) P(reproduced) within 0.05 of the rule alone."""
    import hypotheses.scaling as scaling

    def rates(shift):
        out = {"reproduced": 0, "absent": 0}
        for i in range(100):
            v = decide(size_sweep_table(shift=shift, rng_seed=300 + i), claim)
            out["reproduced"] += v.outcome == "reproduced"
            out["absent"] += v.premise == "absent"
        return {k: n / 100 for k, n in out.items()}

    def zero(size):
        return -law(N_PARAMS[size])

    def on_law(size):
        return 0.0

    with_zero, with_law = rates(zero), rates(on_law)
    monkeypatch.setattr(scaling, "_check_premise", lambda *a, **k: None)
    rule_zero, rule_law = rates(zero), rates(on_law)
    assert rule_zero["reproduced"] > 0.9, rule_zero
    assert with_zero["reproduced"] <= 0.05 and with_zero["absent"] >= 0.95, with_zero
    assert with_law["absent"] <= 0.05 and abs(with_law["reproduced"] - rule_law["reproduced"]) <= 0.05, (with_law, rule_law)

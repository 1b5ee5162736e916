"""Calibration of every decision rule at every profile, by simulation (hypotheses/calibration.py).

For each claim and profile, 300 simulated tables per scenario at the profile's seeds and
noise prior (fixed RNG seeds: the figures are the same on every machine):
- type-I errors: a true claim called contradicted, and a claim false by exactly delta
  called reproduced, at most alpha (+ 0.03: 2.4 binomial SEs of a 5 % rate at 300 draws);
- the least favourable true case (hypotheses/calibration.py: ``edge_scenarios``: the effect
  just inside delta, and for C8 a wd10 win of 0.4 and 0.9 delta) contradicted at most
  alpha (+ 0.03): a rule that treats an immaterial effect as a contradiction fails here;
- power: a clear violation contradicted with probability >= 0.8 at every profile, and the
  claim, true at the paper's effect, reproduced with probability >= 0.8 at the small and
  paper profiles, whose seed counts were chosen for it (`python -m hypotheses plan`); the
  tiny profile's seeds are bounded by the CI budget, so its power is reported, not asserted.
Seeds correlated within an arm (a shared data stream) are a reported failure of every
rule's independence assumption, not a bound (test_correlated_seeds_are_reported).
The table these tests assert is published by `python -m hypotheses calibrate` (docs/claims.md).
"""

from __future__ import annotations

import pytest

from engine.design import load_profile
from hypotheses.calibration import calibrate_cell, seeds_for_power
from hypotheses.cells import cells_for
from hypotheses.claims import load_claims
from hypotheses.simulate import Noise

CLAIMS = [f"C{i}" for i in range(1, 10)]
DRAWS = 300
SLACK = 0.03
POWER = 0.80
# Known power shortfalls, as data with their reason: with delta in bpb (paper 0.003 = 0.005
# nats, small 0.006; issue 22 item 5, fixtures/profiles/*.toml) the designs' 5 seeds no
# longer give 80 % power to these rules under the noise priors. `python -m hypotheses plan
# --profile P` gives the seeds each needs; the designs' seeds are the lead's to change. An
# xfail, not a pass: the row is still computed and the type-I bounds still asserted.
_NEED = {("C2", "paper"): 8, ("C3", "paper"): 9, ("C4", "paper"): 9, ("C5", "paper"): 9, ("C6", "paper"): 10,
         ("C2", "small"): 8, ("C3", "small"): 8, ("C4", "small"): 8, ("C5", "small"): 8, ("C6", "small"): 11}
UNDERPOWERED = {
    **{key: f"needs {n} seeds for 80 % power at delta in bpb, the design has 5 (power 0.06-0.25 at 5; "
            f"`python -m hypotheses plan --profile {key[1]}`)" for key, n in _NEED.items()},
    ("R4", "small"): "R4 (delta 0.003, was 0.005) needs 6 seeds for 80 % power, the design has 5 (0.67 / 0.88)",
    ("R5", "small"): "R5 matched: power to contradict 0.53 at 8 seeds with delta 0.006 (was 0.01)",
    ("R5", "paper"): "R5 matched: power to contradict 0.53 at 8 seeds with delta 0.003 (was 0.005)",
}


def _assert_power(ok: bool, claim_id: str, profile: str, row) -> None:
    if not ok and (claim_id, profile) in UNDERPOWERED:
        pytest.xfail(UNDERPOWERED[(claim_id, profile)])
    assert ok, row


@pytest.mark.parametrize("profile", ["tiny", "small", "paper"])
@pytest.mark.parametrize("claim_id", CLAIMS)
def test_rule_keeps_both_errors_at_alpha_and_has_power(claim_id, profile, record_property):
    p = load_profile(profile)
    claim = load_claims()[claim_id].at_profile(p)
    row = calibrate_cell(claim, p, cells_for(claim, p)[0], n_draws=DRAWS)
    for key, value in row.as_dict().items():
        record_property(key, value)
    alpha = float(claim.threshold("alpha"))
    assert row.false_contradict <= alpha + SLACK, row
    assert row.edge_contradict <= alpha + SLACK, row.edges
    assert row.false_reproduce <= alpha + SLACK, row
    _assert_power(row.power_contradict >= POWER, claim_id, profile, row)
    if profile != "tiny":  # tiny's seeds are bounded by the CI budget: its power is reported (docs/claims.md)
        _assert_power(row.power_reproduce >= POWER, claim_id, profile, row)


R_CELLS = [("R1", "budgets"), ("R2", "fused"), ("R3", "shape"), ("R3", "beta2"), ("R4", "long-warmdown"),
           ("R5", "matched"), ("R5", "qat_start")]


@pytest.mark.parametrize("profile", ["tiny", "small", "paper"])
@pytest.mark.parametrize("claim_id,cell_id", R_CELLS)
def test_related_rule_keeps_both_errors_at_alpha_and_has_power(claim_id, cell_id, profile, record_property):
    """R1-R5, every sub-claim (R3 and R5 have two, each with its own rule): the same bounds as
    C1-C9. Power (both kinds) is asserted at the small and paper profiles, whose R seeds were
    chosen for it; tiny's R seeds were chosen for stable verdicts on the measured noise within
    the CI budget (R5's matched pair has 4 at the two largest tiny sizes: 0.63 / 0.30 under the
    prior), so its power is reported (docs/claims.md)."""
    p = load_profile(profile)
    claim = load_claims()[claim_id].at_profile(p)
    cell = next(c for c in cells_for(claim, p) if c.id == cell_id)
    row = calibrate_cell(claim, p, cell, n_draws=DRAWS)
    for key, value in row.as_dict().items():
        record_property(key, value)
    alpha = float(claim.threshold("alpha"))
    assert row.false_contradict <= alpha + SLACK, row
    assert row.edge_contradict <= alpha + SLACK, row.edges
    assert row.false_reproduce <= alpha + SLACK, row
    if profile != "tiny":
        _assert_power(row.power_contradict >= POWER, claim_id, profile, row)
        _assert_power(row.power_reproduce >= POWER, claim_id, profile, row)


def test_a_rule_that_ignored_the_noise_would_be_caught():
    """The harness can fail: the old C1 rule (bare argmin == 0.33) on a flat landscape
    calls a true claim 'not reproduced' about 2 times in 3."""
    import pandas as pd

    from hypotheses.calibration import cell_arms, noise_prior
    from hypotheses.simulate import outcome_rates
    from hypotheses.verdict import verdict

    p = load_profile("tiny")
    claim = load_claims()["C1"].at_profile(p)
    cell = cells_for(claim, p)[0]
    arms, seeds = cell_arms(p, cell)
    flat = arms.assign(mu=2.0)

    def argmin_rule(t: pd.DataFrame):
        means = t.groupby("warmdown")["val_bpb_q"].mean()
        outcome = "reproduced" if abs(means.idxmin() - 0.33) < 1e-6 else "contradicted"
        return verdict(claim, outcome, "", {"n_runs": len(t), "n_seeds": 3, "n_diverged": 0})

    rates = outcome_rates(argmin_rule, flat, seeds, noise_prior(p, "val_bpb_q"), "val_bpb_q", 300, 0)
    assert rates["contradicted"] > 0.5


def test_seeds_for_power_grows_with_noise():
    """An equivalence claim (C8) at a fixed delta needs more seeds when runs scatter more."""
    p = load_profile("tiny")
    claim = load_claims()["C8"].at_profile(p)
    cell = cells_for(claim, p)[0]
    quiet = seeds_for_power(claim, p, cell, Noise(0.02, 0.003, 0.002), n_draws=100)
    loud = seeds_for_power(claim, p, cell, Noise(0.02, 0.010, 0.006), n_draws=100)
    assert quiet is not None and loud is not None
    assert 2 <= quiet < loud


def test_every_rule_has_a_least_favourable_true_case():
    """C1's edge: the rival warmdown beats wd33 by 0.9 delta (true within delta); C8 is
    two-sided, so it also gets wd10 wins of 0.4 and 0.9 delta at its smallest size."""
    import numpy as np

    from hypotheses.calibration import _scenarios, cell_arms, edge_scenarios, noise_prior

    p = load_profile("tiny")
    for claim_id, expected in (("C1", {"edge"}), ("C8", {"edge", "edge-mirror-0.4", "edge-mirror-0.9"})):
        claim = load_claims()[claim_id].at_profile(p)
        arms, _ = cell_arms(p, cells_for(claim, p)[0])
        scen = _scenarios(claim, arms, noise_prior(p, "val_bpb_q"))
        edges = edge_scenarios(scen)
        assert set(edges) == expected
        delta = claim.threshold("delta")
        t, b = scen["true"].arms["mu"].to_numpy(), scen["boundary"].arms["mu"].to_numpy()
        shift = edges["edge"].arms["mu"].to_numpy() - t
        assert np.abs(shift).max() == pytest.approx(0.9 * np.abs(b - t).max())
    mirror = edges["edge-mirror-0.4"].arms["mu"].to_numpy() - t
    wd10 = np.isclose(arms["warmdown"].to_numpy(dtype=float), 0.10)
    # a wd10 win (its mean lower) of 0.4 delta at the smallest size, in the contrast wd10 - wd33
    at = {s: (arms["size"] == s).to_numpy() for s in arms["size"].unique()}
    contrast = {s: mirror[m & wd10].mean() - mirror[m & ~wd10].mean() for s, m in at.items()}
    assert min(contrast.values()) == pytest.approx(-0.4 * delta) and max(contrast.values()) == pytest.approx(0.0)


@pytest.mark.parametrize("profile", ["tiny", "paper"])
def test_c8_does_not_contradict_an_immaterial_wd10_win(profile, record_property):
    """Issue 22: a true wd10 win of 0.4 delta at one small size is 'within delta': C8 holds, and
    a rule on delta contradicts it at most alpha (+ slack); the point-null rule did 0.84."""
    from hypotheses.calibration import _scenarios, cell_arms, edge_scenarios, noise_prior
    from hypotheses.cells import cell_decider
    from hypotheses.simulate import outcome_rates

    p = load_profile(profile)
    claim = load_claims()["C8"].at_profile(p)
    cell = cells_for(claim, p)[0]
    arms, seeds = cell_arms(p, cell)
    noise = noise_prior(p, "val_bpb_q")
    scen = edge_scenarios(_scenarios(claim, arms, noise))["edge-mirror-0.4"]
    rates = outcome_rates(cell_decider(claim, cell), scen.arms, seeds, noise, "val_bpb_q", DRAWS, 11)
    record_property("p_contradicted", rates.get("contradicted", 0.0))
    assert rates.get("contradicted", 0.0) <= float(claim.threshold("alpha")) + SLACK, rates


@pytest.mark.parametrize("claim_id", ["C1", "C2", "C7", "C8"])
def test_correlated_seeds_are_reported(claim_id, record_property):
    """Every rule assumes independent seeds. With 30 % of each arm's non-cancelling noise shared
    by all its seeds (seeds on one data stream), the calibration reports the type-I errors
    that result. The harness must see the failure it reports: the false reproduction at the
    boundary exceeds alpha (0.12-0.19 at tiny, 200 draws; issue 22 measured 0.13-0.19)."""
    p = load_profile("tiny")
    claim = load_claims()[claim_id].at_profile(p)
    row = calibrate_cell(claim, p, cells_for(claim, p)[0], n_draws=200, edges=False, correlated_rho=0.3)
    for key in ("corr_rho", "corr_false_contradict", "corr_false_reproduce", "false_reproduce"):
        record_property(key, getattr(row, key))
    assert row.corr_rho == 0.3 and 0 <= row.corr_false_contradict <= 1
    assert row.corr_false_reproduce > float(claim.threshold("alpha")) + SLACK, row


def test_calibrate_publishes_the_reliability_table_beside_the_calibration(tmp_path, capsys):
    """`python -m hypotheses calibrate --reliability --out D` writes reliability-<profile>.md
    next to <profile>.json; the calibration table carries the edge and correlated columns."""
    from hypotheses.calibration import CORRELATED_RHO
    from hypotheses.cli import DEFAULT_RHO, main

    assert DEFAULT_RHO == CORRELATED_RHO
    assert main(["calibrate", "--profile", "paper", "--claims", "C9", "--draws", "10", "--reliability",
                 "--reliability-datasets", "3", "--reliability-draws", "4", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "P(contradicted \\| true at its edge)" in out and "seeds correlated (rho 0.3)" in out
    text = (tmp_path / "reliability-paper.md").read_text()
    assert "| predicted stability (bin) |" in text and "| C9 | probe |" in text
    assert (tmp_path / "paper.json").exists()

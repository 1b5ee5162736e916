"""Calibration of every decision rule at every profile, by simulation (hypotheses/calibration.py).

For each claim and profile, 300 simulated tables per scenario at the profile's seeds and
noise prior (fixed RNG seeds: the figures are the same on every machine):
- type-I errors: a true claim called contradicted, and a claim false by exactly delta
  called reproduced, at most alpha (+ 0.03: 2.4 binomial SEs of a 5 % rate at 300 draws);
- power: a clear violation contradicted with probability >= 0.8 at every profile, and the
  claim, true at the paper's effect, reproduced with probability >= 0.8 at the small and
  paper profiles, whose seed counts were chosen for it (`python -m hypotheses plan`); the
  tiny profile's seeds are bounded by the CI budget, so its power is reported, not asserted.
The table these tests assert is published by `python -m hypotheses calibrate` (README).
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
    assert row.false_reproduce <= alpha + SLACK, row
    assert row.power_contradict >= POWER, row
    if profile != "tiny":  # tiny's seeds are bounded by the CI budget: its power is reported (README)
        assert row.power_reproduce >= POWER, row


R_CELLS = [("R1", "budgets"), ("R2", "fused"), ("R3", "shape"), ("R3", "beta2"), ("R4", "long-warmdown"),
           ("R5", "matched"), ("R5", "qat_start")]


@pytest.mark.parametrize("profile", ["tiny", "small", "paper"])
@pytest.mark.parametrize("claim_id,cell_id", R_CELLS)
def test_related_rule_keeps_both_errors_at_alpha_and_has_power(claim_id, cell_id, profile, record_property):
    """R1-R5, every sub-claim (R3 and R5 have two, each with its own rule): the same bounds as
    C1-C9. Power (both kinds) is asserted at the small and paper profiles, whose R seeds were
    chosen for it; tiny's R seeds were chosen for stable verdicts on the measured noise within
    the CI budget (R5's matched pair has 4 at the two largest tiny sizes: 0.63 / 0.30 under the
    prior), so its power is reported (README)."""
    p = load_profile(profile)
    claim = load_claims()[claim_id].at_profile(p)
    cell = next(c for c in cells_for(claim, p) if c.id == cell_id)
    row = calibrate_cell(claim, p, cell, n_draws=DRAWS)
    for key, value in row.as_dict().items():
        record_property(key, value)
    alpha = float(claim.threshold("alpha"))
    assert row.false_contradict <= alpha + SLACK, row
    assert row.false_reproduce <= alpha + SLACK, row
    if profile != "tiny":
        assert row.power_contradict >= POWER, row
        assert row.power_reproduce >= POWER, row


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
        means = t.groupby("wd")["val_bpb_q"].mean()
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

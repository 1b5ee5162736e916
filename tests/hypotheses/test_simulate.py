"""The noise model (hypotheses/simulate.py): tables drawn, noise fitted back, stability."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hypotheses.simulate import Noise, arm_means, estimate_noise, outcome_rates, simulate_table, stability


def arms(sizes=("a", "b"), bits=(16, 8, 6), wds=(0.1, 0.33, 0.5), mu=2.9) -> pd.DataFrame:
    return pd.DataFrame([dict(size=s, bits=b, wd=w, lr_mult=1.0, mu=mu) for s in sizes for b in bits for w in wds])


def test_simulated_table_has_one_row_per_arm_and_seed():
    t = simulate_table(arms(), range(4), Noise(0.02, 0.006, 0.004), "y", np.random.default_rng(0))
    assert len(t) == 18 * 4 and set(t["seed"]) == {0, 1, 2, 3} and (t["status"] == "ok").all()


def test_seed_offset_is_shared_within_a_block_only():
    t = simulate_table(arms(), range(200), Noise(0.05, 0.0, 0.0), "y", np.random.default_rng(0))
    per_seed = t.groupby(["size", "seed"])["y"].std()
    assert per_seed.max() < 1e-12  # one offset per (size, seed)
    a, b = (t[t["size"] == s].groupby("seed")["y"].first() for s in ("a", "b"))
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.25  # another size is another model


def test_noise_components_are_recovered():
    rng = np.random.default_rng(1)
    true = Noise(0.02, 0.006, 0.004, seed_bits=0.005)
    fits = [estimate_noise(simulate_table(arms(), range(6), true, "y", rng), "y") for _ in range(150)]
    est = np.array([[f.seed, f.seed_wd, f.seed_bits, f.run] for f in fits])
    assert est.mean(0) == pytest.approx([0.02, 0.006, 0.005, 0.004], rel=0.15)


def test_run_noise_is_fitted_per_bit_width():
    """QAT at low bits scatters more; a pooled SD would misstate every contrast."""
    rng = np.random.default_rng(2)
    true = Noise(0.02, 0.004, 0.003, run_by_bits=((6, 0.012), (8, 0.003), (16, 0.003)))
    fits = [dict(estimate_noise(simulate_table(arms(), range(6), true, "y", rng), "y").run_by_bits)
            for _ in range(100)]
    assert np.mean([f[6] for f in fits]) == pytest.approx(0.012, rel=0.15)
    assert np.mean([f[16] for f in fits]) == pytest.approx(0.003, rel=0.3)


def test_noise_of_a_table_without_replicates_is_an_error():
    t = simulate_table(arms(), range(1), Noise(0.02, 0.006, 0.004), "y", np.random.default_rng(0))
    with pytest.raises(ValueError, match="2 or more finite seeds"):
        estimate_noise(t, "y")


def test_noise_prior_is_validated():
    with pytest.raises(ValueError, match="run"):
        Noise.from_mapping({"seed": 0.1, "seed_wd": 0.1})
    with pytest.raises(ValueError, match=">= 0"):
        Noise.from_mapping({"seed": -1, "seed_wd": 0.1, "run": 0.1})


def test_arm_means_skip_diverged_runs():
    t = simulate_table(arms(sizes=("a",)), range(3), Noise(0, 0, 0.01), "y", np.random.default_rng(0))
    t.loc[0, "status"] = "diverged"
    t.loc[0, "y"] = math.nan
    m = arm_means(t, "y")
    assert len(m) == 9 and m["mu"].notna().all()


class _Verdict:
    def __init__(self, outcome):
        self.outcome = outcome


def _sign_rule(t: pd.DataFrame):
    """A toy decider: 'reproduced' iff wd 0.5 beats wd 0.1 on average."""
    m = t.groupby("wd")["y"].mean()
    return _Verdict("reproduced" if m[0.5] < m[0.1] else "contradicted")


def test_stability_is_high_for_a_clear_effect_and_near_a_coin_flip_at_a_tie():
    base = arms(sizes=("a",), bits=(16,))
    clear = base.assign(mu=2.9 - 0.05 * (base["wd"] == 0.5))
    tie = base.assign(mu=2.9)
    noise = Noise(0.02, 0.006, 0.004)
    t_clear = simulate_table(clear, range(5), noise, "y", np.random.default_rng(0))
    assert stability(_sign_rule, t_clear, "y", "reproduced", 200) > 0.95
    t_tie = simulate_table(tie, range(5), noise, "y", np.random.default_rng(3))
    p = stability(_sign_rule, t_tie, "y", _sign_rule(t_tie).outcome, 400)
    assert 0.5 <= p < 0.95  # the observed tiny edge is taken as the truth: a re-run repeats it often, not surely


def test_outcome_rates_are_reproducible():
    a = arms(sizes=("a",), bits=(16,)).assign(mu=2.9)
    r1 = outcome_rates(_sign_rule, a, range(3), Noise(0.02, 0.006, 0.004), "y", 100, 7)
    r2 = outcome_rates(_sign_rule, a, range(3), Noise(0.02, 0.006, 0.004), "y", 100, 7)
    assert r1 == r2 and sum(r1.values()) == pytest.approx(1.0)

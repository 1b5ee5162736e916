"""Interval arithmetic (hypotheses/intervals.py) against scipy and by coverage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from hypotheses.intervals import bonferroni, fieller_paired, inside, mean_ci, outside


def test_mean_ci_matches_scipy():
    d = np.array([0.01, 0.03, -0.005, 0.02, 0.012])
    ci = mean_ci(d, 0.90)
    ref = sps.ttest_1samp(d, 0).confidence_interval(0.90)
    assert (ci.low, ci.high) == pytest.approx((ref.low, ref.high))
    assert ci.t == pytest.approx(sps.ttest_1samp(d, 0).statistic)


def test_mean_ci_needs_two_values():
    with pytest.raises(ValueError, match=">= 2"):
        mean_ci([1.0], 0.9)


def test_bonferroni_and_region_tests():
    assert bonferroni(0.90, 4) == pytest.approx(0.975)
    assert inside(-0.1, 0.1, -0.2, 0.2) and not inside(-0.3, 0.1, -0.2, 0.2)
    assert outside(0.3, 0.4, -0.2, 0.2) and outside(-0.5, -0.3, -0.2, 0.2) and not outside(0.1, 0.4, -0.2, 0.2)


def test_fieller_covers_the_true_ratio_at_its_level():
    rng = np.random.default_rng(0)
    hits, n = 0, 2000
    for _ in range(n):
        shared = rng.normal(0, 0.01, 6)
        r = 0.24 + shared + rng.normal(0, 0.003, 6)
        q = 1.04 * 0.24 + shared + rng.normal(0, 0.003, 6)
        ci = fieller_paired(q, r, 0.90)
        hits += ci.low <= 1.04 <= ci.high
    assert 0.87 <= hits / n <= 0.93


def test_fieller_is_unbounded_when_the_denominator_is_noise():
    ci = fieller_paired([1.0, -1.0, 0.5], [0.01, -0.01, 0.005], 0.95)
    assert not ci.bounded and ci.low == -np.inf and ci.high == np.inf

"""Confidence bounds the deciders share: paired t intervals, equivalence, ratio (Fieller).

Owns the interval arithmetic and nothing about claims. scipy supplies the distributions;
what is hand-written here is the few lines scipy has no single call for:
- a paired mean with a t interval at any level (``ttest_1samp(...).confidence_interval``
  gives one level per call and warns on constant input; this returns the pieces once);
- Fieller's interval for a ratio of paired means, which neither scipy nor statsmodels
  offers (statsmodels' ``ttost_paired`` is a difference test, not a ratio);
- the Bonferroni level of a family of bounds.

Conventions: ``level`` is a two-sided confidence level (0.90 = the 90 % interval whose
two ends are the one-sided 95 % bounds, the TOST interval at alpha = 0.05).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy import stats as sps


@dataclass(frozen=True)
class MeanCI:
    """Mean of paired differences with its two-sided t interval."""

    mean: float
    sd: float
    n: int
    level: float
    low: float
    high: float

    @property
    def se(self) -> float:
        return self.sd / math.sqrt(self.n)

    @property
    def dz(self) -> float:
        """Cohen's d_z (mean over the SD of the differences)."""
        return self.mean / self.sd if self.sd > 0 else math.copysign(math.inf, self.mean) if self.mean else math.nan

    @property
    def t(self) -> float:
        """The paired t statistic (the paper's "paired z"); +-inf for exact non-zero differences."""
        return self.mean / self.se if self.sd > 0 else self.dz

    @property
    def p_two_sided(self) -> float:
        """Two-sided p of mean = 0; 1.0 when every difference is exactly 0 (no evidence at all)."""
        t = self.t
        return 1.0 if math.isnan(t) else float(2 * special.stdtr(self.n - 1, -abs(t)))


def mean_ci(d, level: float) -> MeanCI:
    """Mean of ``d`` (paired differences, >= 2 values) and its two-sided ``level`` t interval.

    Zero spread gives a zero-width interval at the mean (the data are exact)."""
    d = np.asarray(d, dtype=float)
    n = len(d)
    if n < 2:
        raise ValueError(f"a t interval needs >= 2 values, got {n}")
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    # scipy.special's t quantile is one C call (scipy.stats' ppf is ~20x slower; calibration makes thousands)
    half = float(special.stdtrit(n - 1, 0.5 + level / 2)) * sd / math.sqrt(n)
    return MeanCI(mean, sd, n, level, mean - half, mean + half)


def bonferroni(level: float, m: int) -> float:
    """Two-sided level of each of ``m`` intervals so that all hold together at ``level``."""
    return 1 - (1 - level) / max(int(m), 1)


def inside(low: float, high: float, lo_bound: float, hi_bound: float) -> bool:
    return lo_bound <= low and high <= hi_bound


def outside(low: float, high: float, lo_bound: float, hi_bound: float) -> bool:
    """The interval lies wholly outside [lo_bound, hi_bound]."""
    return high < lo_bound or low > hi_bound


@dataclass(frozen=True)
class RatioCI:
    ratio: float
    low: float
    high: float
    level: float
    bounded: bool  # False when the denominator is not significantly non-zero (unbounded set)


def fieller_paired(q, r, level: float) -> RatioCI:
    """Fieller's interval for mean(q) / mean(r), q and r paired (same runs' partners).

    The set {R : (q_bar - R r_bar)^2 <= t^2 var(q_bar - R r_bar)} with the paired
    covariance; it is exact under normality where the delta method is not, and honest
    when the denominator is noisy (then the set is unbounded and we say so).
    """
    q, r = np.asarray(q, dtype=float), np.asarray(r, dtype=float)
    n = len(q)
    if n < 2 or len(r) != n:
        raise ValueError(f"Fieller's interval needs >= 2 pairs, got {n}")
    qb, rb = float(q.mean()), float(r.mean())
    cov = np.cov(q, r, ddof=1) / n  # covariance of the two means
    vqq, vqr, vrr = float(cov[0, 0]), float(cov[0, 1]), float(cov[1, 1])
    t2 = float(sps.t.ppf(0.5 + level / 2, n - 1)) ** 2
    a = rb * rb - t2 * vrr
    b = -2 * (qb * rb - t2 * vqr)
    c = qb * qb - t2 * vqq
    ratio = qb / rb if rb != 0 else math.nan
    disc = b * b - 4 * a * c
    if a <= 0 or disc < 0:
        return RatioCI(ratio, -math.inf, math.inf, level, False)
    root = math.sqrt(disc)
    lo, hi = (-b - root) / (2 * a), (-b + root) / (2 * a)
    return RatioCI(ratio, lo, hi, level, True)

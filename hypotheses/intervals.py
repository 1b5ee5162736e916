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


# ---------------------------------------------------------------------------------------
# Multiple comparisons with the best (Hsu's MCB), paired, for a minimised metric
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MCB:
    """Hsu's MCB for a metric where lower is better, on arms paired by seed.

    ``low[a]`` / ``high[a]``: simultaneous one-sided bounds of theta_a = mu_a - min over the
    other arms of mu_j (theta_a <= 0 iff a is the best arm). ``best_set``: the arms that
    cannot be excluded as best (``low[a] <= 0``), in the order given; it contains the true
    best arm with probability >= ``level``.
    """

    low: dict
    high: dict
    best_set: tuple
    level: float  # one-sided simultaneous level (1 - alpha)
    n_pairs: dict  # (a, b) -> paired seeds behind that comparison


def mcb_min(arms: dict, alpha: float, min_pairs: int = 2) -> MCB:
    """Hsu's multiple comparisons with the best (the minimum), paired by seed.

    ``arms``: {arm: {seed: value}}. For each ordered pair (a, j) the paired differences
    y_a - y_j on their common seeds give one-sided t bounds at 1 - alpha / (k - 1); then
    low[a] = max_j lower(a - j) and high[a] = max_j upper(a - j) bound theta_a = mu_a -
    min_{j != a} mu_j = max_j (mu_a - mu_j). Arm a is excluded from the best set iff
    low[a] > 0 (some arm is surely better). Why this holds at 1 - alpha: the true best a*
    is excluded only if one of its k - 1 comparisons errs on the side it bounds, which
    Bonferroni keeps below alpha (Hsu 1996, ch. 4, with a Bonferroni constant).

    Hand-written because neither scipy nor statsmodels has a paired MCB: ``scipy.stats.
    dunnett`` (many-to-one) and statsmodels' ``MultiComparison`` assume independent groups
    with one pooled variance, while our arms share seeds (the seed offset cancels in a
    paired difference) and their differences have unequal spread; Hsu's exact constant
    assumes equally correlated comparisons, which unequal spreads are not. A pair with
    fewer than ``min_pairs`` common seeds gives no bound: it cannot exclude either arm.
    """
    from hypotheses.verdict import paired_difference  # verdict imports nothing from here; kept local all the same

    keys = list(arms)
    k = len(keys)
    low = {a: -math.inf for a in keys}
    high = {a: -math.inf for a in keys}
    n_pairs = {}
    if k < 2:
        return MCB({a: math.nan for a in keys}, {a: math.nan for a in keys}, tuple(keys), 1 - alpha, n_pairs)
    level = 1 - 2 * alpha / (k - 1)  # two-sided level whose ends are the one-sided 1 - alpha/(k-1) bounds
    for a in keys:
        for j in keys:
            if j == a:
                continue
            seeds, d = paired_difference(arms[a], arms[j])
            n_pairs[(a, j)] = len(seeds)
            if len(seeds) < min_pairs:
                high[a] = math.inf  # theta_a is unbounded above without this comparison
                continue
            c = mean_ci(d, level)
            low[a] = max(low[a], c.low)
            high[a] = max(high[a], c.high)
    best = tuple(a for a in keys if not low[a] > 0)
    return MCB(low, high, best, 1 - alpha, n_pairs)


def lower_bound(d, alpha: float) -> MeanCI:
    """The paired mean of ``d`` with its two-sided 1 - 2 alpha interval (whose low end is the
    one-sided 1 - alpha lower bound): the premise checks' "clearly above delta"."""
    return mean_ci(d, 1 - 2 * alpha)

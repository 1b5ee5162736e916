"""Results tables drawn from a noise model: calibration, stability and seeds-for-power.

Owns the one noise model the suite uses to judge its own rules, fitted or assumed:

    y(arm, seed) = mu(arm) + s(block, seed) + w(block, wd, seed) + b(block, bits, seed) + e(arm, seed)

- ``mu``: the true mean of an arm (one combination of size, bits, warmdown, LR, ...);
- ``s``: a seed's offset shared by every run of that seed in one block (one size and
  training setup): the seed fixes initialisation and data order for all bit-widths and
  warmdowns, which is why the deciders pair by seed;
- ``w``: a seed x warmdown offset, shared across bit-widths and LRs of that warmdown
  (the trajectories agree until the warmdown starts);
- ``b``: a seed x bit-width offset, shared across warmdowns and LRs of that bit-width (a
  seed's QAT rounding luck at one bit-width; it cancels in within-bit-width contrasts);
- ``e``: what is left, per run, with its own SD per bit-width where fitted (QAT at 6 bits
  scatters more than FP16: pooling them would misstate every contrast).
The tiny runs measured SD(s) ~ 0.02, SD(w) ~ 0.006, SD(e) ~ 0.004 bpb (verdict issue).

Three uses, one code path (``outcome_rates``):
- calibration: arms from a scenario (claim true, false at the boundary, clearly false),
  noise from the profile's prior -> type-I error and power of a decider;
- stability: a posterior-predictive draw. Noise fitted to the observed table
  (``estimate_noise``); per draw, the SDs are drawn from their own uncertainty (a common
  scaled-inverse-chi-square factor with the fit's residual degrees of freedom), a truth is
  drawn around the observed arm means with the uncertainty those means carry (the observed
  means plus the mean over the observed seeds of a fresh noise draw: the same seed, seed x
  warmdown, seed x bits and run components, so contrasts that pair by seed get the paired
  uncertainty), then a fresh table from that truth is drawn and decided -> the probability
  that a re-run with new seeds gives the same outcome (flat prior on the arm means).
  Taking the observed means as the truth (the plug-in draw) ignores that they carry the
  same noise that produced the verdict and is over-confident near a decision boundary
  (0.73 predicted vs 0.55 actual agreement for C1 at 0.018 from it, issue 22);
  the posterior draw passes the reliability check (tests/hypotheses/test_reliability.py,
  reports/calibration/reliability-<profile>.md). It is calibrated per bin of predicted
  stability over truths near and far from a boundary, not per truth: no figure computed
  from the data alone can tell a truth exactly at a boundary (re-runs agree ~50 %) from
  one just beside it, so right at a boundary it still over-states. A model-based draw, not a seed
  bootstrap: with 3-4 seeds a bootstrap cannot produce outcomes outside the observed ones
  and so overstates stability;
- seeds for power: the calibration draw at increasing seed counts;
- seeds for stability: the stability draw at other seed counts (``outcome_projection``,
  ``seeds_for_stability``): how many seeds a cell needs for its verdict to repeat. The
  truth is still drawn with the uncertainty of the *observed* seeds, so more seeds in the
  re-run cannot make an outcome more certain than the observed data make its truth.

Seeds are assumed independent replicates of an arm: ``Noise.arm_rho`` > 0 draws an arm
offset shared by every seed of that arm (seeds that share a data stream), the failure the
calibration reports (hypotheses/calibration.py: the correlated-seed rows).

Diverged runs are not modelled (the fitted truth uses finite runs only); the stability of
a verdict with diverged runs is therefore that of the same design without divergence.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from hypotheses.verdict import fmt_bits

# Spec columns that identify an arm (an arm = everything but the seed) when present.
ARM_COLUMNS = ("size", "n_params", "bits", "warmdown", "lr_mult", "steps", "optimizer", "warmdown_shape")
# Spec columns the related claims (R1-R5) vary; they identify an arm only where a table
# varies them (a column constant over the table, e.g. C1-C9's qat_start 0 and unset
# cooldown_beta2, leaves every C table's arms and noise fit as they were). An unset
# cooldown_beta2 (None) is its own level.
EXTRA_ARM_COLUMNS = ("qat_start", "cooldown_beta2", "beta2", "batch_tokens", "quantize_embeddings", "qat_lr_restart")
# Per-run measurements an arm carries into simulated tables (their mean over the arm's
# runs): R5's matched-size check reads them from every table it decides, simulated or not.
CARRY_COLUMNS = ("export_bytes", "export_bytes_compressed")
# Columns that define a seed's block: a seed at another size or setup is another model.
# The warmdown shape is not one: shapes share a seed's trajectory until the warmdown starts
# (R3 pairs them by seed), and no C table mixes shapes.
BLOCK_COLUMNS = ("size", "steps", "optimizer")
_MISSING = -1.0  # stands for an unset (None/NaN) extra column in group keys


@dataclass(frozen=True)
class Noise:
    """SDs of the noise components (units of the metric).

    ``run_by_bits`` optionally overrides ``run`` per bit-width ((bits, sd) pairs)."""

    seed: float
    seed_wd: float
    run: float
    seed_bits: float = 0.0
    run_by_bits: tuple = ()
    # Correlation across seeds of one arm's noise that does not cancel in a paired contrast
    # (seed x wd, seed x bits, run): an arm offset shared by all its seeds, with variance
    # arm_rho / (1 - arm_rho) x that noise's. 0 = independent seeds (what the rules assume).
    arm_rho: float = 0.0
    # Degrees of freedom behind fitted SDs (those of the double-centred residual of the
    # observed table: (arms - 1) x (seeds - 1), pooled over blocks); inf for a prior taken as
    # known. The stability draw takes the SDs' own uncertainty from it.
    df: float = math.inf

    @classmethod
    def from_mapping(cls, m: Mapping, where: str = "noise") -> "Noise":
        try:
            values = {k: float(m[k]) for k in ("seed", "seed_wd", "run")}
            values["seed_bits"] = float(m.get("seed_bits", 0.0))
        except KeyError as e:
            raise ValueError(f"{where}: missing {e.args[0]!r} (need seed, seed_wd, run SDs)") from None
        except (TypeError, ValueError):
            raise ValueError(f"{where}: seed, seed_wd, seed_bits and run must be numbers, got {dict(m)}") from None
        bad = {k: v for k, v in values.items() if not (math.isfinite(v) and v >= 0)}
        if bad:
            raise ValueError(f"{where}: SDs must be finite and >= 0, got {bad}")
        return cls(**values)

    def run_sd(self, bits) -> float:
        return dict(self.run_by_bits).get(int(bits), self.run) if self.run_by_bits else self.run

    def arm_sd(self, bits) -> float:
        """SD of the arm offset shared by every seed of an arm at ``bits`` (0 unless arm_rho)."""
        if not self.arm_rho:
            return 0.0
        if not 0 <= self.arm_rho < 1:
            raise ValueError(f"arm_rho must be in [0, 1), got {self.arm_rho}")
        unshared = self.seed_wd ** 2 + self.seed_bits ** 2 + self.run_sd(bits) ** 2
        return math.sqrt(self.arm_rho / (1 - self.arm_rho) * unshared)

    def describe(self) -> str:
        text = f"SD seed {self.seed:.3g}, seed x wd {self.seed_wd:.3g}"
        if self.seed_bits:
            text += f", seed x bits {self.seed_bits:.3g}"
        if self.arm_rho:
            text = f"seeds correlated within an arm (rho {self.arm_rho:g}); " + text
        if self.run_by_bits:
            return text + ", run " + " / ".join(f"{sd:.3g} ({fmt_bits(b)})"
                                                for b, sd in self.run_by_bits)
        return text + f", run {self.run:.3g}"


def _present(cols, frame: pd.DataFrame) -> list[str]:
    return [c for c in cols if c in frame.columns]


def _varied_extras(frame: pd.DataFrame) -> list[str]:
    return [c for c in EXTRA_ARM_COLUMNS if c in frame.columns and frame[c].nunique(dropna=False) > 1]


def _with_keys(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``frame`` with its varied extra columns made groupable (None/NaN -> a sentinel), and the
    arm columns: ARM_COLUMNS present plus those extras."""
    extras = _varied_extras(frame)
    if extras:
        frame = frame.copy()
        for c in extras:
            frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float).fillna(_MISSING)
    return frame, _present(ARM_COLUMNS, frame) + extras


def _keys(frame: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """Integer code per row for the combination of ``cols`` (all rows 0 if none)."""
    if not cols:
        return np.zeros(len(frame), dtype=int)
    return frame.groupby(cols, sort=False, dropna=False).ngroup().to_numpy()


class _Sampler:
    """Draws tables of one design; the design's bookkeeping is done once, not per draw."""

    def __init__(self, arms: pd.DataFrame, seeds, noise: Noise, metric: str):
        arms = arms.reset_index(drop=True)
        self.seeds = np.asarray(list(seeds), dtype=int)
        S, A = len(self.seeds), len(arms)
        self.noise, self.metric, self.A, self.S = noise, metric, A, S
        self.block = _keys(arms, _present(BLOCK_COLUMNS, arms))
        # A restarted schedule (R2's separate arm) leaves the fused one's trajectory as a longer
        # warmdown would: its own seed x schedule draw, like another wd.
        self.block_wd = _keys(arms, _present(BLOCK_COLUMNS, arms) + _present(("warmdown", "qat_lr_restart"), arms))
        self.block_bits = _keys(arms, _present(BLOCK_COLUMNS, arms) + _present(("bits",), arms))
        self.mu = arms["mu"].to_numpy(dtype=float)[:, None]
        bits = arms["bits"].to_numpy() if "bits" in arms.columns else np.full(A, 16)
        self.run_sd = np.array([noise.run_sd(b) for b in bits], dtype=float)[:, None]
        self.arm_sd = np.array([noise.arm_sd(b) for b in bits], dtype=float)[:, None]
        self.columns = {c: np.repeat(arms[c].to_numpy(), S) for c in arms.columns if c != "mu"}
        self.columns["seed"] = np.tile(self.seeds, A)
        self.columns["status"] = np.full(A * S, "ok", dtype=object)

    def noise_draw(self, rng: np.random.Generator) -> np.ndarray:
        """One draw of every noise component, summed: (arms, seeds)."""
        n, S = self.noise, self.S
        s = rng.normal(0.0, n.seed, (self.block.max() + 1, S))
        w = rng.normal(0.0, n.seed_wd, (self.block_wd.max() + 1, S))
        b = rng.normal(0.0, n.seed_bits, (self.block_bits.max() + 1, S))
        e = rng.normal(0.0, 1.0, (self.A, S)) * self.run_sd
        y = s[self.block] + w[self.block_wd] + b[self.block_bits] + e  # (arms, seeds)
        if self.noise.arm_rho:  # drawn last: a draw without it is the same as before it existed
            y = y + rng.normal(0.0, 1.0, (self.A, 1)) * self.arm_sd
        return y

    def draw(self, rng: np.random.Generator, mu: np.ndarray | None = None) -> pd.DataFrame:
        """One table; ``mu`` (arms, 1) replaces the arms' true means for this draw."""
        y = (self.mu if mu is None else mu) + self.noise_draw(rng)  # (arms, seeds)
        return pd.DataFrame({**self.columns, self.metric: y.ravel()})


def simulate_table(arms: pd.DataFrame, seeds, noise: Noise, metric: str, rng: np.random.Generator) -> pd.DataFrame:
    """One results table: every arm (a row of ``arms`` with its true mean ``mu``) x every seed."""
    return _Sampler(arms, seeds, noise, metric).draw(rng)


def arm_means(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The observed mean of every arm over its finite runs: the plug-in truth for stability."""
    ok = table[(table["status"] == "ok") & np.isfinite(pd.to_numeric(table[metric], errors="coerce"))]
    keyed, cols = _with_keys(ok)
    grouped = keyed.groupby(cols, sort=True, dropna=False)
    arms = grouped[metric].mean().rename("mu").reset_index()
    for c in _present(CARRY_COLUMNS, keyed):
        arms[c] = pd.to_numeric(keyed[c], errors="coerce").groupby([keyed[k] for k in cols], sort=True,
                                                                   dropna=False).mean().to_numpy()
    for c in cols:
        if c in EXTRA_ARM_COLUMNS:  # the sentinel back to "unset"
            arms[c] = arms[c].where(arms[c] != _MISSING)
    for c in _present(EXTRA_ARM_COLUMNS, keyed):  # constant over the table: carried, not a key
        if c not in cols and len(keyed):
            arms[c] = keyed[c].iloc[0]
    return arms


def estimate_noise(table: pd.DataFrame, metric: str) -> Noise:
    """Method-of-moments estimate of the noise components from an observed table.

    Per block, the (arm x seed) matrix of complete arms is double-centred (arm and seed
    means removed); its residual is split into a seed x warmdown part (means over the arms
    of one warmdown), a seed x bit-width part (means over the arms of one bit-width) and the
    rest, whose mean square per bit-width gives the run SD of that bit-width. Mean squares
    are pooled over blocks; a negative variance estimate is truncated at 0. A grouping with
    one arm per level cannot be told from run noise and is counted as run noise (the
    cautious choice: it cancels in no contrast).
    """
    ok = table[(table["status"] == "ok") & np.isfinite(pd.to_numeric(table[metric], errors="coerce"))]
    ok, arm_cols = _with_keys(ok)
    arm_cols = [c for c in arm_cols if c != "n_params"]
    block_cols = _present(BLOCK_COLUMNS, ok)
    ss = Counter()
    by_bits = Counter()
    for _, g in (ok.groupby(block_cols, sort=False) if block_cols else [(None, ok)]):
        Y = g.pivot_table(index=arm_cols, columns="seed", values=metric, aggfunc="mean").dropna(axis=0)
        A, S = Y.shape
        if A < 1 or S < 2:
            continue
        y = Y.to_numpy(dtype=float)
        seed_m, grand = y.mean(0, keepdims=True), y.mean()
        E = y - y.mean(1, keepdims=True) - seed_m + grand
        ss["seed"] += A * float(((seed_m - grand) ** 2).sum())
        ss["df_seed"] += S - 1
        ss["arms"] += A * (S - 1)
        ss["df_resid"] += (A - 1) * (S - 1)
        R = E.copy()
        df_left = (A - 1) * (S - 1)
        for name in ("warmdown", "bits"):
            lev = Y.index.get_level_values(name).to_numpy() if name in Y.index.names else np.zeros(A)
            levels = np.unique(lev)
            if not (A >= 2 and 2 <= len(levels) < A):
                continue
            ebar = np.zeros_like(E)
            for v in levels:
                m = lev == v
                ebar[m] = E[m].mean(0, keepdims=True)
            ss[name] += float((ebar ** 2).sum())
            ss[f"df_{name}"] += (len(levels) - 1) * (S - 1)
            ss[f"per_{name}"] += A / len(levels) * (len(levels) - 1) * (S - 1)  # df-weighted arms per level
            R -= ebar
            df_left -= (len(levels) - 1) * (S - 1)
        if df_left > 0:
            ss["e"] += float((R ** 2).sum())
            ss["df_e"] += df_left
        # Run SD per bit-width: double-centre each bit-width's own arms (its seed offset and
        # seed x bits offset go with the seed means); what is left is run noise plus the
        # seed x warmdown part, removed below with the pooled estimate of the latter.
        bits = Y.index.get_level_values("bits").to_numpy() if "bits" in Y.index.names else np.full(A, 16)
        wds = Y.index.get_level_values("warmdown").to_numpy() if "warmdown" in Y.index.names else np.zeros(A)
        for b in np.unique(bits):
            m = bits == b
            Ab, Wb = int(m.sum()), len(np.unique(wds[m]))
            if Ab < 2:
                continue
            yb = y[m]
            Eb = yb - yb.mean(1, keepdims=True) - yb.mean(0, keepdims=True) + yb.mean()
            df_b = (Ab - 1) * (S - 1)
            by_bits[(int(b), "ss")] += float((Eb ** 2).sum())
            by_bits[(int(b), "df")] += df_b
            by_bits[(int(b), "sw")] += df_b * (Ab / Wb) * (Wb - 1) / (Ab - 1)  # weight of var(seed x wd)
    if ss["df_seed"] == 0:
        raise ValueError(f"cannot estimate noise of {metric}: no arm has 2 or more finite seeds")
    n_arms = ss["arms"] / ss["df_seed"]
    ms_seed = ss["seed"] / ss["df_seed"]
    if ss["df_e"] == 0:  # one arm per block: the seed offset is all the noise there is
        return Noise(seed=0.0, seed_wd=0.0, run=math.sqrt(ms_seed / n_arms), df=float(ss["df_seed"]))
    ms_e = ss["e"] / ss["df_e"]
    var, below_seed = {}, ms_e
    for name in ("warmdown", "bits"):
        if ss[f"df_{name}"]:
            per = ss[f"per_{name}"] / ss[f"df_{name}"]
            var[name] = max(0.0, (ss[name] / ss[f"df_{name}"] - ms_e) / per)
            below_seed += per * var[name]
        else:
            var[name] = 0.0
    var_s = max(0.0, (ms_seed - below_seed) / n_arms)
    levels = sorted({b for b, _ in by_bits})
    run_by_bits = tuple(
        (b, math.sqrt(max(0.0, (by_bits[(b, "ss")] - by_bits[(b, "sw")] * var["warmdown"]) / by_bits[(b, "df")])))
        for b in levels if by_bits[(b, "df")] > 0) if len(levels) > 1 else ()
    return Noise(seed=math.sqrt(var_s), seed_wd=math.sqrt(var["warmdown"]), run=math.sqrt(ms_e),
                 seed_bits=math.sqrt(var["bits"]), run_by_bits=run_by_bits, df=float(ss["df_resid"]))


Decide = Callable[[pd.DataFrame], "object"]  # table -> Verdict


def _count_outcomes(decide: Decide, sampler, n_draws: int, rng: np.random.Generator,
                    reach: tuple[float, Iterable[str] | None] | None = None) -> Counter | None:
    """Outcome counts over ``n_draws`` drawn tables.

    ``reach = (target, outcomes)``: give up (None) as soon as no outcome in ``outcomes``
    (any outcome if None) can still reach a share ``target`` of the draws, whatever the
    draws left give; the draws made up to then are the same as without ``reach``, so a
    search over seed counts reaches the same answer, only faster on the counts it rejects.
    ``sampler`` is anything with ``draw(rng) -> table`` (a ``_Sampler`` or ``_Predictive``).
    """
    counts = Counter()
    target, allowed = reach if reach is not None else (None, None)
    allowed = None if allowed is None else set(allowed)
    for i in range(n_draws):
        counts[decide(sampler.draw(rng)).outcome] += 1
        if target is not None:
            best = max((v for k, v in counts.items() if allowed is None or k in allowed), default=0)
            if best + (n_draws - i - 1) < target * n_draws - 1e-9:  # even all draws left would not do
                return None
    return counts


def outcome_rates(decide: Decide, arms: pd.DataFrame, seeds, noise: Noise, metric: str,
                  n_draws: int, rng_seed: int) -> dict[str, float]:
    """Fraction of ``n_draws`` simulated tables on which ``decide`` gives each outcome."""
    counts = _count_outcomes(decide, _Sampler(arms, seeds, noise, metric), n_draws, np.random.default_rng(rng_seed))
    return {k: v / n_draws for k, v in counts.items()}


TRUTHS = ("posterior", "plugin")  # how a stability or projection draw takes the truth


class _Predictive:
    """Posterior-predictive tables. Per draw: the noise SDs from their own uncertainty (all
    scaled by sqrt(df / chi2(df)), the scaled-inverse-chi-square posterior of a variance
    fitted with ``df`` degrees of freedom: with few seeds a fitted SD is often too small, and
    taking it as known is over-confident); a truth around the observed means with the
    uncertainty of a mean over the observed seeds at those SDs; a table of the re-run's
    seeds from that truth at those SDs."""

    def __init__(self, observed: _Sampler, rerun: _Sampler):
        self.observed, self.rerun = observed, rerun
        self.df = observed.noise.df

    def draw(self, rng: np.random.Generator) -> pd.DataFrame:
        scale = math.sqrt(self.df / rng.chisquare(self.df)) if math.isfinite(self.df) and self.df > 0 else 1.0
        truth = self.observed.mu + scale * self.observed.noise_draw(rng).mean(axis=1, keepdims=True)
        y = truth + scale * self.rerun.noise_draw(rng)  # (arms, seeds)
        return pd.DataFrame({**self.rerun.columns, self.rerun.metric: y.ravel()})


@dataclass(frozen=True)
class _Fit:
    """What a stability draw takes from an observed table: the observed means and noise."""

    arms: pd.DataFrame
    noise: Noise
    seeds: list  # the seeds with a finite run, sorted


def _fit(table: pd.DataFrame, metric: str) -> _Fit:
    """Observed arm means and fitted noise; ``ValueError`` when the table cannot give them."""
    noise = estimate_noise(table, metric)  # raises when no arm has 2 finite seeds
    arms = arm_means(table, metric)
    seeds = sorted(table.loc[table["status"] == "ok", "seed"].unique())
    if len(seeds) < 2 or arms.empty:
        raise ValueError(f"cannot project {metric}: the table has fewer than 2 seeds with a finite run")
    return _Fit(arms, noise, seeds)


def projected_seeds(observed, n_seeds: int) -> list[int]:
    """The seed labels of a re-run with ``n_seeds`` seeds: the observed ones first, then new
    labels above them. Labels only pair runs (the noise is drawn afresh per label), so the
    choice matters only in that at the observed count the draw is the stability draw."""
    observed = [int(s) for s in observed]
    start = max(observed, default=-1) + 1
    return (observed + list(range(start, start + n_seeds)))[:n_seeds]


def _table_source(fit: _Fit, metric: str, n_seeds: int, truth: str):
    if n_seeds < 1:
        raise ValueError(f"a projection needs n_seeds >= 1, got {n_seeds}")
    if truth not in TRUTHS:
        raise ValueError(f"truth must be one of {TRUTHS}, got {truth!r}")
    rerun = _Sampler(fit.arms, projected_seeds(fit.seeds, n_seeds), fit.noise, metric)
    if truth == "plugin":
        return rerun
    return _Predictive(_Sampler(fit.arms, fit.seeds, fit.noise, metric), rerun)


def _projection(decide: Decide, fit: _Fit, metric: str, n_seeds: int, n_draws: int, rng_seed: int,
                reach=None, truth: str = "posterior") -> dict[str, float] | None:
    source = _table_source(fit, metric, n_seeds, truth)
    counts = _count_outcomes(decide, source, n_draws, np.random.default_rng(rng_seed), reach)
    return None if counts is None else {k: v / n_draws for k, v in counts.items()}


def outcome_projection(decide: Decide, table: pd.DataFrame, metric: str, n_seeds: int, n_draws: int,
                       rng_seed: int = 0, *, truth: str = "posterior") -> dict[str, float]:
    """Outcome probabilities of a re-run of ``table``'s design with ``n_seeds`` seeds.

    The stability model at another seed count: the noise SDs are those fitted to the
    observed table; per draw a truth is drawn around the observed arm means with the
    uncertainty of a mean over the observed seeds (``truth="posterior"``; ``"plugin"`` takes
    the observed means as the truth: over-confident near a boundary, kept for comparison),
    then a table of every arm x ``n_seeds`` seeds is drawn from it and decided. The fitted
    SDs are taken as known, so a projection far beyond the observed count is as good as
    those SDs (fitted on few seeds). ``ValueError`` when the table has too few finite seeds
    to fit the noise.
    """
    return _projection(decide, _fit(table, metric), metric, n_seeds, n_draws, rng_seed, truth=truth)


def rerun_outcomes(decide: Decide, table: pd.DataFrame, metric: str, n_draws: int, rng_seed: int = 0, *,
                   truth: str = "posterior") -> dict[str, float]:
    """P(outcome) of a re-run with new seeds (same design, same seed count), for every outcome
    a draw gave: the same draws as ``stability`` (whose value is this dict's entry for the
    verdict's own outcome), so the report can name the outcome a re-run most likely gives.
    {} when the table has too few finite seeds to fit the noise."""
    try:
        fit = _fit(table, metric)
    except ValueError:
        return {}
    return _projection(decide, fit, metric, len(fit.seeds), n_draws, rng_seed, truth=truth) or {}


def stability(decide: Decide, table: pd.DataFrame, metric: str, outcome: str, n_draws: int,
              rng_seed: int = 0, *, truth: str = "posterior") -> float:
    """Probability that a re-run with new seeds (same design, same seed count) repeats ``outcome``.

    Posterior-predictive: the noise SDs are fitted to the observed table
    (``estimate_noise``); each of ``n_draws`` draws takes a truth from the uncertainty of the
    observed arm means, then a fresh table from that truth, and decides it:
    ``outcome_projection`` at the observed seed count. NaN when the table has too few finite
    seeds to fit the noise.
    """
    split = rerun_outcomes(decide, table, metric, n_draws, rng_seed, truth=truth)
    return split.get(outcome, 0.0) if split else math.nan


def stability_outcomes(decide: Decide, table: pd.DataFrame, metric: str, n_draws: int,
                       rng_seed: int = 0, *, truth: str = "posterior") -> list[str] | None:
    """The outcomes of the ``n_draws`` re-run draws behind ``stability`` (same draws, same
    order: the share equal to an outcome is its stability); None where the noise cannot be
    fitted. The reliability check splits them into halves (hypotheses/calibration.py)."""
    try:
        fit = _fit(table, metric)
    except ValueError:
        return None
    source = _table_source(fit, metric, len(fit.seeds), truth)
    rng = np.random.default_rng(rng_seed)
    return [decide(source.draw(rng)).outcome for _ in range(n_draws)]


# Seed counts ``seeds_for_stability`` tries. A grid, not a bisection: the probability of the
# modal outcome is not monotone in the seed count (an inconclusive verdict is stable at few
# seeds, a coin flip as the interval starts to clear the boundary, stable again once decided).
STABILITY_SEED_GRID = (3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40)
STABILITY_TARGET = 0.90  # a verdict a re-run repeats 9 times in 10; FRAGILE_BELOW (0.80) flags worse


def seeds_for_stability(decide: Decide, table: pd.DataFrame, metric: str, n_draws: int,
                        target: float = STABILITY_TARGET, max_seeds: int = 40, *,
                        outcomes: Iterable[str] | None = None,
                        rng_seed: int = 0, truth: str = "posterior") -> tuple[int, str, float] | None:
    """Fewest seeds at which a re-run of ``table``'s design repeats one outcome with
    probability >= ``target``: ``(n, that outcome, its probability)``, or None if no seed
    count up to ``max_seeds`` does.

    Each seed count of ``STABILITY_SEED_GRID`` up to ``max_seeds`` (and ``max_seeds``
    itself) is projected in turn (``outcome_projection``, same draws and RNG seed) and the
    first that reaches ``target`` is returned. The outcome is the modal one at that count,
    which need not be the observed verdict: an inconclusive verdict may become decided with
    more seeds, and a decided one may be reliably inconclusive at fewer. ``outcomes``
    restricts which outcomes count (e.g. only decided ones). Stability is not monotone in
    the seed count, so the grid is searched in order rather than bisected; a count between
    grid points may already suffice. ``ValueError`` when the table cannot fit the noise.
    """
    if not 0 < target <= 1:
        raise ValueError(f"stability target must be in (0, 1], got {target}")
    fit = _fit(table, metric)
    allowed = None if outcomes is None else set(outcomes)
    grid = [n for n in STABILITY_SEED_GRID if n < max_seeds] + [max_seeds]
    for n in grid:
        rates = _projection(decide, fit, metric, n, n_draws, rng_seed, reach=(target, allowed), truth=truth)
        if rates is None:
            continue
        candidates = {k: v for k, v in rates.items() if allowed is None or k in allowed}
        outcome = max(sorted(candidates), key=candidates.__getitem__)
        if candidates[outcome] >= target - 1e-12:
            return n, outcome, candidates[outcome]
    return None

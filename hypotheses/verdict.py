"""The verdict a decision function returns, and the table plumbing every decider shares.

Owns:
- ``Verdict``: the frozen record of one decision: one of three outcomes, what we saw, the
  statistic with its confidence bounds, the region the claim predicts for it, and how
  stable the outcome is under a re-run.
- ``decider`` / ``scenarios``: the decorators every decision function and calibration-scenarios
  function wears; they register it under its claim ids (``@decider("C1")``), which is how
  ``Claim.decide_fn`` finds it. A decider raises
  ``Inconclusive`` when the data cannot tell (too few seeds, nothing to compare, an
  interval straddling the claim's boundary); the wrapper turns that into an
  *inconclusive* verdict and fills the statistics every verdict must carry.
- input validation of a results table (``require_table``): a malformed table is a
  pipeline error (``ValueError``), never a verdict.
- pairing by seed, written once: ``ArmTable`` ({arm: {seed: value}} of a slice's finite runs,
  ``matched`` pairs of arms that differ in one column), ``paired`` / ``paired_difference``
  (the seeds arms share, their values aligned); every decider pairs through them;
- the shared diverged-run rule and the best-LR ranking (``ArmTable.ranking``), used by
  every schedule claim so that C1..C5 rank warmdowns the same way.

Three outcomes, each a statistical decision with a stated smallest effect of interest
delta (per profile, ``fixtures/profiles/*.toml [verdicts.delta]``):
- *reproduced*: the confidence bounds lie inside the region the claim predicts;
- *contradicted*: the (multiplicity-corrected) bounds lie wholly outside it;
- *inconclusive*: neither; the data cannot tell at this profile's seeds.

Premise (``PremiseAbsent``): some claims mean something only where the phenomenon they act
on exists at this profile (a schedule x bit-width interaction needs a quantisation penalty;
"wd33 is optimal" needs a landscape that tells warmdowns apart). Their deciders check that
premise first; where it is absent the verdict is *inconclusive* with a reason starting
"premise absent at this profile: " and ``stats['inconclusive_kind'] == 'premise'``, so a
report counts "not testable here" apart from "too few seeds" (``'seeds'``: more seeds
could decide). ``stats['premise']`` is 'met', 'absent', 'unchecked' (the table lacks what
the check needs) or '' (the claim states no premise).
A non-significant test is never read as evidence for a null claim: null claims are
decided by equivalence bounds (two one-sided tests), so both errors stay at alpha.

Diverged-run rule (shared by all claims): a diverged run is excluded from every mean and
test but counted in ``stats['n_diverged']``. An arm (one warmdown value at one LR) with
diverged seeds is still ranked by its finite seeds if at least ``MIN_FINITE_SEEDS`` (2)
remain, otherwise it ranks last (its score is +inf). A decision that would rest on an arm
with fewer than 2 finite seeds is inconclusive.

Everything here is pure: no I/O, no globals beyond named constants.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

REPRODUCED = "reproduced"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
OUTCOMES = (REPRODUCED, CONTRADICTED, INCONCLUSIVE)

STATUS_OK = "ok"
STATUS_DIVERGED = "diverged"

# Fewest finite seeds an arm needs to be ranked on its mean (the shared diverged-run rule).
MIN_FINITE_SEEDS = 2
# Two warmdown fractions closer than this are the same value (0.33 vs 0.3300000001).
WD_DECIMALS = 6
# A verdict whose outcome a re-run repeats with less than this probability is flagged fragile.
FRAGILE_BELOW = 0.80

# The premise of a claim (see the module docstring) and the two kinds of inconclusive verdict.
PREMISE_MET, PREMISE_ABSENT, PREMISE_UNCHECKED = "met", "absent", "unchecked"
PREMISE_ABSENT_REASON = "premise absent at this profile: "
INCONCLUSIVE_PREMISE = "premise"  # not testable here: the phenomenon the claim acts on is absent
INCONCLUSIVE_SEEDS = "seeds"  # too few seeds (or bounds straddling the region): more seeds could decide
INCONCLUSIVE_KINDS = (INCONCLUSIVE_PREMISE, INCONCLUSIVE_SEEDS)

# Every verdict, decided or not, reports these (NaN where the decider never got that far).
REQUIRED_STATS = ("n_runs", "n_seeds", "n_diverged", "statistic", "statistic_value",
                  "ci_low", "ci_high", "ci_level", "region")
_STAT_DEFAULTS = {"statistic": "", "statistic_value": math.nan, "ci_low": math.nan,
                  "ci_high": math.nan, "ci_level": math.nan, "region": ""}
# The factor columns that identify one run inside a design slice.
RUN_KEY = ("size", "bits", "warmdown", "lr_mult", "seed")


# ---------------------------------------------------------------------------------------
# Verdict
# ---------------------------------------------------------------------------------------

StatValue = int | float | str


def _plain(key: str, value: object) -> StatValue:
    """One stats value as a plain Python int/float/str (numpy scalars are unwrapped)."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"stats[{key!r}] must be int, float or str, got {type(value).__name__}")


@dataclass(frozen=True)
class Verdict:
    """The outcome of one claim on one design cell.

    ``stats`` is flat (str -> int/float/str) so a report can tabulate it without knowing
    the claim; every verdict carries ``REQUIRED_STATS``: the counts, the headline
    statistic with its confidence bounds and level, and ``region``, the set the claim
    predicts for that statistic (e.g. ``<= 0.012``, ``[-0.012, 0.012]``).
    ``stability`` is the probability that a re-run with new seeds gives the same outcome
    (``hypotheses.simulate.stability``); NaN until it is computed.
    """

    claim_id: str
    outcome: str  # 'reproduced' | 'contradicted' | 'inconclusive'
    statement: str
    observed: str  # one human sentence of what we saw, with numbers
    stats: dict = field(default_factory=dict)
    reason: str = ""  # why inconclusive
    stability: float = math.nan
    # P(outcome) of a re-run for each outcome the stability draws gave (stability = the entry for
    # ``outcome``); {} until computed. The report names the outcome a re-run most likely gives.
    rerun: Mapping = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if self.outcome == INCONCLUSIVE and not self.reason:
            raise ValueError(f"{self.claim_id}: an inconclusive verdict needs a reason")
        if not isinstance(self.stats, Mapping):
            raise TypeError("stats must be a mapping")
        plain = {}
        for key, value in self.stats.items():
            if not isinstance(key, str):
                raise TypeError(f"stats keys must be str, got {key!r}")
            plain[key] = _plain(key, value)
        missing = [k for k in REQUIRED_STATS if k not in plain]
        if missing:
            raise ValueError(f"{self.claim_id}: stats lack {missing}")
        object.__setattr__(self, "stats", plain)

    @property
    def decided(self) -> bool:
        return self.outcome != INCONCLUSIVE

    @property
    def fragile(self) -> bool:
        return math.isfinite(self.stability) and self.stability < FRAGILE_BELOW

    @property
    def premise(self) -> str:
        """'met' | 'absent' | 'unchecked' | '' (the claim states no premise)."""
        return str(self.stats.get("premise", ""))

    @property
    def inconclusive_kind(self) -> str:
        """'' when decided; 'premise' (not testable here) or 'seeds' (too few seeds) when not."""
        if self.outcome != INCONCLUSIVE:
            return ""
        return INCONCLUSIVE_PREMISE if self.stats.get("inconclusive_kind") == INCONCLUSIVE_PREMISE else INCONCLUSIVE_SEEDS

    def with_stability(self, p: float, rerun: Mapping[str, float] | None = None) -> "Verdict":
        """With its stability and, where known, P(each outcome) of a re-run (``rerun``)."""
        return replace(self, stability=float(p), rerun=dict(rerun or {}))


class Inconclusive(Exception):
    """Raised inside a decider when the data cannot decide; ``decider`` makes it a verdict.

    ``stats`` are the statistics computed so far (the wrapper adds the defaults)."""

    def __init__(self, observed: str, reason: str, stats: Mapping | None = None):
        super().__init__(reason)
        self.observed, self.reason, self.stats = observed, reason, dict(stats or {})


class PremiseAbsent(Inconclusive):
    """Raised inside a decider when the claim's premise is absent at this profile: the
    verdict is inconclusive (not testable here), its reason starts with
    ``PREMISE_ABSENT_REASON`` and its stats say ``premise='absent'``,
    ``inconclusive_kind='premise'``."""

    def __init__(self, observed: str, why: str, stats: Mapping | None = None):
        super().__init__(observed, PREMISE_ABSENT_REASON + why,
                         {**dict(stats or {}), "premise": PREMISE_ABSENT, "inconclusive_kind": INCONCLUSIVE_PREMISE})


def _complete(claim, stats: Mapping) -> dict:
    return {**_STAT_DEFAULTS, **dict(stats), **paper_stats(claim)}


def verdict(claim, outcome: str, observed: str, stats: Mapping, reason: str = "") -> Verdict:
    """A verdict with the common statistics filled in (NaN / '' where absent), its premise
    status ('' unless the decider set one) and, when inconclusive, its kind ('seeds' unless
    the decider said 'premise')."""
    stats = dict(stats)
    stats.setdefault("premise", "")
    if outcome == INCONCLUSIVE:
        stats.setdefault("inconclusive_kind", INCONCLUSIVE_SEEDS)
    else:
        stats["inconclusive_kind"] = ""
    return Verdict(claim.id, outcome, claim.statement, observed, _complete(claim, stats), reason)


# Deciders and calibration scenarios, registered by claim id: ``@decider("C1")`` on the decision
# function, ``@scenarios("C1")`` on its scenarios function, in the claim family's module
# (``hypotheses/schedule.py`` ...). fixtures/claims.toml names the claim ([C1]); the claim id
# is the link (``Claim.decide_fn`` looks it up here), so "go to definition" and grep follow it.
DECIDERS: dict[str, Callable[..., Verdict]] = {}
SCENARIOS: dict[str, Callable] = {}


def _register(registry: dict, kind: str, claim_ids: tuple[str, ...], fn: Callable) -> None:
    for claim_id in claim_ids:
        if not isinstance(claim_id, str) or not claim_id.strip():
            raise TypeError(f"@{kind}: claim ids must be non-empty strings, got {claim_id!r}")
        old = registry.get(claim_id)
        same = old is not None and (old.__module__, old.__qualname__) == (fn.__module__, fn.__qualname__)
        if old is not None and not same:  # a module reloaded re-registers itself; two functions never share an id
            raise ValueError(f"@{kind}({claim_id!r}): {fn.__module__}.{fn.__qualname__} and "
                             f"{old.__module__}.{old.__qualname__} both claim it")
        registry[claim_id] = fn


def unregister(claim_id: str) -> None:
    """Forget the decider and scenarios of ``claim_id`` (tests that register a toy claim)."""
    DECIDERS.pop(claim_id, None)
    SCENARIOS.pop(claim_id, None)


def decider(*claim_ids, uses_delta: bool = True):
    """Wrap a decision function ``fn(table, claim, **cell_args) -> Verdict`` and register it
    as the decider of ``claim_ids``: ``@decider("C1")``, ``@decider("C3", "C4", "C5")``,
    ``@decider("C9", uses_delta=False)``; a bare ``@decider`` wraps without registering.

    The one place where "the data cannot tell" becomes a verdict: ``Inconclusive`` raised
    anywhere inside ``fn`` returns an inconclusive Verdict with its reason and the
    statistics gathered so far. Any other exception is a pipeline error and propagates.

    ``uses_delta``: whether the rule needs the profile's smallest effect of interest
    (``[verdicts.delta]``); a rule with its own margin (C9's band) says ``uses_delta=False``.
    The suite checks it at collection (``hypotheses.checks``): a missing delta is an error before
    any training, not a failure after it.
    """
    if len(claim_ids) == 1 and callable(claim_ids[0]):  # bare @decider
        return _wrap_decider(claim_ids[0], (), uses_delta)
    return functools.partial(_wrap_decider, claim_ids=claim_ids, uses_delta=uses_delta)


def _wrap_decider(fn: Callable[..., Verdict], claim_ids: tuple[str, ...], uses_delta: bool):
    @functools.wraps(fn)
    def wrapped(table: pd.DataFrame, claim, **kwargs) -> Verdict:
        try:
            return fn(table, claim, **kwargs)
        except Inconclusive as e:
            return verdict(claim, INCONCLUSIVE, e.observed, e.stats, e.reason)

    wrapped.is_decider = True
    wrapped.uses_delta = uses_delta
    wrapped.claim_ids = tuple(claim_ids)
    _register(DECIDERS, "decider", tuple(claim_ids), wrapped)
    return wrapped


def scenarios(*claim_ids):
    """Register a calibration-scenarios function ``fn(claim, arms, noise) -> {name: Scenario}``
    (hypotheses/calibration.py) for ``claim_ids``: ``@scenarios("C1")``."""

    def register(fn: Callable) -> Callable:
        _register(SCENARIOS, "scenarios", tuple(claim_ids), fn)
        return fn

    return register


def three_way(reproduce: bool, contradict: bool) -> str:
    """The outcome of a rule whose two conditions must never both hold."""
    if reproduce and contradict:
        raise AssertionError("a rule reproduced and contradicted the claim at once; its bounds are inconsistent")
    return REPRODUCED if reproduce else CONTRADICTED if contradict else INCONCLUSIVE


def claim_delta(claim) -> float:
    """The smallest effect of interest the profile gives this claim (``thresholds['delta']``)."""
    delta = float(claim.threshold("delta"))
    if not math.isfinite(delta) or delta <= 0:
        raise ValueError(f"claim {claim.id}: delta must be a positive number, got {delta}")
    return delta


def paper_stats(claim) -> dict:
    """The paper's reported figures (``paper_*`` keys of the claim) as flat stats."""
    out = {}
    for key, value in claim.paper.items():
        if isinstance(value, (list, tuple)):
            value = "[" + ", ".join(str(v) for v in value) + "]"
        out[key] = value
    return out


def count_stats(table: pd.DataFrame) -> dict:
    """n_runs / n_seeds / n_diverged of the rows a verdict rests on."""
    return {
        "n_runs": int(len(table)),
        "n_seeds": int(table["seed"].nunique()) if len(table) else 0,
        "n_diverged": int((table["status"] == STATUS_DIVERGED).sum()),
        "seeds": ",".join(str(int(s)) for s in sorted(table["seed"].unique())) if len(table) else "",
    }


# ---------------------------------------------------------------------------------------
# Table validation
# ---------------------------------------------------------------------------------------


def require_table(
    table: pd.DataFrame, columns: Iterable[str], metric: str, *, what: str
) -> pd.DataFrame:
    """Validate a results table and return a working copy with normalised dtypes.

    Raises ``ValueError`` (a pipeline error) when the table is not a DataFrame, is empty,
    lacks a column, has an unknown status, or has an 'ok' run whose ``metric`` is not
    finite. The copy's ``warmdown`` is rounded to ``WD_DECIMALS`` and a boolean column
    ``finite`` marks the runs that enter means and tests (ok and metric finite).
    """
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"{what}: expected a pandas DataFrame, got {type(table).__name__}")
    needed = list(dict.fromkeys(["status", "seed", *columns, metric]))
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"{what}: results table lacks columns {missing}")
    if table.empty:
        raise ValueError(f"{what}: results table is empty")
    bad = sorted(map(str, set(table["status"]) - {STATUS_OK, STATUS_DIVERGED}))
    if bad:
        raise ValueError(f"{what}: unknown status values {bad} (expected 'ok'/'diverged')")
    out = table.copy()
    if "warmdown" in out.columns:
        out["warmdown"] = out["warmdown"].astype(float).round(WD_DECIMALS)
    values = out[metric]
    if values.dtype != np.float64:  # to_numeric costs ~3 ms: only for object / int columns
        values = pd.to_numeric(values, errors="coerce").astype(float)
    ok = out["status"] == STATUS_OK
    broken = ok & ~np.isfinite(values)
    if broken.any():
        ids = out.loc[broken, "run_id"].tolist() if "run_id" in out else list(out.index[broken])
        raise ValueError(f"{what}: runs with status 'ok' but non-finite {metric}: {ids[:5]}")
    out[metric] = values.where(ok)  # a diverged run's metric never enters a statistic
    out["finite"] = ok
    return out


def require_unique_runs(table: pd.DataFrame, key: Iterable[str], *, what: str) -> None:
    """Each run key must appear once; duplicates mean the slice mixes two designs."""
    key = list(key)
    dup = table.duplicated(subset=key, keep=False)
    if dup.any():
        example = table.loc[dup, key].head(2).to_dict("records")
        raise ValueError(
            f"{what}: duplicate runs for key {key} (did the slice mix optimisers, "
            f"shapes or step counts?): {example}"
        )


def is_wd(value: float, target: float, tol: float) -> bool:
    return abs(float(value) - float(target)) <= tol


# ---------------------------------------------------------------------------------------
# Best-LR warmdown ranking (C1..C5)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WdRanking:
    """Warmdowns of one (bits, size) cell ranked at their best LR.

    ``scores[wd]`` is the mean metric over finite seeds at wd's best lr_mult, +inf when no
    lr_mult has ``MIN_FINITE_SEEDS`` finite seeds. ``order`` is ascending by score.
    """

    scores: dict  # wd -> float
    best_lr: dict  # wd -> lr_mult or nan
    order: tuple  # wds, best first

    @property
    def n_ranked(self) -> int:
        """Number of warmdowns with a finite score (ranked on data, not by divergence)."""
        return sum(math.isfinite(s) for s in self.scores.values())

    @property
    def best(self) -> float:
        return self.order[0]

    @property
    def runner_up(self) -> float:
        return self.order[1] if len(self.order) > 1 else math.nan

    @property
    def tied(self) -> bool:
        return (
            len(self.order) > 1
            and math.isfinite(self.scores[self.order[0]])
            and self.scores[self.order[0]] == self.scores[self.order[1]]
        )


# ---------------------------------------------------------------------------------------
# Pairing by seed: the suite's central operation, written once
# ---------------------------------------------------------------------------------------

# The arm key of the schedule claims: one (bit-width, warmdown, LR) combination.
ARM_KEY = ("bits", "warmdown", "lr_mult")
_KEY_DECIMALS = 6  # float key parts are rounded so 0.33 and 0.3300000001 are one arm (WD_DECIMALS)


def _key_column(col: pd.Series) -> list:
    """A column as hashable, float-noise-free key parts (floats to 6 decimals; None/NaN -> None)."""
    if pd.api.types.is_float_dtype(col):
        return [None if x != x else x for x in np.round(col.to_numpy(dtype=float), _KEY_DECIMALS).tolist()]
    if pd.api.types.is_integer_dtype(col) or pd.api.types.is_bool_dtype(col):
        return col.to_numpy().tolist()
    return [None if (x is None or (isinstance(x, float) and math.isnan(x))) else
            round(float(x), _KEY_DECIMALS) if isinstance(x, (float, np.floating)) else x for x in col.tolist()]


def paired(*arms: Mapping[int, float]) -> tuple[list[int], list[np.ndarray]]:
    """The seeds every arm has (ascending), and each arm's values on them, in the same order.

    An arm is ``{seed: value}`` of its finite runs (``ArmTable``); a seed missing from any arm
    (diverged, or never run) leaves the pairing."""
    seeds = sorted(set.intersection(*(set(a) for a in arms))) if arms else []
    return seeds, [np.array([a[s] for s in seeds], dtype=float) for a in arms]


def paired_difference(a: Mapping[int, float], b: Mapping[int, float]) -> tuple[list[int], np.ndarray]:
    """The seeds finite in both arms, and d = a - b per seed."""
    seeds, (x, y) = paired(a, b)
    return seeds, x - y


@dataclass(frozen=True)
class Pair:
    """Two arms that differ only in one column (``ArmTable.matched``), on the seeds both have."""

    key: dict  # the values of the columns the two arms share, e.g. {'size': 't20k', 'warmdown': 0.33, 'lr_mult': 1.0}
    seeds: list  # ascending
    a: np.ndarray  # the first arm's values on ``seeds``
    b: np.ndarray  # the second arm's

    @property
    def d(self) -> np.ndarray:
        """a - b per seed."""
        return self.a - self.b


def _is_value(x, target, tol: float) -> bool:
    if isinstance(x, numbers.Real) and isinstance(target, numbers.Real) and x is not None:
        return abs(float(x) - float(target)) <= tol
    return x == target


class ArmTable:
    """The finite runs of one slice by arm and seed: ``{arm key: {seed: value}}``.

    An arm is one combination of the ``key`` columns (default ``ARM_KEY``: bits, wd, lr_mult);
    every arm of the table is present, an arm whose runs all diverged as ``{}``. Arms keep the
    order in which the table first shows them. Pair by seed with ``paired`` /
    ``paired_difference`` (any arms) or ``matched`` (every arm with its partner that differs
    only in one column: INT6 vs FP16 at each setting, wd10 vs wd33 at each LR).
    With ``what`` (the verdict's name), an (arm, seed) twice is a pipeline error: the slice
    mixes designs that differ in a column the claim does not compare.

    ``ranking(bits)`` ranks each warmdown at its best LR under the shared diverged-run rule
    (default key only): an (wd, lr_mult) arm scores the mean of its finite seeds if at least
    MIN_FINITE_SEEDS remain, else +inf.

    Plain dicts instead of pandas selections: calibration decides thousands of tables,
    and a boolean-mask selection per arm made one C2 decision cost ~60 ms."""

    def __init__(self, table: pd.DataFrame, metric: str, key: Iterable[str] = ARM_KEY, *, what: str = ""):
        self.key = tuple(key)
        self.arms: dict[tuple, dict[int, float]] = {}
        keys = zip(*(_key_column(table[c]) for c in self.key))
        for k, seed, y, ok in zip(keys, table["seed"].to_numpy().tolist(), table[metric].to_numpy(dtype=float).tolist(),
                                  table["finite"].to_numpy(dtype=bool).tolist()):
            arm = self.arms.setdefault(k, {})
            if not ok:
                continue
            if what and int(seed) in arm:
                raise ValueError(f"{what}: two runs for arm {dict(zip(self.key, k))} at seed {int(seed)}; "
                                 f"the slice mixes designs that differ in a column this claim does not compare")
            arm[int(seed)] = y
        self.values = self.arms  # the name hypotheses/report reads

    def __getitem__(self, key: tuple) -> dict[int, float]:
        return self.arms[key]

    def __contains__(self, key: tuple) -> bool:
        return key in self.arms

    def __iter__(self):
        return iter(self.arms)

    def __len__(self) -> int:
        return len(self.arms)

    def items(self):
        return self.arms.items()

    def matched(self, column: str, a, b, tol: float = 1e-6) -> list[Pair]:
        """Every arm whose ``column`` is ``a`` with its partner whose ``column`` is ``b`` and every
        other key column equal, on the seeds both have finite (floats within ``tol``). In the
        order of the ``a`` arms; an arm without a partner is left out, a pair may have no seeds."""
        i = self.key.index(column)
        rest = [c for c in self.key if c != column]
        partner = {k[:i] + k[i + 1:]: arm for k, arm in self.arms.items() if _is_value(k[i], b, tol)}
        out = []
        for k, left in self.arms.items():
            other = k[:i] + k[i + 1:]
            if not _is_value(k[i], a, tol) or other not in partner:
                continue
            seeds, (x, y) = paired(left, partner[other])
            out.append(Pair(dict(zip(rest, other)), seeds, x, y))
        return out

    def ranking(self, bits: int) -> WdRanking:
        if self.key != ARM_KEY:
            raise ValueError(f"ArmTable.ranking needs the key {ARM_KEY}, not {self.key}")
        lrs: dict[tuple, set] = {}
        for b, w, lr in self.arms:
            lrs.setdefault((b, w), set()).add(lr)
        scores, best_lr = {}, {}
        for (b, w), arm_lrs in sorted(lrs.items()):
            if b != bits:
                continue
            arm_scores = {}
            for lr in sorted(arm_lrs):
                vals = self.arms[(b, w, lr)]
                arm_scores[lr] = sum(vals.values()) / len(vals) if len(vals) >= MIN_FINITE_SEEDS else math.inf
            lr_best = min(arm_scores, key=arm_scores.get)
            scores[w] = arm_scores[lr_best]
            best_lr[w] = lr_best if math.isfinite(arm_scores[lr_best]) else math.nan
        return WdRanking(scores, best_lr, tuple(sorted(scores, key=lambda w: (scores[w], w))))

    def at(self, bits: int, wd: float, lr: float) -> dict[int, float]:
        """The arm (bits, wd, lr_mult); {} when absent or lr is NaN (no LR ranked)."""
        return self.arms.get((bits, wd, lr), {}) if math.isfinite(lr) else {}


def fmt_wd(wd: float) -> str:
    return "inf" if not math.isfinite(wd) else f"{wd:g}"


def fmt_bits(bits: int) -> str:
    return "FP16" if int(bits) == 16 else f"INT{int(bits)}"

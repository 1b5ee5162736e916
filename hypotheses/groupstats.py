"""Typed per-group statistics: the numbers a decider reports for each of its groups (a size, an
interaction contrast), written into ``Verdict.stats`` and read back, by field, by the report.

A verdict's stats are one flat mapping (JUnit properties, ``verdicts.json`` and the golden
verdicts all carry them flat), so a group's numbers live under the keys ``"<group>:<field>"``.
Both ends go through one dataclass: the decider builds it and writes ``as_stats()``, the report
calls ``read(stats)`` and gets the same dataclass back. Renaming a field renames both ends at
once; a figure can no longer go silently empty because the report spelt a key the decider
stopped writing (issue 23). The key format is the one verdicts have always carried, so no
verdict changed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

G = TypeVar("G", bound="GroupStats")


def as_float(v: Any) -> float | None:
    """A stats value as a finite float, else None: JSON and JUnit properties may carry strings,
    a decider NaN for "not computed". The report reads every number through this."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class GroupStats:
    """Base of every per-group schema: ``group`` names the group; every other field is a number."""

    group: str

    @classmethod
    def value_fields(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "group"]

    def as_stats(self) -> dict[str, Any]:
        """The stats entries of this group, ``{"<group>:<field>": value}``, in field order."""
        return {f"{self.group}:{name}": getattr(self, name) for name in self.value_fields()}

    @classmethod
    def read(cls: type[G], stats: Mapping[str, Any], prefix: str = "") -> dict[str, G]:
        """Every group of this schema in ``stats`` (a verdict's stats, or a report row whose stats
        carry ``prefix="stat_"``), by group name in the order found. A group is recognised by its
        first field; fields missing or NaN read as None."""
        names = cls.value_fields()
        marker = f":{names[0]}"
        groups = [k[len(prefix):-len(marker)] for k in stats
                  if k.startswith(prefix) and k.endswith(marker) and len(k) > len(prefix) + len(marker)]
        return {g: cls(g, **{n: as_float(stats.get(f"{prefix}{g}:{n}")) for n in names}) for g in groups}


@dataclass(frozen=True)
class ContrastStats(GroupStats):
    """One interaction contrast of C2-C5 (group: '<size> <steps> INT<b> wd<w>'): the mean over seeds
    and its equivalence (1 - 2 alpha) interval."""

    mean: float | None
    ci90_low: float | None
    ci90_high: float | None

    @property
    def bits(self) -> int:
        """The QAT bit-width the contrast is about (its 'INT<b>' token; 0 if none)."""
        return next((int(t[3:]) for t in self.group.split() if t.startswith("INT") and t[3:].isdigit()), 0)

    @property
    def cell_group(self) -> str:
        """The (size, steps) group the contrast belongs to: its label without 'INT<b> wd<w>'."""
        return self.group.rsplit(" ", 2)[0]


@dataclass(frozen=True)
class SizeDifference(GroupStats):
    """C8 at one size (group: the size): the paired wd_short - wd_long differences' mean, SD, Cohen's
    dz, (1 - 2 alpha) and Bonferroni intervals, and the two-sided p-value."""

    mean_diff: float | None
    sd_diff: float | None
    dz: float | None
    ci_low: float | None
    ci_high: float | None
    ci_low_bonf: float | None
    ci_high_bonf: float | None
    p: float | None


@dataclass(frozen=True)
class HeldOutStats(GroupStats):
    """C6 at one held-out size (group: the size): the law's prediction against the observed mean
    penalty; ``ci_*``/``corr_*`` bound the prediction error (mean - prediction), ``pi_*`` are the
    paper's prediction intervals (reported, not decided on); flags are 0/1."""

    n_params: float | None
    k: int | None
    mean_penalty: float | None
    predicted: float | None
    error: float | None
    se: float | None
    ci_low: float | None
    ci_high: float | None
    corr_low: float | None
    corr_high: float | None
    within_delta: int | None
    outside_delta: int | None
    pi_low: float | None
    pi_high: float | None
    pi_single_low: float | None
    pi_single_high: float | None
    inside: int | None


_OPTIMUM = ":optimal_wd_"


def optimum_key(group: str, bits_label: str) -> str:
    """The stats key of a group's bare optimal warmdown at one bit-width (C2-C5, reported only)."""
    return f"{group}{_OPTIMUM}{bits_label}"


def read_optima(stats: Mapping[str, Any], prefix: str = "") -> dict[str, dict[str, float]]:
    """{group: {bits label: optimal warmdown}} of the keys ``optimum_key`` wrote."""
    out: dict[str, dict[str, float]] = {}
    for k, v in stats.items():
        if k.startswith(prefix) and _OPTIMUM in k and as_float(v) is not None:
            group, bits = k[len(prefix):].split(_OPTIMUM, 1)
            out.setdefault(group, {})[bits] = as_float(v)
    return out


def settings_text(settings) -> str:
    """C6's shared (warmdown, lr_mult) settings as one stats value, 'wd0.33/lr1;wd0.5/lr1'."""
    return ";".join(f"wd{w:g}/lr{lr:g}" for w, lr in settings)


def read_settings(text: str) -> list[tuple[float, float]]:
    """The (warmdown, lr_mult) settings ``settings_text`` wrote (empty for empty or unreadable text)."""
    out = []
    for part in (text or "").split(";"):
        w, sep, lr = part.partition("/lr")
        if not (sep and w.startswith("wd")):
            continue
        try:
            out.append((float(w[2:]), float(lr)))
        except ValueError:
            continue
    return out

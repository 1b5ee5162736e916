"""The claims under test, as data.

Owns the ``Claim`` record and its loader. The claims live in ``fixtures/claims.toml``
(one table per claim id: statement, source, design, cells, rule, thresholds, and the
paper's reported figures as ``paper_*`` keys); this module only parses and validates that
file. A malformed file is an error that names the file and the offending key. A claim's
decider and calibration scenarios are Python, registered under its id (``@decider("C1")``,
``@scenarios("C1")`` in ``hypotheses/verdict.py``) in one of ``DECIDER_MODULES``;
``Claim.decide_fn`` / ``Claim.scenarios_fn`` look them up.
``Claim.at_profile`` merges what a profile says about the claim (its smallest effect of
interest ``delta``, ``[verdicts.delta]``) into the thresholds.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from engine.paths import fixtures_dir
from engine.spec import field_names

DEFAULT_CLAIMS_PATH = fixtures_dir() / "claims.toml"  # the checkout's fixtures/, else an installed copy's

_TEXT_FIELDS = ("statement", "source", "design", "rule")
_OPTIONAL_TEXT = ("role", "premise")
# The modules whose @decider / @scenarios register the claims of fixtures/claims.toml. A claim
# of a new family adds its module here (docs/extending.md); a decider registered elsewhere
# (a test's toy claim) is found once its module is imported.
DECIDER_MODULES = ("hypotheses.schedule", "hypotheses.scaling", "hypotheses.int4", "hypotheses.mechanism",
                   "hypotheses.related")
_REGISTERED_IN_PYTHON = ("decider", "scenarios")
_CELL_KEYS = {"by", "id", "filters", "args", "cases"}
_CASE_KEYS = {"id", "design", "filters", "args"}
_CELL_BY = {"bits", "size"}
_PAPER_PREFIX = "paper_"
_SCALAR = (int, float, str, bool)


class ClaimsFileError(ValueError):
    """The claims file is missing, unparsable or lacks / mistypes a key."""


@dataclass(frozen=True)
class Claim:
    """One claim of the study: what it says, where, on which design, and how we decide.

    ``thresholds`` are the decision parameters (alpha, bands, ...); ``paper`` holds the
    figures the paper reports (keys keep their ``paper_`` prefix, e.g. ``paper_z``).
    Both are read-only mappings. ``design`` names a design of the profile (several
    joined by '+', e.g. 'phase2+phase5_sizes'); ``role`` optionally names the profile's
    size role the claim is restricted to (e.g. 'int4_large'); '' means every size.
    """

    id: str
    statement: str
    source: str
    design: str
    rule: str
    thresholds: Mapping = field(default_factory=dict)
    paper: Mapping = field(default_factory=dict)
    role: str = ""
    premise: str = ""  # what must hold at a profile for the claim to be testable, and why ('' if nothing)
    cells: Mapping = field(default_factory=dict)
    # where the claim and the profile merged into it come from: error messages name these files
    path: Path | None = field(default=None, compare=False, repr=False)
    profile_path: Path | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "thresholds", MappingProxyType(dict(self.thresholds)))
        object.__setattr__(self, "paper", MappingProxyType(dict(self.paper)))
        object.__setattr__(self, "cells", MappingProxyType(dict(self.cells)))

    @property
    def designs(self) -> list[str]:
        return [d.strip() for d in self.design.split("+")]

    def decide_fn(self):
        """The decision function registered for this claim (``@decider("<id>")``)."""
        return _registered(self, "decider")

    def scenarios_fn(self):
        """The calibration scenarios registered for this claim (``@scenarios("<id>")``)."""
        return _registered(self, "scenarios")

    @property
    def decider(self) -> str:
        """Where the decider is defined, "module.function" ('' if none is registered): for messages."""
        return _where(self, "decider")

    @property
    def scenarios(self) -> str:
        """Where the calibration scenarios are defined ('' if none are registered)."""
        return _where(self, "scenarios")

    def at_profile(self, profile) -> "Claim":
        """This claim with the profile's settings for it merged into the thresholds.

        ``[verdicts.delta] <ID> = value`` of the profile becomes ``thresholds['delta']``.
        A claim without an entry keeps its thresholds (a decider that needs delta then
        stops with an error naming the profile file and the key to add).
        """
        deltas = (getattr(profile, "verdicts", {}) or {}).get("delta", {})
        if not isinstance(deltas, Mapping):
            raise ValueError(f"{profile.path}: [verdicts.delta] must be a table of claim id -> number")
        merged = dict(self.thresholds)
        merged.pop("delta", None)
        if self.id in deltas:
            value = deltas[self.id]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{profile.path}: [verdicts.delta] {self.id} must be a positive number, got {value!r}")
            merged["delta"] = float(value)
        merged["delta_source"] = f"{getattr(profile, 'name', '?')} [verdicts.delta]" if "delta" in merged else "none"
        cells = dict(self.cells)
        swap = bit_substitution(profile, self.id)
        if swap and "bits_substitution" not in self.thresholds:  # at most once: a map may chain (8 -> 6, 6 -> 3)
            merged, cells = _substitute_bits(merged, cells, swap)
            merged["bits_substitution"] = (", ".join(f"INT{a} -> INT{b}" for a, b in sorted(swap.items(), reverse=True))
                                           + f" ({getattr(profile, 'name', '?')} [verdicts.bit_substitution])")
        return replace(self, thresholds=merged, cells=cells, profile_path=getattr(profile, "path", None))

    def threshold(self, key: str):
        """``thresholds[key]``; a missing key is a pipeline error naming the claim."""
        try:
            return self.thresholds[key]
        except KeyError:
            if key == "delta":  # a profile's setting, not the claim's: name the profile file and the key to add
                raise ValueError(f"{self.profile_path or 'the profile'}: [verdicts.delta] has no entry for "
                                 f"{self.id}; add `{self.id} = <smallest effect of interest>`") from None
            raise ValueError(
                f"{self.path or 'claims file'}: claim {self.id} has no threshold {key!r} "
                f"(expected in [{self.id}.thresholds])"
            ) from None


def _registry(kind: str) -> dict:
    import importlib

    from hypotheses import verdict

    for module in DECIDER_MODULES:
        importlib.import_module(module)
    return verdict.DECIDERS if kind == "decider" else verdict.SCENARIOS


def _registered(claim: Claim, kind: str):
    """The function registered for ``claim`` as its ``kind`` ('decider' / 'scenarios'); ClaimsFileError
    naming the claims file and the decorator to add when there is none."""
    fn = _registry(kind).get(claim.id)
    if fn is None:
        raise ClaimsFileError(f"{claim.path or 'claims file'}: claim {claim.id} has no registered {kind}; decorate "
                              f"its function with @{kind}({claim.id!r}) (hypotheses.verdict) in one of "
                              f"{', '.join(DECIDER_MODULES)} or a module imported before the claim is decided")
    return fn


def _where(claim: Claim, kind: str) -> str:
    fn = _registry(kind).get(claim.id)
    return f"{fn.__module__}.{fn.__qualname__}" if fn is not None else ""


def _check_value(path: Path, key: str, value) -> None:
    if isinstance(value, list):
        if not all(isinstance(v, _SCALAR) for v in value):
            raise ClaimsFileError(f"{path}: {key} must be a scalar or a list of scalars")
    elif not isinstance(value, _SCALAR):
        raise ClaimsFileError(f"{path}: {key} must be a scalar or a list of scalars")


def _check_cases(path: Path, claim_id: str, cells: dict, design: str) -> None:
    """``cases``: a list of named sub-claims, each {id, design?, filters?, args?}; its
    designs must be among the claim's, its ids unique, its args scalars."""
    cases = cells["cases"]
    where = f"{path}: {claim_id}.cells.cases"
    if by_or_id := [k for k in ("by", "id") if k in cells]:
        raise ClaimsFileError(f"{where}: give `cases` or {by_or_id}, not both")
    if not isinstance(cases, list) or not cases or not all(isinstance(c, dict) for c in cases):
        raise ClaimsFileError(f"{where} must be a non-empty list of tables {{id, design, filters, args}}")
    designs = {d.strip() for d in design.split("+")}
    seen = set()
    for case in cases:
        if set(case) - _CASE_KEYS or not isinstance(case.get("id"), str) or not case["id"].strip():
            raise ClaimsFileError(f"{where}: each case needs a string `id` and only keys {sorted(_CASE_KEYS)}")
        if case["id"] in seen:
            raise ClaimsFileError(f"{where}: case id {case['id']!r} repeats")
        seen.add(case["id"])
        own = {d.strip() for d in str(case.get("design", design)).split("+")}
        if own - designs:
            raise ClaimsFileError(f"{where}[{case['id']}]: design(s) {sorted(own - designs)} are not in "
                                  f"{claim_id}.design {design!r}")
        for key in ("filters", "args"):
            if not isinstance(case.get(key, {}), dict):
                raise ClaimsFileError(f"{where}[{case['id']}].{key} must be a table")
        for key, value in case.get("args", {}).items():
            _check_value(path, f"{claim_id}.cells.cases[{case['id']}].args.{key}", value)


def _check_filters(path: Path, where: str, filters: dict) -> None:
    """Filter keys are RunSpec fields: a misspelt one (`bitz`) once crashed the whole collection."""
    unknown = [k for k in filters if k not in field_names()]
    if unknown:
        raise ClaimsFileError(f"{path}: {where} has unknown RunSpec field(s) {unknown} (misspelt?); "
                              f"known: {field_names()}")
    for key, value in filters.items():
        _check_value(path, f"{where}.{key}", value)


def _parse_claim(path: Path, claim_id: str, body) -> Claim:
    if not isinstance(body, dict):
        raise ClaimsFileError(f"{path}: [{claim_id}] must be a table")
    for name in _TEXT_FIELDS:
        if name not in body:
            raise ClaimsFileError(f"{path}: missing key {claim_id}.{name}")
        if not isinstance(body[name], str) or not body[name].strip():
            raise ClaimsFileError(f"{path}: {claim_id}.{name} must be a non-empty string")
    thresholds = body.get("thresholds")
    if not isinstance(thresholds, dict):
        raise ClaimsFileError(f"{path}: missing table [{claim_id}.thresholds]")
    for key, value in thresholds.items():
        _check_value(path, f"{claim_id}.thresholds.{key}", value)
    for name in _OPTIONAL_TEXT:
        if name in body and (not isinstance(body[name], str) or not body[name].strip()):
            raise ClaimsFileError(f"{path}: {claim_id}.{name} must be a non-empty string")
    cells = body.get("cells", {})
    if not isinstance(cells, dict) or set(cells) - _CELL_KEYS:
        raise ClaimsFileError(f"{path}: [{claim_id}.cells] must be a table with keys among {sorted(_CELL_KEYS)}")
    by = cells.get("by", [])
    if not isinstance(by, list) or set(by) - _CELL_BY:
        raise ClaimsFileError(f"{path}: {claim_id}.cells.by must be a list of {sorted(_CELL_BY)}")
    if "cases" in cells:
        _check_cases(path, claim_id, cells, body.get("design", ""))
    elif not by and not isinstance(cells.get("id"), str):
        raise ClaimsFileError(f"{path}: {claim_id}.cells needs `by` (one case per value), `id` (one case) "
                              f"or `cases` (named sub-claims)")
    if not isinstance(cells.get("filters", {}), dict):
        raise ClaimsFileError(f"{path}: {claim_id}.cells.filters must be a table of spec field -> value(s)")
    _check_filters(path, f"{claim_id}.cells.filters", cells.get("filters", {}))
    for case in cells.get("cases", []):
        _check_filters(path, f"{claim_id}.cells.cases[{case['id']}].filters", case.get("filters", {}))
    if cells.get("args", "fit_heldout") != "fit_heldout":
        raise ClaimsFileError(f"{path}: {claim_id}.cells.args must be 'fit_heldout' if given")
    for key in _REGISTERED_IN_PYTHON:
        if key in body:
            raise ClaimsFileError(f"{path}: {claim_id}.{key} is not read from the claims file: the {key} is "
                                  f"registered in Python under the claim id, @{key}({claim_id!r}) "
                                  f"(hypotheses.verdict); remove the key")
    paper = {}
    for key, value in body.items():
        if key in _TEXT_FIELDS or key in _OPTIONAL_TEXT or key in ("thresholds", "cells"):
            continue
        if not key.startswith(_PAPER_PREFIX):
            raise ClaimsFileError(
                f"{path}: unknown key {claim_id}.{key} (allowed: "
                f"{', '.join(_TEXT_FIELDS + _OPTIONAL_TEXT)}, thresholds, cells, {_PAPER_PREFIX}*)"
            )
        _check_value(path, f"{claim_id}.{key}", value)
        paper[key] = value
    return Claim(
        id=claim_id,
        statement=" ".join(body["statement"].split()),
        source=body["source"].strip(),
        design=body["design"].strip(),
        rule=" ".join(body["rule"].split()),
        thresholds=thresholds,
        paper=paper,
        role=body.get("role", "").strip(),
        premise=" ".join(body.get("premise", "").split()),
        cells=cells,
        path=path,
    )


RULES_BEGIN = "<!-- rules: generated from fixtures/claims.toml by `python -m hypotheses rules --markdown`; edit the claims file, not this block -->"
RULES_END = "<!-- /rules -->"


def rules_markdown(claims: Mapping[str, Claim]) -> str:
    """Every claim's decision rule (and premise) as claims.toml states them: the block docs/claims.md
    carries between ``RULES_BEGIN`` and ``RULES_END`` (a test keeps the two equal)."""
    lines = [RULES_BEGIN, ""]
    for c in claims.values():  # a heading per claim: its anchor (#c1) is what the README links to
        lines += [f"#### {c.id}", "", f"*{c.source}.* {c.rule}"]
        if c.premise:
            lines += ["", f"*Premise ({c.id}):* {c.premise}"]
        lines.append("")
    return "\n".join(lines + [RULES_END])


def load_claims(path: str | Path | None = None) -> dict[str, Claim]:
    """All claims of ``path`` (default ``fixtures/claims.toml``), keyed by id, file order."""
    path = Path(path) if path is not None else DEFAULT_CLAIMS_PATH
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ClaimsFileError(f"{path}: claims file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ClaimsFileError(f"{path}: not valid TOML: {exc}") from None
    if not raw:
        raise ClaimsFileError(f"{path}: no claims defined")
    return {claim_id: _parse_claim(path, claim_id, body) for claim_id, body in raw.items()}


def bit_substitution(profile, claim_id: str) -> dict[int, int]:
    """The profile's stand-in bit-widths for ``claim_id`` ({paper bits: profile bits}; {} if none).

    ``[verdicts.bit_substitution]`` (``claims``, ``map``, ``reason``) lets a profile test a
    claim at other bit-widths than the paper's where the paper's cost nothing measurable at
    its scale (tiny: INT8/INT6 penalties are ~0 at 10k-100k parameters, so "no schedule x
    bit-width interaction" would hold trivially): the claim's thresholds and cell filters are
    rewritten, and every verdict says so (``bits_substitution``). Malformed: ValueError."""
    where = f"{getattr(profile, 'path', 'the profile')}: [verdicts.bit_substitution]"
    sub = (getattr(profile, "verdicts", {}) or {}).get("bit_substitution")
    if not sub:
        return {}
    from engine.spec import ALLOWED_BITS, FULL_PRECISION_BITS

    if not isinstance(sub, Mapping) or set(sub) != {"claims", "map", "reason"}:
        raise ValueError(f"{where} must hold exactly claims = [ids], map = {{\"<paper bits>\" = <bits>}}, "
                         f"reason = \"...\"")
    if not isinstance(sub["reason"], str) or not sub["reason"].strip():
        raise ValueError(f"{where} reason must say why the bit-widths are substituted")
    if claim_id not in sub["claims"]:
        return {}
    swap = {}
    for k, v in dict(sub["map"]).items():
        ok = str(k).isdigit() and isinstance(v, int) and not isinstance(v, bool)
        if not ok or int(k) not in ALLOWED_BITS or v not in ALLOWED_BITS or FULL_PRECISION_BITS in (int(k), v):
            raise ValueError(f"{where} map {k!r} = {v!r}: both sides must be quantised bit-widths of "
                             f"{[b for b in ALLOWED_BITS if b != FULL_PRECISION_BITS]}")
        swap[int(k)] = v
    return swap


def _substitute_bits(thresholds: dict, cells: dict, swap: dict[int, int]) -> tuple[dict, dict]:
    """``thresholds['bits' / 'quant_bits']`` and the cells' ``bits`` filters with ``swap`` applied."""
    def sub(v):
        if isinstance(v, (list, tuple)):
            return [swap.get(int(b), int(b)) for b in v]
        return swap.get(int(v), int(v))

    out = dict(thresholds)
    for key in ("bits", "quant_bits"):
        if key in out:
            out[key] = sub(out[key])
    cells = dict(cells)
    if "bits" in dict(cells.get("filters", {})):
        cells["filters"] = {**dict(cells["filters"]), "bits": sub(cells["filters"]["bits"])}
    return out, cells

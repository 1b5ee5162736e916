"""The claims under test, as data.

Owns the ``Claim`` record and its loader. The claims live in ``fixtures/claims.toml``
(one table per claim id: statement, source, design, rule, thresholds, and the paper's
reported figures as ``paper_*`` keys); this module only parses and validates that file.
A malformed file is an error that names the file and the offending key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

DEFAULT_CLAIMS_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "claims.toml"

_TEXT_FIELDS = ("statement", "source", "design", "rule")
_OPTIONAL_TEXT = ("role",)
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "thresholds", MappingProxyType(dict(self.thresholds)))
        object.__setattr__(self, "paper", MappingProxyType(dict(self.paper)))

    def threshold(self, key: str):
        """``thresholds[key]``; a missing key is a pipeline error naming the claim."""
        try:
            return self.thresholds[key]
        except KeyError:
            raise ValueError(
                f"claim {self.id} has no threshold {key!r} (expected in [{self.id}.thresholds])"
            ) from None


def _check_value(path: Path, key: str, value) -> None:
    if isinstance(value, list):
        if not all(isinstance(v, _SCALAR) for v in value):
            raise ClaimsFileError(f"{path}: {key} must be a scalar or a list of scalars")
    elif not isinstance(value, _SCALAR):
        raise ClaimsFileError(f"{path}: {key} must be a scalar or a list of scalars")


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
    paper = {}
    for key, value in body.items():
        if key in _TEXT_FIELDS or key in _OPTIONAL_TEXT or key == "thresholds":
            continue
        if not key.startswith(_PAPER_PREFIX):
            raise ClaimsFileError(
                f"{path}: unknown key {claim_id}.{key} (allowed: "
                f"{', '.join(_TEXT_FIELDS + _OPTIONAL_TEXT)}, thresholds, {_PAPER_PREFIX}*)"
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
    )


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

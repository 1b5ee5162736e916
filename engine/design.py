"""Profiles and designs: `fixtures/profiles/<name>.toml` loaded, validated, expanded to specs.

A profile is one scale of the whole study (tiny / small / paper). It has `defaults` (RunSpec
fields for all its runs) and named designs; a design is a factorial `grid` (each key a
RunSpec field, each value a list; `size` and `seed` lists included) plus `set` (fixed
RunSpec fields for that design only). `roles` names size groups the claims need (which
INT4 sizes count as "large", ...). The engine expands designs; it does not know claims.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.spec import RunSpec, SpecError, field_names

PROFILE_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "profiles"


class ProfileError(ValueError):
    """A profile file or name is wrong; the message names the file, the key and the fix."""


@dataclass(frozen=True)
class Design:
    name: str
    description: str
    grid: dict[str, list]
    fixed: dict[str, Any]
    specs: tuple[RunSpec, ...]

    @property
    def sizes(self) -> list[str]:
        return list(dict.fromkeys(s.size for s in self.specs))

    @property
    def seeds(self) -> list[int]:
        return sorted({s.seed for s in self.specs})


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    path: Path
    train_without_gpu: bool
    checkpoint_every: int  # resume checkpoints every N steps (0 = none); not part of a run's identity
    pack: int  # train up to this many same-shape runs at once (engine.packed); 1 = off
    defaults: dict[str, Any]
    designs: dict[str, Design]
    roles: dict[str, list] = field(default_factory=dict)
    # [verdicts]: what the claim layer needs at this scale (smallest effects of interest,
    # noise priors, stability draws). Opaque to the engine, which never judges.
    verdicts: dict[str, Any] = field(default_factory=dict)

    def design(self, name: str) -> Design:
        try:
            return self.designs[name]
        except KeyError:
            raise ProfileError(f"profile {self.name!r} has no design {name!r}; it has {list(self.designs)}") from None

    def role(self, name: str) -> list:
        try:
            return list(self.roles[name])
        except KeyError:
            raise ProfileError(f"{self.path}: [roles] has no {name!r}; it has {list(self.roles)}") from None

    def all_specs(self) -> list[RunSpec]:
        seen: dict[str, RunSpec] = {}
        for d in self.designs.values():
            for s in d.specs:
                seen.setdefault(s.run_id, s)
        return list(seen.values())


def estimate_flops(spec: RunSpec) -> float:
    """Training FLOPs: 6 N T for the weights plus causal attention 6 L T seq d (the MFU convention)."""
    from engine.ladder import count_params, get_config

    cfg = get_config(spec.size)
    n = count_params(cfg, 256 if spec.tokenizer == "byte" else cfg.ref_vocab)
    return 6.0 * n * spec.tokens + 6.0 * cfg.n_layers * spec.tokens * spec.seq_len * cfg.dim


def available_profiles(directory: Path = PROFILE_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.toml"))


def load_profile(name_or_path: str | Path, directory: Path = PROFILE_DIR) -> Profile:
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = directory / f"{name_or_path}.toml"
    if not path.exists():
        raise ProfileError(
            f"unknown profile {str(name_or_path)!r}: no file {path}; available: {available_profiles(directory)}"
        )
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{path}: malformed TOML ({e}); fix the file") from None
    return _parse(raw, path)


def _require(raw: dict, key: str, kind: type, path: Path, where: str = "") -> Any:
    if key not in raw:
        raise ProfileError(f"{path}: missing key {where}{key!r}")
    if not isinstance(raw[key], kind):
        raise ProfileError(f"{path}: {where}{key!r} must be a {kind.__name__}, got {type(raw[key]).__name__}")
    return raw[key]


def _parse(raw: dict, path: Path) -> Profile:
    meta = _require(raw, "profile", dict, path)
    defaults = raw.get("defaults", {})
    known = set(field_names())
    bad = set(defaults) - known
    if bad:
        raise ProfileError(f"{path}: [defaults] has unknown RunSpec field(s) {sorted(bad)}; known: {sorted(known)}")
    designs = {}
    for name, d in _require(raw, "designs", dict, path).items():
        designs[name] = _parse_design(name, d, defaults, path)
    roles = raw.get("roles", {})
    verdicts = raw.get("verdicts", {})
    if not isinstance(verdicts, dict):
        raise ProfileError(f"{path}: [verdicts] must be a table")
    for role, sizes in roles.items():
        if not isinstance(sizes, list):
            raise ProfileError(f"{path}: [roles] {role!r} must be a list")
    return Profile(
        name=_require(meta, "name", str, path, "[profile] "),
        description=meta.get("description", ""),
        path=path,
        train_without_gpu=bool(meta.get("train_without_gpu", False)),
        checkpoint_every=int(meta.get("checkpoint_every", 0)),
        pack=int(meta.get("pack", 1)),
        defaults=defaults,
        designs=designs,
        roles=roles,
        verdicts=verdicts,
    )


def _parse_design(name: str, d: dict, defaults: dict, path: Path) -> Design:
    where = f"[designs.{name}] "
    grid = _require(d, "grid", dict, path, where)
    fixed = d.get("set", {})
    known = set(field_names())
    for key, values in grid.items():
        if key not in known:
            raise ProfileError(f"{path}: {where}grid key {key!r} is not a RunSpec field; known: {sorted(known)}")
        if not isinstance(values, list) or not values:
            raise ProfileError(f"{path}: {where}grid {key!r} must be a non-empty list")
    bad = set(fixed) - known
    if bad:
        raise ProfileError(f"{path}: {where}set has unknown RunSpec field(s) {sorted(bad)}")
    keys = list(grid)
    specs = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        fields_ = {**defaults, **fixed, **dict(zip(keys, combo))}
        try:
            specs.append(RunSpec.from_dict(fields_))
        except (SpecError, TypeError) as e:
            raise ProfileError(f"{path}: {where}makes an invalid run: {e}") from None
    return Design(name, d.get("description", ""), grid, fixed, tuple(specs))

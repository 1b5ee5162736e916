"""Profiles and designs: `fixtures/profiles/<name>.toml` loaded, validated, expanded to specs.

A profile is one scale of the whole study (tiny / small / paper). It has `defaults` (RunSpec
fields for all its runs) and named designs; a design is a factorial `grid` (each key a
RunSpec field, each value a list; `size` and `seed` lists included) plus `set` (fixed
RunSpec fields for that design only). `roles` names size groups the claims need (which
INT4 sizes count as "large", ...). The engine expands designs; it does not know claims.
"""

from __future__ import annotations

import itertools
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.paths import fixtures_dir
from engine.spec import OLD_FIELD_NAMES, RunSpec, SpecError, field_names

PROFILE_DIR = fixtures_dir() / "profiles"  # the checkout's fixtures/profiles, else an installed copy's

# What a profile may hold. A misspelt key or section is an error naming it and these: silently
# ignored, `[defualts]` once fell back to the engine defaults (about 400x the intended cost).
# [verdicts] belongs to the claim layer: allowed here, its contents passed on unread.
TOP_LEVEL_KEYS = ("profile", "defaults", "designs", "roles", "verdicts")
PROFILE_KEYS = ("name", "description", "train_without_gpu", "checkpoint_every", "pack")
DESIGN_KEYS = ("description", "grid", "set")


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
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{path}: malformed TOML ({e}); fix the file") from None
    except UnicodeDecodeError as e:
        raise ProfileError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save the file as UTF-8") from None
    except OSError as e:
        raise ProfileError(f"{path}: cannot read the profile ({e.strerror or e}); give a readable .toml file") from None
    return _parse(raw, path)


def _require(raw: dict, key: str, kind: type, path: Path, where: str = "") -> Any:
    if key not in raw:
        raise ProfileError(f"{path}: missing key {where}{key!r}")
    if not isinstance(raw[key], kind):
        raise ProfileError(f"{path}: {where}{key!r} must be a {kind.__name__}, got {type(raw[key]).__name__}")
    return raw[key]


def _check_keys(table: dict, allowed: tuple[str, ...], path: Path, where: str) -> None:
    unknown = [k for k in table if k not in allowed]
    if unknown:
        raise ProfileError(f"{path}: {where} has unknown key(s) {unknown} (misspelt?); allowed: {list(allowed)}")


def _typed(meta: dict, key: str, kind: type, default: Any, path: Path, minimum: int | None = None,
           hint: str = "") -> Any:
    v = meta.get(key, default)
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise ProfileError(f"{path}: [profile] {key} = {v!r} must be a {kind.__name__}{hint}")
    if minimum is not None and v < minimum:
        raise ProfileError(f"{path}: [profile] {key} = {v!r} must be >= {minimum}{hint}")
    return v


def _aliased(table: dict, path: Path, where: str) -> dict:
    """`table` (defaults, a grid or a set) with each old field name (`spec.OLD_FIELD_NAMES`: `wd`,
    `wd_shape`) under its new name. Unlike a record's spec (`spec.renamed_fields`), a profile naming
    both is an error even with equal values: one of the two lines is a leftover to delete."""
    for old, new in OLD_FIELD_NAMES.items():
        if old in table and new in table:
            raise ProfileError(f"{path}: {where}names both {old!r} and {new!r} (the same field): keep {new!r}")
    return {OLD_FIELD_NAMES.get(k, k): v for k, v in table.items()}  # in place: the grid's order is the runs' order


def _parse(raw: dict, path: Path) -> Profile:
    _check_keys(raw, TOP_LEVEL_KEYS, path, "the top level (sections)")
    meta = _require(raw, "profile", dict, path)
    _check_keys(meta, PROFILE_KEYS, path, "[profile]")
    defaults = raw.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ProfileError(f"{path}: [defaults] must be a table of RunSpec fields")
    defaults = _aliased(defaults, path, "[defaults] ")
    known = set(field_names())
    bad = set(defaults) - known
    if bad:
        raise ProfileError(f"{path}: [defaults] has unknown RunSpec field(s) {sorted(bad)}; known: {sorted(known)}")
    designs = {}
    for name, d in _require(raw, "designs", dict, path).items():
        if not isinstance(d, dict):
            raise ProfileError(f"{path}: [designs.{name}] must be a table with 'grid' (and 'set', 'description')")
        designs[name] = _parse_design(name, d, defaults, path)
    roles = raw.get("roles", {})
    if not isinstance(roles, dict):
        raise ProfileError(f"{path}: [roles] must be a table")
    verdicts = raw.get("verdicts", {})
    if not isinstance(verdicts, dict):
        raise ProfileError(f"{path}: [verdicts] must be a table")
    _check_roles(roles, designs, path)
    return Profile(
        name=_require(meta, "name", str, path, "[profile] "),
        description=_typed(meta, "description", str, "", path),
        path=path,
        train_without_gpu=_typed(meta, "train_without_gpu", bool, False, path, hint=" (true or false, unquoted)"),
        checkpoint_every=_typed(meta, "checkpoint_every", int, 0, path, 0, " (steps between checkpoints, 0 = none)"),
        pack=_typed(meta, "pack", int, 1, path, 1, " (runs per pack, 1 = unpacked)"),
        defaults=defaults,
        designs=designs,
        roles=roles,
        verdicts=verdicts,
    )


def _check_roles(roles: dict, designs: dict[str, Design], path: Path) -> None:
    """Each role a non-empty list of sizes that some design trains: a misspelt size (`t7k`) once
    dropped the claim's test case for it without a word."""
    trained = list(dict.fromkeys(size for d in designs.values() for size in d.sizes))
    for role, sizes in roles.items():
        if not isinstance(sizes, list) or not sizes or not all(isinstance(s, str) for s in sizes):
            raise ProfileError(f"{path}: [roles] {role} must be a non-empty list of sizes, e.g. [\"t10k\", \"t20k\"]")
        unknown = [s for s in sizes if s not in trained]
        if unknown:
            raise ProfileError(f"{path}: [roles] {role} names size(s) {unknown} that no design of the profile "
                               f"trains (misspelt?); the designs' sizes: {trained}")


def _parse_design(name: str, d: dict, defaults: dict, path: Path) -> Design:
    where = f"[designs.{name}] "
    _check_keys(d, DESIGN_KEYS, path, f"[designs.{name}]")
    grid = _aliased(_require(d, "grid", dict, path, where), path, f"{where}grid ")
    fixed = d.get("set", {})
    if not isinstance(fixed, dict):
        raise ProfileError(f"{path}: {where}set must be a table of RunSpec fields")
    fixed = _aliased(fixed, path, f"{where}set ")
    description = d.get("description", "")
    if not isinstance(description, str):
        raise ProfileError(f"{path}: {where}description must be a string")
    known = set(field_names())
    for key, values in grid.items():
        if key not in known:
            raise ProfileError(f"{path}: {where}grid key {key!r} is not a RunSpec field; known: {sorted(known)}")
        if not isinstance(values, list) or not values:
            raise ProfileError(f"{path}: {where}grid {key!r} must be a non-empty list")
        for i, v in enumerate(values):
            if any(_same_value(v, w) for w in values[:i]):
                raise ProfileError(f"{path}: {where}grid {key!r} = {values} repeats the value {v!r}: each value "
                                   "must appear once (a repeat is the same run; add seeds to get more runs)")
    bad = set(fixed) - known
    if bad:
        raise ProfileError(f"{path}: {where}set has unknown RunSpec field(s) {sorted(bad)}")
    both = sorted(set(fixed) & set(grid))
    if both:
        raise ProfileError(f"{path}: {where}both 'set' and 'grid' name {both}: keep each field in one of them")
    keys = list(grid)
    specs = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        fields_ = {**defaults, **fixed, **dict(zip(keys, combo))}
        try:
            specs.append(RunSpec.from_dict(fields_))
        except (SpecError, TypeError) as e:
            raise ProfileError(f"{path}: {where}makes an invalid run: {e}") from None
    return Design(name, description, grid, fixed, tuple(specs))


def _same_value(a: Any, b: Any) -> bool:
    """Grid values that make the same run: 0.33 and 0.330, 1 and 1.0 (but true is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    try:
        return a == b
    except Exception:  # noqa: BLE001 - incomparable values are different values
        return False


def profile_arg(profile: Profile) -> str:
    """How a command line names `profile`: its name if it is the shipped profile of that name, else its path."""
    shipped = PROFILE_DIR / f"{profile.name}.toml"
    try:
        is_shipped = shipped.exists() and Path(profile.path).resolve() == shipped.resolve()
    except OSError:  # an unresolvable path cannot be the shipped file: name it by its path
        is_shipped = False
    return profile.name if is_shipped else str(Path(profile.path).resolve())


def sweep_command(profile: Profile, designs: list[str], cache_dir: Path | str | None = None) -> str:
    """The `python -m engine sweep` line that produces `designs` of `profile` in the cache at `cache_dir`.

    Names the profile by path unless it is the shipped profile of its name, and adds --cache-dir
    unless the cache is the default one, so following the hint fills the cache that was read.
    Shared by the engine and the claim layer's missing-runs hints.
    """
    from engine.paths import default_cache_dir

    parts = ["python", "-m", "engine", "sweep", "--profile", profile_arg(profile)]
    for d in designs:
        parts += ["--design", d]
    if cache_dir is not None and Path(cache_dir).absolute().resolve() != default_cache_dir().absolute().resolve():
        parts += ["--cache-dir", str(Path(cache_dir).absolute())]
    return shlex.join(parts)

"""The run specification: one frozen, validated object per training run.

A `RunSpec` holds every factor that can change a run's result. Its identity is the
sha256 of its canonical JSON together with `RESULT_FORMAT_VERSION`, so a change of
any factor, or of the engine's result format, is a different run in the cache.

Defaults reproduce the OpenAI parameter-golf baseline recipe (`train_gpt.py`):
the base learning rates, Adam betas and Muon momentum below are that script's
values. The export-policy fields (`scale_floor`, `keep_float_numel`, `keep_float`) and
`data_order` default to the engine's own choices (no scale floor, every block matrix
quantised, random windows); parameter-golf's values are scale_floor=1 (its rule at int8
and int6; at int5/int4 the same value is this project's extrapolation), keep_float_numel=65536,
data_order="sequential" (its token stream, read as one span per step where its loader reads
eight), and every profile states its choice with its reason (docs/fidelity.md has
the table). `keep_float` has no parameter-golf default to match: its
baseline's name patterns choose fp32 over fp16 for small tensors, not which matrices are
quantised. Everything a profile wants to change
comes in through `RunSpec(**fields)` or `RunSpec.replace(...)`, the one validated path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, fields
from typing import Any

from engine.source import DataSource

# Bump when the meaning or layout of a stored result changes: every run id changes
# with it, so old records are never read as new ones.
RESULT_FORMAT_VERSION = 1

FULL_PRECISION_BITS = 16  # the paper's "FP16" arm: no fake quantisation, fp16 export
# 3 bits: the tiny profile's stand-in for INT6 (at toy scale INT6/INT8 cost nothing measurable;
# fixtures/profiles/tiny.toml [verdicts.bits] says why); the grid itself supports 2..8.
ALLOWED_BITS = (FULL_PRECISION_BITS, 8, 6, 5, 4, 3)
ALLOWED_OPTIMIZERS = ("muon", "adamw")
ALLOWED_SCHEDULES = ("wsd", "cosine_to_zero")
ALLOWED_WARMDOWN_SHAPES = ("linear", "cosine", "1-sqrt", "step")
ALLOWED_DATA_ORDERS = ("random", "sequential")
MAX_SCALE_FLOOR = 100.0  # above 100 / qmax every trained weight rounds to 0: a typo, not a grid
_KEEP_FLOAT_PATTERN = re.compile(r"^[A-Za-z0-9_.]+$")
# engine.model.GPT's weight matrices per block (test_quant checks this against the model), for
# validating `keep_float` patterns before any compute.
_BLOCK_MATRICES = ("attn.c_q", "attn.c_k", "attn.c_v", "attn.proj", "mlp.fc", "mlp.proj")
MAX_WD = 4.0  # a warmdown at most 4x the run (R4 needs ~1.6): beyond it the run starts below 25 % of peak


def is_quantised(bits: int | None) -> bool:
    """Whether a bit-width means fake quantisation / integer export (None and 16 do not)."""
    return bits is not None and bits != FULL_PRECISION_BITS


def bits_label(bits: int) -> str:
    """'fp16' or 'int6': how tables and summaries name a bit-width."""
    return f"int{bits}" if is_quantised(bits) else "fp16"


class SpecError(ValueError):
    """A spec field has a value that is not allowed; the message says which and why."""


@dataclass(frozen=True)
class RunSpec:
    # --- model and quantisation ---------------------------------------------------
    size: str
    bits: int = FULL_PRECISION_BITS  # 16 = no fake quantisation ("FP16" in the paper); see `quantised`
    qat_start: float = 0.0  # fraction of steps before fake quantisation switches on (paper: 0)
    quantize_embeddings: bool = False  # tied embedding kept in fp16 (parameter-golf PR #61)
    clip_percentile: float = 99.99984  # export clip percentile of parameter-golf's int8 export
    # Export grid and coverage (engine.quant.QuantPolicy; QAT follows them). Each profile states its choice.
    # scale_floor: per-row scales >= scale_floor / qmax(bits). parameter-golf: 1 = 1/127 int8, 1/31 int6;
    # 1 at int5/int4 (1/15, 1/7) is this project's extrapolation of that rule
    scale_floor: float = 0.0
    keep_float_numel: int = 0  # matrices of <= this many elements stay float (parameter-golf: 65536; 0 = none)
    keep_float: str = ""  # name patterns of matrices kept float (fp16, no QAT) at any size, e.g. "c_k" ("" = none)
    # --- schedule -------------------------------------------------------------------
    schedule: str = "wsd"  # warm-up, constant, warmdown; or plain cosine to zero
    # warmdown length as a fraction of all steps; > 1 = the run starts part-way down (R4). Stored under
    # the key "wd" in the identity (`_STORED_AS`), so the rename from `wd` kept every run id; likewise
    # `warmdown_shape` under "wd_shape".
    warmdown: float = 0.33
    warmdown_shape: str = "linear"
    warmup_steps: int = 0  # parameter-golf has no LR warm-up (its WARMUP_STEPS only primes compile)
    lr_mult: float = 1.0  # multiplies every base LR below
    # True: the schedule restarts when QAT switches on (R2's separate pipeline): the full-precision
    # steps cool down over their last `warmdown` x steps, then QAT's steps start again at the peak LR and
    # decay to the end in `warmdown_shape` (engine.schedule.restart_lr_factor). False: one schedule.
    qat_lr_restart: bool = False
    # --- optimiser (parameter-golf base values) ------------------------------------
    optimizer: str = "muon"  # Muon for matrices + Adam for embeddings/scalars, or AdamW for all
    matrix_lr: float = 0.04
    scalar_lr: float = 0.04
    embed_lr: float = 0.05  # parameter-golf TIED_EMBED_LR
    adamw_matrix_lr: float = 0.004  # AdamW arm only: matrices need ~10x less than Muon's LR
    adamw_weight_decay: float = 0.1  # AdamW arm only, on matrices
    beta1: float = 0.9
    beta2: float = 0.95
    cooldown_beta2: float | None = None  # Adam beta2 during warmdown (R3); None = unchanged
    muon_momentum: float = 0.95
    muon_momentum_warmup_start: float = 0.85
    muon_momentum_warmup_steps: int = 500
    # --- length and data ------------------------------------------------------------
    steps: int = 1000
    batch_tokens: int = 8192
    seq_len: int = 256
    seed: int = 0
    data: str = "kjv"
    data_order: str = "random"  # random windows per step, or "sequential": the anchor's stream, one span per step
    tokenizer: str = "byte"
    val_tokens: int = 65536  # validation tokens evaluated (0 = whole validation split)
    probe_fracs: tuple[float, ...] = ()  # extra grid-distance checkpoints (fractions of steps)

    def __post_init__(self) -> None:
        _normalise_numbers(self)
        _validate(self)

    # --- identity -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["probe_fracs"] = list(self.probe_fracs)
        return d

    def canonical_json(self) -> str:
        spec = {_STORED_AS.get(k, k): v for k, v in self.to_dict().items()
                if not (k in _ADDED_LATER and v == _ADDED_LATER[k])}
        payload = {"result_format": RESULT_FORMAT_VERSION, "spec": spec}
        return json.dumps(payload, sort_keys=True, separators=(",", ":"))

    @property
    def run_id(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    @property
    def short_id(self) -> str:
        return self.run_id[:12]

    # --- derived ------------------------------------------------------------------------
    @property
    def batch_seqs(self) -> int:
        return self.batch_tokens // self.seq_len

    @property
    def warmdown_start(self) -> int:
        """First step whose LR is below peak (0 when the warmdown is longer than the run); the grid
        probe runs just before it."""
        from engine.schedule import restart_warmdown_start, warmdown_start

        if self.qat_lr_restart:  # the FP cooldown ends where QAT starts
            return restart_warmdown_start(self.steps, self.qat_start_step, self.warmdown)
        return max(0, warmdown_start(self.steps, self.warmdown if self.schedule == "wsd" else 1.0))

    @property
    def quantised(self) -> bool:
        """Whether this run trains with fake quantisation (bits < 16)."""
        return is_quantised(self.bits)

    @property
    def qat_start_step(self) -> int:
        return int(round(self.qat_start * self.steps)) if self.quantised else self.steps

    @property
    def source(self) -> DataSource:
        """`data` parsed (`engine.source`); the field itself stays the string the run id hashes."""
        return DataSource.parse(self.data)

    @property
    def keep_float_patterns(self) -> tuple[str, ...]:
        """`keep_float` as a tuple of patterns (the field stays the canonical string the run id hashes)."""
        return tuple(p for p in self.keep_float.split(",") if p)

    @property
    def tokens(self) -> int:
        return self.steps * self.batch_tokens

    def replace(self, **changes: Any) -> "RunSpec":
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise SpecError(f"unknown RunSpec field(s) {sorted(unknown)}; known: {field_names()}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        if not isinstance(d, dict):
            raise SpecError(f"a RunSpec is a JSON object of fields, e.g. {{\"size\": \"t20k\"}}; got {d!r}")
        d = renamed_fields(d)
        unknown = set(d) - set(field_names())
        if unknown:
            raise SpecError(f"unknown RunSpec field(s) {sorted(unknown)}; known: {field_names()}")
        if "size" not in d:
            raise SpecError("a RunSpec needs a 'size' (a ladder name, see `python -m engine plan --ladder`)")
        d = dict(d)
        if isinstance(d.get("probe_fracs"), list):
            d["probe_fracs"] = tuple(d["probe_fracs"])
        return cls(**d)


# Fields added after records were cached, with the default that means "as before": at that value
# a field is left out of the canonical JSON, so adding an option keeps every existing run id
# (and cache) valid; set to anything else it is part of the identity like any field.
_ADDED_LATER = {"qat_lr_restart": False}

# Fields renamed after run ids were pinned: field name -> the key the identity (canonical JSON) keeps,
# so a rename changes no run id. Records written before the rename store the old key; `renamed_fields`
# reads them (records now store field names: `to_dict`).
# `wd` reads as weight decay; the fields are the warmdown fraction and its shape
_STORED_AS = {"warmdown": "wd", "warmdown_shape": "wd_shape"}
OLD_FIELD_NAMES = {old: new for new, old in _STORED_AS.items()}


def renamed_fields(d: dict[str, Any]) -> dict[str, Any]:
    """`d` with every old field name (a record written before a rename, `wd`) under its field name."""
    if not any(k in d for k in OLD_FIELD_NAMES):
        return d
    out = dict(d)
    for old, new in OLD_FIELD_NAMES.items():
        if old in out:
            v = out.pop(old)
            if new in out and out[new] != v:
                raise SpecError(f"RunSpec: both {old!r} (the old name) and {new!r} are given, with different "
                                f"values ({v!r}, {out[new]!r}); give {new!r} only")
            out[new] = v
    return out


def with_added_fields(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored spec dict completed with the fields added since it was written, at their defaults
    (what it meant then), old field names renamed: compare and tabulate records through this, never
    the raw dict."""
    return {**_ADDED_LATER, **renamed_fields(stored)}


def field_names() -> list[str]:
    return [f.name for f in fields(RunSpec)]


_FLOAT_FIELDS = {f.name for f in fields(RunSpec) if f.type in ("float", "float | None")}
_INT_FIELDS = {f.name for f in fields(RunSpec) if f.type == "int"}
_STR_FIELDS = {f.name for f in fields(RunSpec) if f.type == "str"}
_BOOL_FIELDS = {f.name for f in fields(RunSpec) if f.type == "bool"}
# Integers beyond 64 bits overflow torch's seeding (and every counter in the loop) deep inside a run.
MAX_INT = 2**63 - 1


def _normalise_numbers(spec: RunSpec) -> None:
    # 1 and 1.0 must hash the same: coerce numeric fields to one JSON form. Types are checked
    # here, before any value check, so a wrong type is named as such (never a traceback), and a
    # non-finite number never reaches the run id (its JSON would be non-standard).
    for name in _STR_FIELDS:
        v = getattr(spec, name)
        if not isinstance(v, str):
            raise SpecError(f"RunSpec.{name}={v!r} must be a string (e.g. {getattr(RunSpec, name, 't20k')!r})")
    for name in _BOOL_FIELDS:
        v = getattr(spec, name)
        if not isinstance(v, bool):
            raise SpecError(f"RunSpec.{name}={v!r} must be true or false (a JSON/TOML boolean, not a string)")
    for name in _FLOAT_FIELDS:
        v = getattr(spec, name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SpecError(f"RunSpec.{name}={v!r} must be a finite number")
        object.__setattr__(spec, name, float(v))
    for name in _INT_FIELDS:
        v = getattr(spec, name)
        if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or float(v) != int(v)
                or abs(int(v)) > MAX_INT):
            raise SpecError(f"RunSpec.{name}={v!r} must be an integer of at most 63 bits")
        object.__setattr__(spec, name, int(v))
    # Pattern lists are sets: "c_k, c_q" and "c_q,c_k" are one spec.
    object.__setattr__(spec, "keep_float", ",".join(sorted({p.strip() for p in spec.keep_float.split(",") if p.strip()})))
    fracs = spec.probe_fracs
    try:
        if isinstance(fracs, (str, bytes)) or any(isinstance(p, bool) for p in fracs):
            raise TypeError
        probes = tuple(float(p) for p in fracs)
    except (TypeError, ValueError):
        raise SpecError(f"RunSpec.probe_fracs={fracs!r} must be a list of fractions in [0, 1]") from None
    object.__setattr__(spec, "probe_fracs", tuple(sorted(set(probes))))


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise SpecError(message)


def _validate(s: RunSpec) -> None:
    from engine.ladder import LADDER

    _check(s.size in LADDER, f"RunSpec.size={s.size!r} is not a ladder name; allowed: {list(LADDER)}")
    _check(s.bits in ALLOWED_BITS, f"RunSpec.bits={s.bits!r} is not allowed; choose one of {ALLOWED_BITS}")
    _check(0.0 <= s.qat_start < 1.0, f"RunSpec.qat_start={s.qat_start} must be in [0, 1)")
    _check(90.0 <= s.clip_percentile <= 100.0, f"RunSpec.clip_percentile={s.clip_percentile} must be in [90, 100]")
    _check(0.0 <= s.scale_floor <= MAX_SCALE_FLOOR,
           f"RunSpec.scale_floor={s.scale_floor} must be in [0, {MAX_SCALE_FLOOR:g}] (scales >= scale_floor / qmax; "
           f"0 = no floor, parameter-golf: 1)")
    _check(s.keep_float_numel >= 0,
           f"RunSpec.keep_float_numel={s.keep_float_numel} must be >= 0 (0 = quantise every matrix; parameter-golf: 65536)")
    _validate_keep_float(s)
    _check(s.schedule in ALLOWED_SCHEDULES, f"RunSpec.schedule={s.schedule!r}; allowed: {ALLOWED_SCHEDULES}")
    _check(0.0 <= s.warmdown <= MAX_WD, f"RunSpec.warmdown={s.warmdown} (warmdown fraction) must be in [0, {MAX_WD:g}] "
                                        f"(> 1: a warmdown longer than the run, starting part-way down)")
    _check(s.warmdown_shape in ALLOWED_WARMDOWN_SHAPES, f"RunSpec.warmdown_shape={s.warmdown_shape!r}; allowed: {ALLOWED_WARMDOWN_SHAPES}")
    if s.qat_lr_restart:
        _check(s.quantised and s.schedule == "wsd" and 0 < s.qat_start_step < s.steps,
               f"RunSpec.qat_lr_restart=true restarts the LR when QAT starts: it needs a QAT bit-width (bits="
               f"{s.bits}), schedule 'wsd' (is {s.schedule!r}) and QAT starting inside the run (qat_start="
               f"{s.qat_start} x steps={s.steps} must round to a step in (0, steps))")
        _check(s.warmup_steps + round(s.warmdown * s.steps) <= s.qat_start_step,
               f"RunSpec.qat_lr_restart=true: the full-precision warm-up ({s.warmup_steps} steps) and warmdown "
               f"({s.warmdown} x {s.steps} steps) must fit before QAT starts at step {s.qat_start_step}; "
               f"give warmdown <= qat_start")
    _check(s.steps > 0, f"RunSpec.steps={s.steps} must be a positive number of optimiser steps")
    _check(0 <= s.warmup_steps < s.steps, f"RunSpec.warmup_steps={s.warmup_steps} must be in [0, steps={s.steps})")
    _check(
        s.schedule != "wsd" or s.warmup_steps + min(round(s.warmdown * s.steps), s.steps) <= s.steps,
        f"RunSpec warm-up ({s.warmup_steps} steps) and warmdown ({s.warmdown} x {s.steps} steps) overlap",
    )
    for name in ("lr_mult", "matrix_lr", "scalar_lr", "embed_lr", "adamw_matrix_lr"):
        v = getattr(s, name)
        _check(math.isfinite(v) and v > 0, f"RunSpec.{name}={v} must be a positive finite learning rate")
    _check(s.adamw_weight_decay >= 0, f"RunSpec.adamw_weight_decay={s.adamw_weight_decay} must be >= 0")
    _check(s.optimizer in ALLOWED_OPTIMIZERS, f"RunSpec.optimizer={s.optimizer!r}; allowed: {ALLOWED_OPTIMIZERS}")
    for name in ("beta1", "beta2", "muon_momentum", "muon_momentum_warmup_start"):
        v = getattr(s, name)
        _check(0.0 <= v < 1.0, f"RunSpec.{name}={v} must be in [0, 1)")
    _check(
        s.cooldown_beta2 is None or 0.0 <= s.cooldown_beta2 < 1.0,
        f"RunSpec.cooldown_beta2={s.cooldown_beta2} must be None or in [0, 1)",
    )
    _check(s.muon_momentum_warmup_steps >= 0, "RunSpec.muon_momentum_warmup_steps must be >= 0")
    _check(s.seq_len > 0, f"RunSpec.seq_len={s.seq_len} must be positive")
    _check(
        s.val_tokens == 0 or s.val_tokens >= s.seq_len,
        f"RunSpec.val_tokens={s.val_tokens} is smaller than seq_len={s.seq_len}: no validation window fits; "
        f"give val_tokens >= seq_len (or 0 = the whole validation split)",
    )
    _check(
        s.batch_tokens > 0 and s.batch_tokens % s.seq_len == 0,
        f"RunSpec.batch_tokens={s.batch_tokens} must be a positive multiple of seq_len={s.seq_len}",
    )
    _check(s.seed >= 0, f"RunSpec.seed={s.seed} must be >= 0")  # upper bound: MAX_INT above
    _check(s.val_tokens >= 0, f"RunSpec.val_tokens={s.val_tokens} must be >= 0 (0 = whole split)")
    _check(
        all(0.0 <= p <= 1.0 for p in s.probe_fracs),
        f"RunSpec.probe_fracs={s.probe_fracs} must be fractions in [0, 1]",
    )
    _check(s.data_order in ALLOWED_DATA_ORDERS, f"RunSpec.data_order={s.data_order!r}; allowed: {ALLOWED_DATA_ORDERS}")
    try:
        source = DataSource.parse(s.data)
    except ValueError:
        raise SpecError(f"RunSpec.data={s.data!r}; allowed: 'kjv', 'text:/dir/of/txt', 'fineweb:/dir/of/shards'") from None
    _check(
        s.tokenizer == "byte" or s.tokenizer.startswith("sp"),
        f"RunSpec.tokenizer={s.tokenizer!r}; allowed: 'byte', 'spN' (N = vocab, trained on the corpus), 'sp:/path.model'",
    )
    _check(
        not source.pretokenised or s.tokenizer.startswith("sp:"),
        "FineWeb shards are already tokenised: give their SentencePiece model as tokenizer='sp:/path/model.model'",
    )


def matrix_names(size: str) -> list[str]:
    """Names of the weight matrices QAT and export may quantise in the model of `size` (embedding first)."""
    from engine.ladder import LADDER

    return ["tok_emb.weight"] + [f"blocks.{i}.{m}.weight" for i in range(LADDER[size].n_layers) for m in _BLOCK_MATRICES]


def _validate_keep_float(s: RunSpec) -> None:
    names = matrix_names(s.size)
    for p in s.keep_float_patterns:
        _check(bool(_KEEP_FLOAT_PATTERN.match(p)),
               f"RunSpec.keep_float pattern {p!r} may hold only letters, digits, '_' and '.' (patterns are comma-separated)")
        _check(any(p in n for n in names),
               f"RunSpec.keep_float pattern {p!r} matches no weight matrix of {s.size} (names like {names[1]!r}, "
               f"{names[-1]!r}, 'tok_emb.weight')")
        _check(not (s.quantize_embeddings and p in "tok_emb.weight"),
               f"RunSpec.keep_float pattern {p!r} keeps the embedding float but quantize_embeddings=true quantises it; "
               f"drop one of the two")

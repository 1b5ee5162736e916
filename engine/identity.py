"""A run's identity beyond its spec: the data it trained on and the numeric environment it computed in.

The run id stays the hash of the spec (engine.spec), so reports and existing caches keep their ids.
What the spec cannot say is a checked part of the record instead, `result["identity"]`:

    {"data":    engine.data.data_fingerprint(...): the source made absolute, a digest of its files,
                the tokenizer and the digest of an 'sp:' model,
     "numeric": {"device": "cpu" | "cuda", "threads": N (CPU only), "precision": "fp32" | "bf16"}}

A request (a sweep, the suite's controller, `engine train`) knows the identity it would train with
(`expected`); the cache serves a record only where the two agree (`differences`). Otherwise the
request stops before anything trains with one line (`mismatch_message`), or retrains the run when
asked (`--on-mismatch retrain`, engine.cache keeps the old record under `_superseded/`).

Why each part: `text:d` names another corpus in another working directory, and the files of a
`text:/dir` can change under one name; the CPU thread count splits float reductions differently
(t10k: 1 vs 2 threads differ by up to 0.007 bpb) and is set implicitly by `--jobs`; the device and
the precision change every matmul. Why not in the run id: ids are what reports and caches refer to.
What is not identity (DESIGN.md): micro-batches, which GPU index, which executor, the GPU model.

Records written before identities existed carry none: they are served unchecked (the cache warns
once). Pure functions only; nothing here reads files or imports torch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

DATA, NUMERIC = "data", "numeric"
ON_MISMATCH_CHOICES = ("error", "retrain")
# how each field is named in messages, and what makes a request train as the cached runs did
LABELS = {"data.source": "data source", "data.data_sha256": "data content", "data.tokenizer": "tokenizer",
          "data.tokenizer_sha256": "tokenizer model", "numeric.device": "device", "numeric.threads": "threads",
          "numeric.precision": "precision"}
FIXES = {"numeric.threads": "--threads {v} (or the --jobs that shared the cores out to {v} per worker)",
         "numeric.device": "--device {v}", "numeric.precision": "--precision {v}"}
DATA_FIX = "give the data they were trained on"


def numeric_identity(device: str, threads: int | None, precision: str) -> dict:
    """The numeric environment that changes a run's numbers: device type, CPU threads (CPU only), precision."""
    kind = device.partition(":")[0]
    out: dict[str, Any] = {"device": kind, "precision": precision}
    if kind == "cpu":  # on a GPU the CPU's thread count moves no arithmetic of the run
        out["threads"] = threads
    return out


def differences(recorded: dict | None, expected: dict | None) -> list[tuple[str, Any, Any]] | None:
    """(field, recorded value, expected value) for every field that differs; None if `recorded` has no
    identity (an old record: it cannot be checked). A part the request cannot know (None in
    `expected`: data that is not on this machine, a cluster that picks its devices) is not compared."""
    if not isinstance(recorded, dict):
        return None
    out = []
    for part in (DATA, NUMERIC):
        want = (expected or {}).get(part)
        if want is None:
            continue
        have = recorded.get(part) if isinstance(recorded.get(part), dict) else {}
        for key, value in want.items():
            if have.get(key) != value:
                out.append((f"{part}.{key}", have.get(key), value))
    return out


def _show(field: str, value: Any) -> str:
    if field.endswith("sha256") and isinstance(value, str):
        return value[:12]
    return str(value)


def _said(field: str, value: Any) -> str:
    return f"{LABELS.get(field, field)}={_show(field, value)}"


class IdentityMismatchError(ValueError):
    """Cached runs were trained with another data or numeric environment than the request's."""

    def __init__(self, message: str, mismatched: list):
        self.mismatched = mismatched  # [(spec, differences)]
        super().__init__(message)


def mismatch_message(mismatched: list[tuple[Any, list[tuple[str, Any, Any]]]], superseded_dir: str,
                     who: str = "this sweep") -> str:
    """One line: how many cached runs differ, in what (the commonest first difference), and the fixes."""
    (field, have, want), n = Counter(diffs[0] for _, diffs in mismatched).most_common(1)[0]
    line = f"{n} cached run(s) were trained with {_said(field, have)}, {who} trains with {_said(field, want)}"
    rest = len(mismatched) - n
    also = sorted({LABELS.get(f, f) for _, diffs in mismatched for f, _, _ in diffs if f != field})
    notes = ([f"{rest} more run(s) differ otherwise"] if rest else []) + ([f"also in {', '.join(also)}"] if also else [])
    if notes:
        line += f" ({'; '.join(notes)})"
    if field.startswith(DATA):
        fix = f"{DATA_FIX} ({_show(field, have) if field == 'data.source' else _said(field, have)})"
    else:
        fix = FIXES[field].format(v=_show(field, have))
    return (f"{line}; train as they were: {fix}, or pass --on-mismatch retrain (pytest: --qat-on-mismatch retrain, "
            f"or --qat-no-train to decide from them as they are) to retrain them (the old records are kept in "
            f"{superseded_dir})")


def numeric_label(numeric: dict | None) -> str:
    """'cpu, 2 threads, fp32' / 'cuda, bf16'."""
    if not isinstance(numeric, dict):
        return "unrecorded"
    parts = [str(numeric.get("device"))]
    if numeric.get("threads") is not None:
        parts.append(f"{numeric['threads']} thread{'s' if numeric['threads'] != 1 else ''}")
    parts.append(str(numeric.get("precision")))
    return ", ".join(parts)


def mixed_environments(records: Iterable[dict]) -> str | None:
    """One line if `records` were trained in more than one numeric environment, or on more than one
    version of one data source; None if they agree (records without an identity are not counted)."""
    numeric: Counter = Counter()
    data: dict[str, set] = {}
    for r in records:
        ident = (r.get("result") or {}).get("identity")
        if not isinstance(ident, dict):
            continue
        numeric[numeric_label(ident.get(NUMERIC))] += 1
        d = ident.get(DATA) or {}
        data.setdefault(str(r["spec"].get("data")), set()).add((d.get("source"), d.get("data_sha256"),
                                                                d.get("tokenizer_sha256")))
    notes = []
    if len(numeric) > 1:
        notes.append("numeric environments differ (" + "; ".join(f"{n} run(s) {k}" for k, n in numeric.most_common())
                     + ")")
    split = sorted(name for name, versions in data.items() if len(versions) > 1)
    if split:
        notes.append(f"data {', '.join(split)} differs between runs (another directory or edited files)")
    return "; ".join(notes) or None

"""Atomic file writes, the one way the engine replaces a file that others may read.

`atomic_write(path, data)`: the bytes go to a unique temp file beside `path`
(`.<name>.<pid>.<random>.tmp`, so concurrent writers never share one and a killed writer's
debris is recognisable), are flushed and fsync'ed, the temp file is renamed over `path`
(`os.replace`, atomic on POSIX), and the directory is fsync'ed so the rename itself survives
a crash. A reader therefore sees the old file or the whole new one, never a part; after a
crash at most a `.tmp` file is left, never a truncated `path`.

Used by the results cache (records, lock owners), checkpoints (completeness markers), the
data layer (token arrays, shards), tokenizers and the benchmark's output.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Callable

from engine.faults import fault_point

TMP_SUFFIX = ".tmp"


def temp_name(path: Path) -> Path:
    """A temp file beside `path` that no other writer (process or thread) will pick."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}{TMP_SUFFIX}")


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable. A no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path | str, data: bytes | str | Callable[[BinaryIO], Any], *,
                 fault: str | None = None) -> None:
    """Replace `path` with `data` (bytes, text as UTF-8, or a function writing to a binary file).

    `fault` names an `engine.faults` kill point reached after the temp file is durable and
    before the rename (the fault tests kill the cache's writer there).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        with open(tmp, "xb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        if fault:
            fault_point(fault)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)  # gone after the rename; removes a failed write's debris


def atomic_write_json(path: Path | str, payload: Any, *, fault: str | None = None) -> None:
    """`payload` as indented JSON with sorted keys (NaN allowed, as the cache's records use it)."""
    atomic_write(path, json.dumps(payload, indent=1, sort_keys=True, allow_nan=True), fault=fault)

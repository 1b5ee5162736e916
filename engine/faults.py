"""Fault injection for the robustness tests: kill this process at a named point.

`QAT_FAULT="point:n"` (read when first needed, never at import) makes the n-th arrival
at `fault_point(point)` SIGKILL the process, as an OOM killer or a pre-empted cluster job
would. Points: `backward` (mid-step: gradients computed, no update yet), `step` (after an
optimiser step), `checkpoint` (checkpoint files written,
completeness marker not yet), `cache_write` (record's temp file written, not yet renamed),
`before_eval`. Unset in normal use: `fault_point` is then a dictionary lookup.

`QAT_FAULT_ONCE=/path/marker` makes the kill happen once across processes: the first process to
reach the point creates the marker and dies; later ones (a retried worker) pass. That is how the
executor tests kill a worker mid-run and check that its task is retried and completes.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "QAT_FAULT"
ONCE_ENV = "QAT_FAULT_ONCE"
_seen: Counter = Counter()


def _target() -> tuple[str, int] | None:
    spec = os.environ.get(ENV)
    if not spec:
        return None
    point, _, n = spec.partition(":")
    return point, int(n or 1)


def fault_point(point: str) -> None:
    target = _target()
    if target is None or target[0] != point:
        return
    _seen[point] += 1
    if _seen[point] == target[1]:
        marker = os.environ.get(ONCE_ENV)
        if marker:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return  # another process already died here
        os.kill(os.getpid(), signal.SIGKILL)

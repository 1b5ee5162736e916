"""What torch.compile did for one run, read from dynamo's own counters, and no silent eager fallback.

A long-lived worker trains many configurations (sizes, bit-widths, micro-batches) in one
process. Dynamo keeps at most `recompile_limit` (8) compiled variants per code object per
process and, past it, runs the function eager without an error: measured on CPU, a worker's
8th distinct configuration ran `GPT.forward` eager ("torch._dynamo hit config.recompile_limit
(8)") while its record said `compiled: true`, slower and with ~1.7x the activation memory.
Here:
- `begin_run(key)` resets dynamo when a run's configuration differs from the previous run's
  in this process (consecutive runs of one configuration, e.g. its seeds, reuse the graphs),
  so a run starts with at most its own variants: the full-precision graph, and the QAT graph
  that `set_qat` triggers mid-run for `qat_start > 0` (a planned recompile: 2 of the 8);
- the limit is made an error (`fail_on_recompile_limit_hit`): a run that would fall back to
  eager fails instead of recording a false "compiled";
- `CompileWatch` reads dynamo's counters (graphs compiled, graph breaks) and its timing
  metrics (`compilation_time_metrics`: the frame compiles, which include the forward graph,
  and the lazily compiled backward) before and after, so the record says what actually ran
  and training tokens/s can leave compile time out.

On a CPU, inductor builds each graph as C++: `check_compiler` refuses `--compile` there without a
C++ compiler, with one line before any run is locked (found in the first step, it was a long
traceback from deep inside dynamo, under the run's lock).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

_last_key: object = None
_graphs_at_reset = 0  # dynamo's unique_graphs counter (never reset by dynamo) when the caches were last cleared

# dynamo_timed keys that are whole compilations and never nested in one another: a frame's
# compile (its forward graph included) and the backward graph AOT autograd compiles on first use
_TOP_LEVEL_TIMINGS = ("_compile.compile_inner", "backward._backward_impl")


CXX_NAMES = ("c++", "g++", "clang++")  # a C++ compiler's usual names, where torch cannot say which it uses


def cpp_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend would build with ($CXX, else g++), or None if none runs."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # a torch without this (private) helper: look for the usual names
        names = [os.environ["CXX"]] if os.environ.get("CXX") else list(CXX_NAMES)
        return next((found for found in map(shutil.which, names) if found), None)
    try:
        return get_cpp_compiler()
    except Exception:  # noqa: BLE001 - InvalidCxxCompiler, or whatever the search raised: no compiler to use
        return None


def check_compiler(device: str | None, compile: bool | None) -> None:
    """ValueError (one line) if `compile` is requested for a CPU (`device` None: a CPU where no GPU is
    visible) and no C++ compiler can be found; call before any run is locked."""
    if not compile:
        return
    import torch

    kind = str(device or ("cuda" if torch.cuda.is_available() else "cpu")).split(":")[0]
    if kind == "cpu" and cpp_compiler() is None:
        raise ValueError("--compile on a CPU needs a C++ compiler (torch.compile builds its CPU kernels as C++) and "
                         f"none was found ($CXX={os.environ.get('CXX')!r}, else g++ on PATH): install one (e.g. "
                         "`apt-get install g++`) or point CXX at it, or leave --compile out")


def begin_run(key: object) -> "CompileWatch":
    """Prepare this process for a compiled run of configuration `key`; returns the run's watch."""
    global _last_key, _graphs_at_reset
    import torch._dynamo

    if key != _last_key:
        torch._dynamo.reset()
        _last_key, _graphs_at_reset = key, _snapshot()[0]
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    return CompileWatch.start()


def _snapshot() -> tuple[int, int, float]:
    from torch._dynamo.utils import compilation_time_metrics, counters

    seconds = sum(sum(compilation_time_metrics.get(k, ())) for k in _TOP_LEVEL_TIMINGS)
    breaks = sum(counters["graph_break"].values())
    return counters["stats"]["unique_graphs"], breaks, seconds


@dataclass
class CompileWatch:
    """Dynamo's counters at the start of a run; `seconds()` and `report()` give this run's share."""

    graphs0: int
    breaks0: int
    seconds0: float

    @classmethod
    def start(cls) -> "CompileWatch":
        return cls(*_snapshot())

    def seconds(self) -> float:
        """Seconds spent compiling since the run began (dynamo's own timings)."""
        return _snapshot()[2] - self.seconds0

    def report(self) -> dict:
        """What the run record keeps: compiled (some graph ran compiled), graphs compiled by this
        run, graph breaks (parts that ran eager), compile seconds."""
        graphs, breaks, seconds = _snapshot()
        new = graphs - self.graphs0
        # graphs compiled since the last reset are this configuration's: this run's, or kept from the
        # previous run of the same configuration and served from dynamo's cache
        return {"compiled": graphs - _graphs_at_reset > 0, "compile_graphs": new, "compile_graph_breaks": breaks - self.breaks0,
                "compile_s": seconds - self.seconds0}


def eager_report() -> dict:
    """The same fields for a run that was not compiled."""
    return {"compiled": False, "compile_graphs": 0, "compile_graph_breaks": 0, "compile_s": 0.0}

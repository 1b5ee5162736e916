"""The process a run lives in: device choice, process group, autocast, CPU threads.

Owns every decision about the machine, so the CLI, the training loops and the benchmark
make it the same way:
- `pick_device`: an explicit request is honoured (and refused clearly if CUDA is absent),
  else CUDA when visible, else CPU;
- `ensure_process_group`: DeepSpeed needs a torch.distributed process group even for one
  process. Unless QAT_DISTRIBUTED=1 asks for a multi-process launch, we create a world of one
  over an in-process store, whatever RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT the environment
  exports (no port, so concurrent runs never collide), gloo on CPU and nccl on CUDA. Done
  once per process, on first use, never at import;
- `autocast_for`: the forward's precision context, the device's default
  `engine.precision.Precision` (bf16 autocast on CUDA, fp32 on CPU) unless a run names one;
- the thread policy: `cpu_threads(workers)` shares the cores among `workers` processes
  (oversubscribed BLAS threads make every worker slower), `set_threads` applies it, and
  keeps freed activation buffers in the process heap (`keep_freed_memory`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
from pathlib import Path

import torch

log = logging.getLogger(__name__)


# --- device ---------------------------------------------------------------------------


DEVICE_HELP = "cpu, cuda or cuda:N"


def is_device_name(text: str) -> bool:
    """'cpu', 'cuda' or 'cuda:N': the devices a run trains on (torch also parses 'meta', 'mps', ...)."""
    kind, sep, index = text.partition(":")
    return kind == "cpu" and not sep or kind == "cuda" and (not sep or index.isdigit())


def pick_device(requested: str | None = None) -> torch.device:
    """The device to train on; ValueError naming the request and the fix if it cannot be had.

    Called by the CLI before the cache is touched, so a bad --device leaves no lock behind.
    """
    if requested:
        if not is_device_name(requested):
            raise ValueError(f"--device {requested!r} is not a training device; allowed: {DEVICE_HELP}")
        dev = torch.device(requested)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {requested!r} requested but CUDA is not available; use --device cpu")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {requested!r}: only {torch.cuda.device_count()} GPU(s) visible "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_for(device: torch.device, precision=None):
    """The forward's precision context: `precision`'s (an engine.precision.Precision), else the device default.

    The default is engine.precision.default_precision's, spelled out here so runtime stays a leaf module.
    """
    if precision is not None:
        return precision.autocast(device)
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --- CPU threads ----------------------------------------------------------------------


def cpu_threads(workers: int = 1) -> int:
    """Torch threads per process when `workers` processes share this machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def set_threads(threads: int | None = None, workers: int = 1) -> int:
    """Set torch's intra-op threads: `threads` if given, else this process's share of the cores."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"--threads {threads!r} must be an integer >= 1")
    n = threads or cpu_threads(workers)
    torch.set_num_threads(n)
    keep_freed_memory()
    return n


# glibc mallopt parameters (malloc.h): allocations above M_MMAP_THRESHOLD get their own mmap,
# and the heap top above M_TRIM_THRESHOLD is returned to the OS on free.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_ABOVE = 32 << 20  # glibc's documented maximum on 64-bit; a packed tiny step's largest tensor is ~4 MiB
_TRIM_ABOVE = 1 << 30


def keep_freed_memory() -> bool:
    """Serve large CPU tensors from the process heap instead of fresh mmaps (glibc only; True if set).

    torch's CPU allocator is plain malloc: every activation of more than glibc's mmap threshold
    (128 KiB, growing only as large blocks are freed) is a fresh mmap, zero-filled page by page
    on first touch and unmapped on free, so a tiny model's training step spends much of its
    time in page faults (measured: 3,500 faults per packed t20k step; 5-13 % of its time,
    `python -m engine bench` reports it). Raising both thresholds keeps freed blocks for reuse,
    as jemalloc/tcmalloc would, without preloading a library. Results are unchanged (it moves
    no arithmetic); memory stays at the step's peak instead of shrinking between steps.
    """
    import ctypes
    import ctypes.util

    if os.name != "posix" or not (name := ctypes.util.find_library("c")):
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_ABOVE)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_ABOVE))
    except (OSError, AttributeError):  # not glibc (musl, macOS): keep its default
        return False


_GLIBC_DEFAULT_THRESHOLD = 128 * 1024  # M_MMAP_THRESHOLD's and M_TRIM_THRESHOLD's initial value


def restore_malloc_defaults() -> bool:
    """glibc's initial thresholds back (fixed, no longer adaptive): the bench's 'before' allocator."""
    import ctypes
    import ctypes.util

    if os.name != "posix" or not (name := ctypes.util.find_library("c")):
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD))
    except (OSError, AttributeError):
        return False


# --- DeepSpeed's op builds ----------------------------------------------------------------

EXTENSIONS_ENV = "TORCH_EXTENSIONS_DIR"  # where torch (and DeepSpeed's op builder) compiles extensions


def _writable(path: Path) -> bool:
    """Whether `path` can be created or written: its nearest existing ancestor is a writable directory."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK)


def ensure_extensions_dir() -> Path:
    """The directory DeepSpeed builds its ops in; moved out of a read-only HOME before it is needed.

    torch builds extensions under $TORCH_EXTENSIONS_DIR, by default ~/.cache/torch_extensions; with
    a read-only HOME (a container, a shared account) that build fails with an error that names no
    fix. If the variable is unset and the default cannot be written, it is set to a per-user
    directory under the temp dir (a warning says so; set TORCH_EXTENSIONS_DIR to choose another).
    """
    if os.environ.get(EXTENSIONS_ENV):
        return Path(os.environ[EXTENSIONS_ENV])
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "torch_extensions"
    if _writable(default):
        return default
    import tempfile

    where = Path(tempfile.gettempdir()) / f"torch_extensions-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    where.mkdir(parents=True, exist_ok=True)
    os.environ[EXTENSIONS_ENV] = str(where)
    log.warning("%s is not writable (read-only HOME?): DeepSpeed builds its ops in %s instead; "
                "set %s to choose the directory", default, where, EXTENSIONS_ENV)
    return where


# --- process group ----------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free at the moment of asking (for a deliberate multi-process launch; a world of one needs none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DISTRIBUTED_ENV = "QAT_DISTRIBUTED"  # "1": a deliberate multi-process launch; take RANK/WORLD_SIZE/... as given
_WORLD_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def world_of_one_env(device: torch.device) -> dict[str, str]:
    """RANK/LOCAL_RANK/WORLD_SIZE for a one-process world computing on `device`.

    DeepSpeed places the module on `get_accelerator().set_device(LOCAL_RANK)`, whatever device
    the batches are on, so LOCAL_RANK must be the run's own device index: `cuda:3` -> 3. (A local
    worker sees only its GPU through CUDA_VISIBLE_DEVICES, engine.executors, so its device is
    cuda:0 and LOCAL_RANK 0 is that GPU.)
    """
    index = device.index if device.type == "cuda" and device.index is not None else 0
    return {"RANK": "0", "LOCAL_RANK": str(index), "WORLD_SIZE": "1"}


def ensure_process_group(device: torch.device) -> None:
    """A process group for DeepSpeed: a world of one, whatever the environment exports.

    Slurm and torchrun job templates export RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT; taken as
    given, `WORLD_SIZE=2` makes a lone run wait forever for a second rank (holding its cache
    lock) and a shared `MASTER_PORT` makes concurrent runs collide ("address already in use").
    Every run of this engine is one process, so the group is a world of one over an in-process
    store (`torch.distributed.HashStore`): no rendezvous, no port, nothing two runs on one
    machine could share. RANK/LOCAL_RANK/WORLD_SIZE are set to 0/<device index>/1 for this
    process (`world_of_one_env`), because DeepSpeed reads them (its device and logging rank); MASTER_ADDR/MASTER_PORT are left as
    they are and never used. A deliberate multi-process DeepSpeed launch sets QAT_DISTRIBUTED=1
    to have the exported variables taken as given (`deepspeed.init_distributed`, env://).
    Done once per process, on first use, never at import.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return
    ensure_extensions_dir()  # before DeepSpeed is imported: it may build ops
    import deepspeed

    backend = "nccl" if device.type == "cuda" else "gloo"
    quiet_deepspeed()
    if os.environ.get(DISTRIBUTED_ENV) != "1":
        world = world_of_one_env(device)
        if any(os.environ.get(k, v) != v for k, v in world.items()):
            exported = {k: os.environ[k] for k in _WORLD_VARS if k in os.environ}
            log.info("ignoring exported %s: each run is a world of one (set %s=1 for a multi-process launch)",
                     ", ".join(f"{k}={v}" for k, v in exported.items()), DISTRIBUTED_ENV)
        os.environ.update(world)
        if device.type == "cuda":
            torch.cuda.set_device(device)  # nccl and every later "cuda" tensor: this run's GPU
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    # DeepSpeed adopts an existing group; under QAT_DISTRIBUTED=1 it creates one from the environment
    deepspeed.init_distributed(dist_backend=backend, verbose=False)
    atexit.register(_destroy_process_group)
    log.debug("process group: %s, rank %d of %d", backend, dist.get_rank(), dist.get_world_size())


def _destroy_process_group() -> None:
    """Tear the group down before the interpreter does (registered at exit by ensure_process_group).

    A group left to interpreter teardown destroys gloo's worker threads unjoined: in a two-process
    world a process then sometimes aborts at exit ("terminate called without an active exception",
    SIGABRT) after its work is done and printed, and a launcher sees a failed rank. Measured on this
    machine (torch 2.13, 60 two-process launches each, tests/engine/test_runtime.py's script):
    7 of 120 processes aborted without this, 0 of 120 with it.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def quiet_deepspeed() -> None:
    # DeepSpeed logs its whole config at INFO for every engine; keep warnings only.
    from deepspeed.utils import logger as ds_logger

    ds_logger.setLevel(logging.WARNING)

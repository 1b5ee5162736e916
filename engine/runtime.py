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
  keeps freed activation buffers in the process heap (`keep_freed_memory`);
- DeepSpeed's op builds: `prepare_ops` compiles them once, before any run lock or worker, in
  the project's own extensions directory (`ensure_extensions_dir`), under a lock the kernel
  releases when its holder dies, so a killed build never blocks later runs or leaves a
  compiler running;
- `die_with_parent`: a worker process ends when the process that started it dies;
  `sigterm_as_interrupt`: SIGTERM unwinds like Ctrl-C, so executors stop what they started.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import sys
import time
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


THREADS_PER_CORE_MAX = 4  # more only adds contention: --threads 10000 once made 20,006 threads (load average 3,034)


def max_threads() -> int:
    """The most CPU threads a process may ask for on this machine (THREADS_PER_CORE_MAX per core)."""
    return THREADS_PER_CORE_MAX * (os.cpu_count() or 1)


def set_threads(threads: int | None = None, workers: int = 1) -> int:
    """Set torch's intra-op threads: `threads` if given, else this process's share of the cores."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"--threads {threads!r} must be an integer >= 1")
    if threads is not None and threads > max_threads():  # programmatic callers too (executors, the plugin)
        raise ValueError(f"--threads {threads} is more than {max_threads()} (4 per core on {os.cpu_count()} "
                         "core(s)): give fewer, or leave it out to use the cores")
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


def extensions_tag() -> str:
    """The build flavour a compiled op belongs to (Python and torch versions): one subdirectory each,
    so two environments sharing a home never rebuild over each other's ops."""
    return f"py{sys.version_info.major}{sys.version_info.minor}-torch{torch.__version__}"


def ensure_extensions_dir() -> Path:
    """The directory DeepSpeed builds its ops in: this project's own, set in $TORCH_EXTENSIONS_DIR.

    torch's default (~/.cache/torch_extensions) is shared by every program of the user, and any
    of them killed mid-build leaves a lock there that blocks our runs for good (`prepare_ops`
    can only vouch for builds it guards). So unless TORCH_EXTENSIONS_DIR is set (the user's
    choice wins), ops are built in <XDG_CACHE_HOME or ~/.cache>/qat-suite/torch_extensions/<tag>
    (`extensions_tag`); with a read-only HOME (a container, a shared account), where torch's
    build would fail with an error naming no fix, in a per-user directory under the temp dir (a
    warning says so). The variable is set for this process and the workers it starts.
    """
    if os.environ.get(EXTENSIONS_ENV):
        return Path(os.environ[EXTENSIONS_ENV])
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    where = home / "qat-suite" / "torch_extensions" / extensions_tag()
    if not _writable(where):
        import tempfile

        user = os.getuid() if hasattr(os, "getuid") else "user"
        fallback = Path(tempfile.gettempdir()) / f"qat-suite-torch_extensions-{user}-{extensions_tag()}"
        log.warning("%s is not writable (read-only HOME?): DeepSpeed builds its ops in %s instead; "
                    "set %s to choose the directory", where, fallback, EXTENSIONS_ENV)
        where = fallback
    where.mkdir(parents=True, exist_ok=True)
    os.environ[EXTENSIONS_ENV] = str(where)
    return where


OP_BUILD_TIMEOUT_S = 1800.0  # a cold build of the CPU comm op is ~1 min on 2 cores; CUDA ops take up to ~10
_WAIT_NOTICE_S = 10.0  # a wait for another process's build is logged after this long
_POLL_S = 0.2
GUARD_NAME = "qat-build.lock"  # beside torch's own `lock` in an op's build directory
BATON_NAME = "lock"  # torch.utils.cpp_extension's FileBaton: created by the builder, removed when it ends


class OpBuildError(OSError):
    """A DeepSpeed op could not be built (no compiler, a build still held elsewhere): one line, with the fix."""


def ops_to_build() -> list:
    """The DeepSpeed op builders our runs would JIT-compile on this process's accelerator.

    One, on CPU: `deepspeed.init_distributed` creates the comm backend, which loads the
    shared-memory collectives op (`deepspeed.comm.torch.build_shm_op`, "DeepSpeed
    deepspeed.ops.comm.deepspeed_shm_comm_op built successfully"), compiling it the first time.
    The condition is that function's. The client optimiser and precision settings make
    `deepspeed.initialize` build nothing else, and CUDA accelerators have no such op.
    """
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is None or not deepspeed.ops.__compatible_ops__.get(builder.NAME, False):
        return []
    return [builder]


def prepare_ops(timeout: float = OP_BUILD_TIMEOUT_S) -> list[str]:
    """Build (or load) the DeepSpeed ops our runs need, now, once per machine; their names.

    Called before any run lock is taken or any worker starts (the CLI's `train`, the sweep's
    preflight) and again by every process before DeepSpeed would build (`ensure_process_group`;
    loaded once, it is a dictionary lookup). A build left half-done by a killed process no
    longer blocks every later run: torch's own build lock (`lock` in the op's build directory,
    waited on with no timeout and no output by `FileBaton.wait`) is only ever taken while
    holding an OS file lock (`qat-build.lock` beside it), which the kernel releases when its
    holder dies, however it dies. So, holding that lock, a `lock` that no live process has open
    was left by a killed build and is removed (logged); one a live process holds (a build outside
    this project in a shared TORCH_EXTENSIONS_DIR) and another process's running build are waited
    on, up to `timeout` seconds, then OpBuildError names the lock file and how to clear it. The
    compiler (ninja and its compiler process groups) is stopped with the building process
    (`_compilers_stop_with_us`), so a killed build leaves nothing running.
    """
    where = ensure_extensions_dir()
    if not torch.cuda.is_available():
        # what DeepSpeed would detect anyway, without its warning on every process's terminal
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    quiet_deepspeed()
    built = []
    for builder in ops_to_build():
        if builder.name not in type(builder)._loaded_ops:
            build_dir = where / builder.name
            build_dir.mkdir(parents=True, exist_ok=True)
            with _build_guard(build_dir / GUARD_NAME, builder.name, timeout):
                _clear_stale_baton(build_dir / BATON_NAME, builder.name, timeout)
                with _compilers_stop_with_us():
                    try:
                        builder.load(verbose=False)
                    except (RuntimeError, ImportError) as e:
                        last = next((ln for ln in reversed(str(e).splitlines()) if ln.strip()), type(e).__name__)
                        raise OpBuildError(f"DeepSpeed's op {builder.name} failed to build in {build_dir} "
                                           f"({last.strip()}); a C++ compiler and ninja are needed "
                                           f"(set {EXTENSIONS_ENV} to build elsewhere)") from e
        built.append(builder.name)
    return built


@contextlib.contextmanager
def _build_guard(path: Path, name: str, timeout: float):
    """Hold an exclusive OS lock on `path` (flock: released by the kernel when its holder dies).

    The holder writes "pid host" into the file so that a waiter's messages can name it. Without
    fcntl (not POSIX) there is no guard: torch's own lock is then all there is.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # no O_TRUNC: a waiter must not erase the owner's name
    try:
        start = time.monotonic()
        noticed = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                owner = path.read_text(errors="replace").strip() or "unknown"
                if waited > timeout:
                    raise OpBuildError(
                        f"DeepSpeed's op {name} has been building in another process (pid host: {owner}) for over "
                        f"{timeout:g} s, holding {path}; wait for it, or stop it (if no build is running, delete "
                        f"{path.parent} and run again)") from None
                if not noticed and waited > _WAIT_NOTICE_S:
                    log.warning("waiting for another process (pid host: %s) to finish building DeepSpeed's op %s "
                                "(lock %s; up to %g s)", owner, name, path, timeout)
                    noticed = True
                time.sleep(_POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holders(path: Path) -> list[int]:
    """Pids of this machine's processes (those we may inspect) with `path` open (Linux /proc; [] elsewhere)."""
    target = str(path)
    found = []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # gone, or another user's
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    found.append(pid)
                    break
            except OSError:
                continue
    return found


def _clear_stale_baton(lock: Path, name: str, timeout: float) -> None:
    """Remove torch's build lock `lock` if no live process holds it open (its builder was killed);
    wait for one that is held, up to `timeout` s. Called holding the build guard."""
    start = time.monotonic()
    while lock.exists():
        holders = _holders(lock)
        if not holders:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            log.warning("removed %s, left by a killed build of DeepSpeed's op %s", lock, name)
            return
        if time.monotonic() - start > timeout:
            raise OpBuildError(f"{lock} (DeepSpeed's op {name}) has been held by pid(s) {holders} for over "
                               f"{timeout:g} s; stop that build, or delete {lock} if it is not building")
        time.sleep(_POLL_S)


# --- dying with the parent ------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send `sig` to this process when `parent` (its parent's pid) dies (Linux; True if set).

    A worker whose driver is SIGKILLed (or dies of an unhandled SIGTERM) would otherwise train on,
    re-parented to PID 1, for the rest of its run. The parent may have died before this call, when
    the kernel has nothing left to watch: then this process ends at once. (The signal follows
    the *thread* that started this process: the executors start their workers from the main
    thread.)
    """
    prctl = _prctl()
    if prctl is None or prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # orphaned before the kernel was told
        os.kill(os.getpid(), sig)
    return True


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Inside, SIGTERM raises KeyboardInterrupt as Ctrl-C does, so what unwinds (an executor's
    `finally`) stops the workers; SIGTERM's default would end this process alone. The previous
    handler is restored on exit. Only the main thread can handle signals: elsewhere a no-op."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


@contextlib.contextmanager
def _compilers_stop_with_us():
    """While torch builds an extension, its ninja gets SIGTERM when this process dies (PDEATHSIG),
    and when the build is interrupted here (Ctrl-C, SIGTERM), rather than SIGKILL.

    ninja runs each compiler in its own process group, out of reach of a signal to ours, and on
    SIGTERM passes the signal on to those groups and exits; a SIGKILLed ninja, or one whose
    parent died, would leave them compiling with parent PID 1. torch calls `subprocess.run` for
    ninja; its module's `subprocess` is swapped for the duration of the build.
    """
    import torch.utils.cpp_extension as cpp

    real = cpp.subprocess
    cpp.subprocess = _SubprocessStoppingWithUs(real)
    try:
        yield
    finally:
        cpp.subprocess = real


class _SubprocessStoppingWithUs:
    """The subprocess module, but `run` starts children that get SIGTERM when we die or are interrupted."""

    _STOP_WAIT_S = 30.0  # ninja, told to stop, waits for its compilers to exit

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)

    def run(self, command, *args, check: bool = False, **kwargs):
        sp, parent = self._module, os.getpid()
        prctl = _prctl()
        if isinstance(command, list) and command[:1] == ["ninja"]:
            command = [_ninja(), *command[1:]]

        def stop_with_parent():  # in the child, between fork and exec: no imports, no allocations
            if prctl is not None:
                prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            if os.getppid() != parent:
                os._exit(1)

        with sp.Popen(command, *args, preexec_fn=stop_with_parent, **kwargs) as proc:
            try:
                out, err = proc.communicate()
            except BaseException:  # interrupted: ninja passes SIGTERM on to its compilers
                proc.terminate()
                try:
                    proc.wait(self._STOP_WAIT_S)
                except sp.TimeoutExpired:
                    proc.kill()
                raise
        if check and proc.returncode:
            raise sp.CalledProcessError(proc.returncode, proc.args, output=out, stderr=err)
        return sp.CompletedProcess(proc.args, proc.returncode, out, err)


def _ninja() -> str:
    """The ninja next to this Python (pip's `ninja`, a dependency of DeepSpeed's builds) if there is one, else PATH's.

    One binary whatever PATH a process has: ninja 1.11 (/usr/bin) and 1.13 (the venv's) read
    each other's build log as stale, so processes started with and without the venv on PATH
    rebuilt the op in turn (seen in its .ninja_log: the two command hashes alternating, a
    1-2 minute build each time on 2 cores).
    """
    import shutil

    beside = Path(sys.executable).parent / "ninja"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else (shutil.which("ninja") or "ninja")


def _prctl():
    """libc's prctl (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


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
    prepare_ops()  # built (or waited for) under our guard: DeepSpeed's comm backend would wait unguarded
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

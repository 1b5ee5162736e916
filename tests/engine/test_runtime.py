"""engine.runtime: device choice, autocast, the CPU thread policy, the process group (a world of one)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

from engine import runtime


def test_pick_device_honours_requests_and_refuses_missing_cuda(monkeypatch):
    assert runtime.pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.pick_device(None) == torch.device("cpu")
    with pytest.raises(ValueError, match="'cuda:1'.*--device cpu"):
        runtime.pick_device("cuda:1")


@pytest.mark.filterwarnings("ignore:CUDA is not available")  # building the CUDA context on a CPU machine
def test_autocast_is_bf16_on_cuda_and_nothing_on_cpu():
    assert isinstance(runtime.autocast_for(torch.device("cpu")), contextlib.nullcontext)
    ctx = runtime.autocast_for(torch.device("cuda"))
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16


def test_cpu_threads_share_the_cores(monkeypatch):
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 8)
    assert [runtime.cpu_threads(w) for w in (1, 2, 3, 16, 0)] == [8, 4, 2, 1, 8]
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: None)
    assert runtime.cpu_threads() == 1


def test_set_threads_applies_and_returns_the_count(monkeypatch, one_thread):
    assert runtime.set_threads(2) == 2 and torch.get_num_threads() == 2
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 4)
    assert runtime.set_threads(None, workers=4) == 1 and torch.get_num_threads() == 1


def test_free_port_is_bindable():
    import socket

    port = runtime.free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))


# --- the process group: a world of one unless a multi-process launch is asked for ------------------

GROUP = """
import sys, torch, torch.distributed as dist
from engine.runtime import ensure_process_group
ensure_process_group(torch.device("cpu"))
t = torch.ones(1)
dist.all_reduce(t)
print("world", dist.get_world_size(), "rank", dist.get_rank(), "sum", int(t.item()))
"""


def _group(env: dict, **kw):
    import os
    import subprocess
    import sys

    env = {**os.environ, **env}
    if "QAT_DISTRIBUTED" not in env:
        env.pop("QAT_DISTRIBUTED", None)
    return subprocess.Popen([sys.executable, "-c", GROUP], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


@pytest.mark.slow
def test_exported_world_variables_give_a_world_of_one_that_never_waits(tmp_path):
    import socket

    with socket.socket() as busy:  # the exported MASTER_PORT is held by another process
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "10.255.255.1",
               "MASTER_PORT": str(busy.getsockname()[1])}
        procs = [_group(env) for _ in range(2)]  # two at once on one machine: nothing to collide on
        outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert "world 1 rank 0 sum 1" in out


@pytest.mark.slow
def test_a_deliberate_multi_process_launch_keeps_the_exported_world():
    port = str(runtime.free_port())
    procs = [_group({"QAT_DISTRIBUTED": "1", "WORLD_SIZE": "2", "RANK": str(r), "LOCAL_RANK": str(r),
                     "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}) for r in (0, 1)]
    outs = [p.communicate(timeout=120) for p in procs]
    for r, (p, (out, err)) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, err[-2000:]
        assert f"world 2 rank {r} sum 2" in out


@pytest.mark.slow
def test_the_process_group_is_destroyed_at_exit_not_left_to_interpreter_teardown():
    import subprocess
    import sys

    script = GROUP + "import atexit\natexit._run_exitfuncs()\nprint('after exit', dist.is_initialized())\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "world 1 rank 0 sum 1" in out.stdout and "after exit False" in out.stdout


# --- DeepSpeed's op builds: a killed build blocks nothing and leaves nothing running ---------------

LINUX = pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="prctl and /proc are Linux's")
HANG_GUARD_S = 900  # only a hang guard: each wait below ends on an event (an exit, a death, a compiler seen)
OP = "deepspeed_shm_comm"  # the op DeepSpeed builds on CPU (runtime.ops_to_build)


def _env(**extra) -> dict:
    import os

    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def _built_op_dir() -> Path:
    """The op's build directory in this machine's project extensions directory, built if it was not."""
    import subprocess
    import sys
    from pathlib import Path

    script = "from engine.runtime import ensure_extensions_dir, prepare_ops\nprepare_ops()\nprint(ensure_extensions_dir())"
    out = subprocess.run([sys.executable, "-c", script], env=_env(), capture_output=True, text=True,
                         timeout=HANG_GUARD_S)
    assert out.returncode == 0, out.stderr[-2000:]
    return Path(out.stdout.strip().splitlines()[-1]) / OP


def test_a_build_held_by_a_live_process_is_waited_for_then_named_with_the_fix(tmp_path):
    import fcntl
    import os

    guard = tmp_path / runtime.GUARD_NAME
    fd = os.open(guard, os.O_RDWR | os.O_CREAT)  # another open file: flock conflicts with it, as with another process
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(runtime.OpBuildError) as e, runtime._build_guard(guard, OP, timeout=0.5):
            pass  # entering must raise: the guard is held
    finally:
        os.close(fd)
    assert str(guard) in str(e.value) and "delete" in str(e.value)
    with runtime._build_guard(guard, OP, timeout=0.5):  # released (as by a holder's death): taken at once
        assert guard.read_text().split()[0] == str(os.getpid())  # the owner is named for waiters


@LINUX
def test_torch_build_lock_is_removed_only_when_no_live_process_holds_it(tmp_path):
    import os

    lock = tmp_path / runtime.BATON_NAME
    fd = os.open(lock, os.O_CREAT | os.O_EXCL)  # as torch's FileBaton holds it while building
    try:
        with pytest.raises(runtime.OpBuildError, match="held by pid"):
            runtime._clear_stale_baton(lock, OP, timeout=0.5)
        assert lock.exists()
    finally:
        os.close(fd)
    runtime._clear_stale_baton(lock, OP, timeout=0.5)  # its builder gone: stale, removed
    assert not lock.exists()


@pytest.mark.slow
def test_a_stale_build_lock_does_not_hang_the_next_run(tmp_path):
    """The lock a build killed by SIGKILL leaves (torch's FileBaton has no timeout) used to make
    every later run wait forever, silently, holding its run lock."""
    import shutil
    import subprocess
    import sys

    ext = tmp_path / "ext"
    shutil.copytree(_built_op_dir(), ext / OP, ignore=shutil.ignore_patterns("lock", ".ninja_lock", runtime.GUARD_NAME))
    (ext / OP / runtime.BATON_NAME).touch()  # what the killed build left
    cmd = [sys.executable, "-m", "engine", "train", "--size", "t10k", "--steps", "4", "--batch-tokens", "256",
           "--seq-len", "32", "--val-tokens", "256", "--threads", "1", "--quiet", "--cache-dir", str(tmp_path / "cache")]
    out = subprocess.run(cmd, env=_env(TORCH_EXTENSIONS_DIR=str(ext)), capture_output=True, text=True,
                         timeout=HANG_GUARD_S)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "trained and stored" in out.stdout
    assert not (ext / OP / runtime.BATON_NAME).exists() and "left by a killed build" in out.stderr


@LINUX
@pytest.mark.slow
def test_a_killed_build_leaves_no_compiler_running_and_the_next_build_completes(tmp_path):
    """Before: SIGKILL mid-build left ninja and both compilers running with parent PID 1, and the lock."""
    import subprocess
    import sys
    import time

    import psutil

    ext = tmp_path / "ext"
    build = [sys.executable, "-c", "from engine.runtime import prepare_ops\nprepare_ops()"]
    env = _env(TORCH_EXTENSIONS_DIR=str(ext))
    proc = subprocess.Popen(build, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def name(p) -> str:
        try:
            return p.name()
        except psutil.NoSuchProcess:  # short-lived (DeepSpeed's compiler probes): gone between listing and asking
            return ""

    start = time.monotonic()
    compilers: list = []
    while "ninja" not in (names := [name(p) for p in compilers]) or "cc1plus" not in names:  # compiling: kill it now
        assert proc.poll() is None, "the build ended before a compiler was seen"
        assert time.monotonic() - start < HANG_GUARD_S
        with contextlib.suppress(psutil.NoSuchProcess):
            compilers = psutil.Process(proc.pid).children(recursive=True)
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    _, alive = psutil.wait_procs(compilers, timeout=HANG_GUARD_S)
    assert not alive, f"still running after the build was killed: {alive}"
    assert (ext / OP / runtime.BATON_NAME).exists()  # as a killed build leaves it
    out = subprocess.run(build, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not (ext / OP / runtime.BATON_NAME).exists() and (ext / OP / f"{OP}.so").exists()


# --- workers die with their parent ------------------------------------------------------------------

ORPHAN = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import os, sys, time\\nfrom engine.runtime import die_with_parent\\n"
                          "die_with_parent(os.getppid())\\nprint('ready', flush=True)\\ntime.sleep(3600)"],
                         stdout=subprocess.PIPE, text=True)
assert child.stdout.readline() == "ready\\n"
print(child.pid, flush=True)
time.sleep(3600)
"""


@LINUX
@pytest.mark.slow
def test_a_process_dies_with_its_parent():
    import signal
    import subprocess
    import sys

    import psutil

    parent = subprocess.Popen([sys.executable, "-c", ORPHAN], env=_env(), stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(parent.stdout.readline()))  # the child is set up
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    _, alive = psutil.wait_procs([child], timeout=HANG_GUARD_S)
    for p in alive:
        p.kill()
    assert not alive


@LINUX
def test_a_process_whose_parent_is_already_gone_ends_at_once():
    import subprocess
    import sys

    # pid 1 is not this child's parent: as if its parent had died before die_with_parent was called
    out = subprocess.run([sys.executable, "-c", "from engine.runtime import die_with_parent\ndie_with_parent(1)\n"
                          "print('survived')"], env=_env(), capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert out.returncode == -9 and "survived" not in out.stdout

"""engine.runtime: device choice, autocast, the CPU thread policy, the process group (a world of one)."""

from __future__ import annotations

import contextlib

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

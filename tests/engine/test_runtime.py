"""engine.runtime: device choice, autocast, the CPU thread policy."""

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

"""engine.runlog: the loop state both training loops share (curve, probes, QAT switch, divergence)."""

from __future__ import annotations

import math

import torch

from engine.ladder import get_config
from engine.model import GPT
from engine.runlog import CURVE_POINTS, RunLog, check_every, probe_steps_of, stack_losses
from engine.spec import RunSpec


def test_flush_keeps_every_nth_step_and_the_last():
    spec = RunSpec(size="t10k", steps=2 * CURVE_POINTS + 2)  # curve_every = 2, last step odd
    r = RunLog.start(spec)
    assert r.curve_every == 2
    assert r.flush(stack_losses([torch.tensor(float(i)) for i in range(4)]), first=0) is None
    r.flush(torch.arange(4.0, spec.steps, dtype=torch.float32), first=4)
    steps = [s for s, _ in r.curve]
    assert steps[:3] == [0, 2, 4] and steps[-1] == spec.steps - 1 and steps[-2] == spec.steps - 2
    assert all(v == s for s, v in r.curve)


def test_flush_finds_the_first_non_finite_step_and_keeps_its_curve():
    r = RunLog.start(RunSpec(size="t10k", steps=10))
    window = torch.tensor([1.0, float("inf"), float("nan"), 2.0])
    assert r.flush(window, first=3) == 4 and r.diverged_step == 4
    assert [s for s, _ in r.curve] == [3, 4, 5, 6] and math.isinf(r.curve[1][1])


def test_columns_of_a_packed_window_flush_like_single_windows():
    pending = [torch.tensor([1.0, 2.0]), torch.tensor([float("nan"), 3.0])]  # (K,) per step
    window = stack_losses(pending)  # (n, K)
    a, b = RunLog.start(RunSpec(size="t10k", steps=2)), RunLog.start(RunSpec(size="t10k", steps=2, seed=1))
    assert (a.flush(window[:, 0], 0), b.flush(window[:, 1], 0)) == (1, None)
    assert b.curve == [(0, 2.0), (1, 3.0)]


def test_qat_switches_once_at_its_start_step():
    r = RunLog.start(RunSpec(size="t10k", steps=10, bits=6, qat_start=0.3))
    assert [r.qat_due(s) for s in (0, 2, 3)] == [False, False, True]
    r.qat_on = True
    assert not r.qat_due(5)
    fp16 = RunLog.start(RunSpec(size="t10k", steps=10, bits=16))
    assert not any(fp16.qat_due(s) for s in range(10))  # 16 bits: never quantised


def test_probes_measure_only_at_probe_steps():
    spec = RunSpec(size="t10k", steps=10, probe_fracs=(0.5,))
    r = RunLog.start(spec)
    assert probe_steps_of(spec) == {5: "probe", spec.warmdown_start: "pre_warmdown"}
    calls = []
    model = GPT(get_config("t10k"), 256)
    for step in range(10):
        r.probe(step, lambda: calls.append(step) or model)
    assert calls == sorted(probe_steps_of(spec)) and [p["step"] for p in r.probes] == calls
    assert {"int6_mean", "own_mean", "per_matrix", "label"} <= set(r.probes[0])


def test_loop_state_round_trip_resumes_where_it_stopped():
    r = RunLog.start(RunSpec(size="t10k", steps=10))
    r.flush(torch.tensor([3.0, 2.0]), first=0)
    r.qat_on = True
    state = r.loop_state(2)
    fresh = RunLog.start(r.spec)
    assert fresh.restore({**state, "curve": [list(c) for c in state["curve"]]}) == 2  # JSON-ish lists back to tuples
    assert (fresh.curve, fresh.probes, fresh.qat_on) == (r.curve, r.probes, True)


def test_losses_are_flushed_every_step_on_cpu_only():
    assert check_every(torch.device("cpu")) == 1 and check_every(torch.device("cuda")) > 1

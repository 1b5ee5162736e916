"""engine.runlog: the loop state both training loops share (curve, probes, QAT switch, divergence)."""

from __future__ import annotations

import math

import pytest
import torch

from engine.ladder import get_config
from engine.model import GPT
from engine.runlog import (CURVE_POINTS, RunLog, check_every, curve_every_of, curve_length, probe_steps_of,
                           stack_losses)
from engine.spec import RunSpec


def _flushed(steps: int, window: int = 25) -> RunLog:
    """A RunLog of a `steps`-step run after every loss was flushed (loss = step), in windows as on CUDA."""
    r = RunLog.start(RunSpec(size="t10k", steps=steps))
    for first in range(0, steps, window):
        assert r.flush(torch.arange(first, min(first + window, steps), dtype=torch.float32), first) is None
    return r


def test_flush_keeps_every_nth_step_and_the_last():
    spec = RunSpec(size="t10k", steps=2 * CURVE_POINTS - 1)  # curve_every = 2, last step even: on the grid
    r = RunLog.start(spec)
    assert r.curve_every == 2
    assert r.flush(stack_losses([torch.tensor(float(i)) for i in range(4)]), first=0) is None
    r.flush(torch.arange(4.0, spec.steps, dtype=torch.float32), first=4)
    steps = [s for s, _ in r.curve]
    assert steps[:3] == [0, 2, 4] and steps[-1] == spec.steps - 1 and len(steps) == CURVE_POINTS
    assert all(v == s for s, v in r.curve)


def test_a_2000_step_run_keeps_a_readable_curve_of_at_most_1000_points():
    r = _flushed(2000)  # only the flushes: nothing trains
    steps = [s for s, _ in r.curve]
    assert 64 < len(steps) <= 1000 == CURVE_POINTS
    assert steps[0] == 0 and steps[-1] == 1999 and steps == sorted(set(steps))
    assert r.curve_every == 3 and len(steps) == curve_length(2000, 3) == 668  # 0, 3, ..., 1998, and 1999
    assert all(v == s for s, v in r.curve)


@pytest.mark.parametrize("steps", [1, 2, 63, 64, 120, 999, 1000, 1001, 1999, 2000, 2002, 6000, 18000, 100_003])
def test_the_curve_is_as_dense_as_the_cap_allows(steps):
    every = curve_every_of(steps)
    assert curve_length(steps, every) <= CURVE_POINTS
    assert every == 1 or curve_length(steps, every - 1) > CURVE_POINTS  # the densest stride under the cap
    if steps <= 2 * CURVE_POINTS:  # flushing is cheap enough to check the count itself
        assert len(_flushed(steps).curve) == curve_length(steps, every)
    assert curve_every_of(1000) == 1 and curve_length(1000, 1) == 1000  # up to 1,000 steps: every step


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


def _trained_t10k(tmp_path):
    """A t10k model that beats a uniform guess on a small real-text corpus (40 Adam steps, ~1 s)."""
    from engine.data import batch_at, load_corpus, load_documents

    docs = tmp_path / "docs"
    docs.mkdir()
    for i, chapter in enumerate(load_documents("kjv")[:40]):
        (docs / f"{i:02d}.txt").write_text(chapter)
    corpus = load_corpus(f"text:{docs}", "byte", tmp_path / "data")
    torch.manual_seed(0)
    model = GPT(get_config("t10k"), corpus.vocab_size)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(40):
        x, y = batch_at(corpus.train, step, 8, 32, seed=0)
        model(x, y).backward()
        opt.step()
        opt.zero_grad()
    return model, corpus


def test_ok_records_carry_the_export_size(tmp_path):
    import time

    from engine.quant import CONTROL_PATTERNS
    from engine.runlog import result_record

    model, corpus = _trained_t10k(tmp_path)
    params = dict(model.named_parameters())
    mats = [params[n] for n in model.quantized_weight_names()]
    control = sum(p.numel() for n, p in params.items() if any(c in n for c in CONTROL_PATTERNS))
    emb = params["tok_emb.weight"].numel()
    records = {}
    for bits, extra in ((8, {}), (4, {}), (16, {}), (6, {"keep_float_numel": 65536})):
        spec = RunSpec(size="t10k", bits=bits, steps=40, batch_tokens=256, seq_len=32, val_tokens=1024, **extra)
        records[(bits, bool(extra))] = result_record(
            spec, model, corpus, torch.device("cpu"), {"n_params": sum(p.numel() for p in params.values())},
            curve=[(39, 2.0)], probes=[], probe_steps={}, diverged_step=None, train_time=1.0, t_start=time.time())
    r8, r4, r16, r6pg = (records[k] for k in ((8, False), (4, False), (16, False), (6, True)))
    assert r8["status"] == "ok"
    # the loop evaluates once, after the last step: one validation point at steps (updates completed)
    assert r8["val_curve"] == [(40, r8["val_bpb"])] and r8["loss_curve"] == [(39, 2.0)]
    stopped = result_record(spec, model, corpus, torch.device("cpu"), {"n_params": 1}, curve=[(0, float("nan"))],
                            probes=[], probe_steps={}, diverged_step=0, train_time=1.0, t_start=time.time())
    assert stopped["status"] == "diverged" and stopped["val_curve"] == []  # stopped before any evaluation
    # as stored: one byte per code (any bit-width), an fp16 scale per row, fp16 embedding, fp32 control tensors
    quantised = sum(w.numel() + 2 * w.shape[0] for w in mats) + 2 * emb + 4 * control
    assert r8["export_bytes"] == r4["export_bytes"] == quantised
    assert r16["export_bytes"] == r6pg["export_bytes"] == 2 * (sum(w.numel() for w in mats) + emb) + 4 * control
    # compressed as parameter-golf counts its artifact: fewer levels compress better
    assert 0 < r4["export_bytes_compressed"] < r8["export_bytes_compressed"] < r16["export_bytes_compressed"]
    # at t10k parameter-golf's 65,536-element threshold keeps every matrix float: no quantisation penalty
    assert r6pg["val_bpb_q"] == r16["val_bpb_q"] and r8["quant_penalty"] != 0

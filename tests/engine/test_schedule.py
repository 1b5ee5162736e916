"""Schedules: values at the boundaries of every shape."""

import math

import pytest

from engine.schedule import (decay_shape, in_restart_warmdown, in_warmdown, lr_factor, muon_momentum,
                             restart_lr_factor, warmdown_start)


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt"])
def test_shape_boundaries(shape):
    assert decay_shape(0.0, shape) == pytest.approx(1.0)
    assert decay_shape(1.0, shape) == pytest.approx(0.0, abs=1e-12)


def test_shape_midpoints():
    assert decay_shape(0.25, "linear") == pytest.approx(0.75)
    assert decay_shape(0.5, "cosine") == pytest.approx(0.5)
    assert decay_shape(0.25, "1-sqrt") == pytest.approx(0.5)


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt"])
def test_wsd_constant_then_decay(shape):
    total, warmdown = 100, 0.33
    start = warmdown_start(total, warmdown)
    assert start == 67
    assert lr_factor(start - 1, total, warmup_steps=0, warmdown=warmdown, shape=shape) == 1.0
    assert lr_factor(start, total, warmup_steps=0, warmdown=warmdown, shape=shape) == pytest.approx(1.0)
    last = lr_factor(total - 1, total, warmup_steps=0, warmdown=warmdown, shape=shape)
    assert 0 < last < 0.2  # never an LR-0 step, as parameter-golf
    assert not in_warmdown(start - 1, total, warmdown) and in_warmdown(start, total, warmdown)


def test_linear_last_step_is_one_over_n():
    # parameter-golf: (iterations - step) / warmdown_iters
    assert lr_factor(99, 100, warmup_steps=0, warmdown=0.5, shape="linear") == pytest.approx(1 / 50)


def test_warmup_then_constant():
    assert lr_factor(0, 100, warmup_steps=10, warmdown=0.2) == pytest.approx(0.1)
    assert lr_factor(9, 100, warmup_steps=10, warmdown=0.2) == pytest.approx(1.0)
    assert lr_factor(50, 100, warmup_steps=10, warmdown=0.2) == 1.0


def test_no_warmdown_and_full_warmdown():
    assert all(lr_factor(s, 50, warmup_steps=0, warmdown=0.0) == 1.0 for s in range(50))
    assert lr_factor(0, 50, warmup_steps=0, warmdown=1.0) == 1.0
    assert lr_factor(25, 50, warmup_steps=0, warmdown=1.0) == pytest.approx(0.5)


def test_cosine_to_zero():
    assert lr_factor(0, 100, warmup_steps=0, warmdown=0.0, schedule="cosine_to_zero") == 1.0
    assert lr_factor(50, 100, warmup_steps=0, warmdown=0.0, schedule="cosine_to_zero") == pytest.approx(0.5)


def test_errors():
    with pytest.raises(ValueError, match="outside"):
        lr_factor(100, 100, warmup_steps=0, warmdown=0.3)
    with pytest.raises(ValueError, match="unknown decay shape"):
        decay_shape(0.5, "exp")


def test_muon_momentum_warmup():
    assert muon_momentum(0, 0.85, 0.95, 500) == pytest.approx(0.85)
    assert muon_momentum(250, 0.85, 0.95, 500) == pytest.approx(0.90)
    assert muon_momentum(10_000, 0.85, 0.95, 500) == pytest.approx(0.95)
    assert math.isclose(muon_momentum(3, 0.85, 0.95, 0), 0.95)


def test_warmdown_longer_than_the_run_starts_part_way_down():
    # parameter-golf PR #61: WARMDOWN_ITERS 20000 in 12,200 steps => (iterations - step) / warmdown_iters
    total, warmdown = 12200, 20000 / 12200
    assert warmdown_start(total, warmdown) == 12200 - 20000
    assert lr_factor(0, total, warmup_steps=0, warmdown=warmdown) == pytest.approx(0.61)
    for step in (0, 5000, 12199):
        assert lr_factor(step, total, warmup_steps=0, warmdown=warmdown) == pytest.approx((total - step) / 20000)
    assert all(in_warmdown(s, total, warmdown) for s in (0, 6000))


def test_step_shape_is_the_abrupt_extreme():
    total, warmdown = 100, 0.4
    start = warmdown_start(total, warmdown)
    assert lr_factor(start - 1, total, warmup_steps=0, warmdown=warmdown, shape="step") == 1.0
    assert lr_factor(start, total, warmup_steps=0, warmdown=warmdown, shape="step") == 1.0
    floor = lr_factor(total - 1, total, warmup_steps=0, warmdown=warmdown, shape="linear")
    for step in range(start + 1, total):
        assert lr_factor(step, total, warmup_steps=0, warmdown=warmdown, shape="step") == pytest.approx(floor)
        # abrupt lies at or below the linear shape after the drop
        assert lr_factor(step, total, warmup_steps=0, warmdown=warmdown, shape="step") <= lr_factor(
            step, total, warmup_steps=0, warmdown=warmdown, shape="linear") + 1e-12
    # a warmdown longer than the run with the step shape sits at its floor from step 0
    assert lr_factor(0, total, warmup_steps=0, warmdown=2.0, shape="step") == pytest.approx(1 / 200)


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt", "step"])
def test_a_restart_differs_from_the_fused_run_only_before_qat(shape):
    # R2: fused = warmdown over the QAT phase; separate = an FP cooldown of the same length ending
    # where QAT starts, then the LR back at its peak, decaying exactly as the fused run's.
    total, q, warmdown = 100, 75, 0.25
    fused = [lr_factor(s, total, warmup_steps=0, warmdown=1 - q / total, shape=shape) for s in range(total)]
    sep = [restart_lr_factor(s, total, q, warmup_steps=0, warmdown=warmdown, shape=shape) for s in range(total)]
    assert sep[q:] == fused[q:] and sep[q] == 1.0
    assert sep[:50] == [1.0] * 50 == fused[:50]  # constant until the FP cooldown
    assert sep[50:q] == [lr_factor(s, q, warmup_steps=0, warmdown=25 / q, shape=shape) for s in range(50, q)]
    assert sep[q - 1] < 1.0 / 24 + 1e-12 and fused[q - 1] == 1.0  # cooled down to its floor / still at peak
    assert [in_restart_warmdown(s, total, q, warmdown) for s in (49, 50, 74, 75, 99)] == [False, True, True, True, True]


def test_a_restart_keeps_the_warmup_at_the_start_of_the_run_only():
    f = [restart_lr_factor(s, 100, 60, warmup_steps=10, warmdown=0.2) for s in range(100)]
    assert f[:10] == [pytest.approx((s + 1) / 10) for s in range(10)]
    assert f[10:40] == [1.0] * 30 and f[40] == 1.0 > f[41] and f[60] == 1.0

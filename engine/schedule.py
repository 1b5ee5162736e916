"""Learning-rate schedules as pure functions of the step.

`lr_factor` multiplies every base LR. WSD ("warmup-stable-decay", the parameter-golf
shape): linear warm-up, constant, then a warmdown over the last `warmdown` fraction of the
steps. As in parameter-golf the warmdown factor at its first step is 1 and at the last
step 1/n_decay (never 0: an update with LR 0 is wasted compute).

A warmdown longer than the run (`warmdown` > 1, R4: parameter-golf PR #61 ran WARMDOWN_ITERS
20000 in about 12,200 steps) starts before step 0: the run is the last `steps` of a
`warmdown x steps` warmdown, so its LR decays from step 0, starting part-way down (linear:
1 - (warmdown - 1) / warmdown of peak, 61 % for PR #61), exactly as parameter-golf's
`(iterations - step) / warmdown_iters`.

Shapes (R3 orders them from gradual to abrupt): cosine, linear, 1-sqrt, and "step", the
abrupt extreme: the LR drops at once, at the warmdown's first step, to the value the
linear warmdown ends at (1/n_decay of peak) and stays there.
"""

from __future__ import annotations

import math


def warmdown_start(total_steps: int, warmdown: float) -> int:
    """First step of the warmdown; `total_steps` when there is none, negative when `warmdown` > 1."""
    return total_steps - int(round(warmdown * total_steps))


def decay_shape(progress: float, shape: str) -> float:
    """Factor at `progress` in [0, 1] through the decay: 1 at 0, 0 at 1."""
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"decay progress {progress} outside [0, 1]")
    if shape == "linear":
        return 1.0 - progress
    if shape == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if shape == "1-sqrt":  # between linear and abrupt (Hagele et al.; R3)
        return 1.0 - math.sqrt(progress)
    if shape == "step":  # abrupt: everything after the first warmdown step sits at the floor
        return 1.0 if progress == 0.0 else 0.0
    raise ValueError(f"unknown decay shape {shape!r}; allowed: linear, cosine, 1-sqrt, step")


def lr_factor(
    step: int, total_steps: int, *, warmup_steps: int, warmdown: float, shape: str = "linear", schedule: str = "wsd"
) -> float:
    if not 0 <= step < total_steps:
        raise ValueError(f"step {step} outside [0, {total_steps})")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "cosine_to_zero":
        return decay_shape((step - warmup_steps) / max(1, total_steps - warmup_steps), "cosine")
    if schedule != "wsd":
        raise ValueError(f"unknown schedule {schedule!r}; allowed: wsd, cosine_to_zero")
    start = warmdown_start(total_steps, warmdown)
    if step < start:
        return 1.0
    n_decay = total_steps - start
    if shape == "step":
        # The floor is the linear warmdown's last value, never 0 (an LR-0 step is wasted). The
        # first warmdown step keeps its full LR only when the warmdown starts inside the run.
        return 1.0 if step == start else 1.0 / n_decay
    return decay_shape((step - start) / n_decay, shape)


def restart_lr_factor(step: int, total_steps: int, qat_step: int, *, warmup_steps: int, warmdown: float,
                      shape: str = "linear") -> float:
    """LR factor of a run whose schedule restarts when QAT starts at `qat_step` (R2's separate arm).

    Full-precision steps [0, qat_step): warm-up, constant, then a warmdown over the last
    round(warmdown x total_steps) of them (the FP cooldown). QAT steps [qat_step, total_steps): back
    at the peak at once, then a decay to the end in `shape`: exactly the LR a fused run (the
    warmdown is the QAT phase) has there, so the two arms differ only before QAT starts.
    """
    if not 0 <= step < total_steps:
        raise ValueError(f"step {step} outside [0, {total_steps})")
    if step < qat_step:  # warmdown as a fraction of the FP steps: the same number of warmdown steps
        return lr_factor(step, qat_step, warmup_steps=warmup_steps, warmdown=round(warmdown * total_steps) / qat_step,
                         shape=shape)
    return lr_factor(step - qat_step, total_steps - qat_step, warmup_steps=0, warmdown=1.0, shape=shape)


def restart_warmdown_start(total_steps: int, qat_step: int, warmdown: float) -> int:
    """First step of a restarting run's FP cooldown: round(warmdown x total_steps) steps before QAT starts."""
    return qat_step - int(round(warmdown * total_steps))


def in_restart_warmdown(step: int, total_steps: int, qat_step: int, warmdown: float) -> bool:
    """Whether `step` of a restarting run is cooling: in the FP warmdown or in the QAT decay after it."""
    return step >= restart_warmdown_start(total_steps, qat_step, warmdown)


def in_warmdown(step: int, total_steps: int, warmdown: float, schedule: str = "wsd") -> bool:
    return schedule == "cosine_to_zero" or step >= warmdown_start(total_steps, warmdown)


def muon_momentum(step: int, start: float, end: float, warmup_steps: int) -> float:
    """parameter-golf warms Muon's momentum linearly from `start` to `end`."""
    if warmup_steps <= 0:
        return end
    frac = min(step / warmup_steps, 1.0)
    return (1.0 - frac) * start + frac * end

"""Timing of seed packing: K single-run training steps one after another vs one packed step of K.

Owns `packed_speedup`, which a benchmark script calls. Every timed step is a whole training
step on the real corpus: `engine.train.Session.step` (schedule, batch, DeepSpeed forward /
backward / step) for each single run, `engine.packed.PackedSession.step` for the pack. The
single runs are also timed as the plain PyTorch loop of `engine.bench`, so the speed-up is
not credited with DeepSpeed's own per-step overhead. The three are timed in interleaved
rounds and the median round is reported, so load from other processes hits all alike.
"""

from __future__ import annotations

import statistics

import torch

from engine.bench import _time_steps, engine_step_fn, plain_step_fn
from engine.packed.loop import build_packed_session
from engine.runtime import pick_device
from engine.spec import FULL_PRECISION_BITS, RunSpec

WARMUP_STEPS = 3  # untimed: compile, allocator, first touch


def packed_speedup(size: str, k: int, steps: int, device: str | None = None, *, bits: int = FULL_PRECISION_BITS,
                   batch_tokens: int = 1024, seq_len: int = 64, rounds: int = 5) -> dict:
    """Seconds per step of K sequential single runs (DeepSpeed and plain) and of one pack of K.

    `speedup_vs_*` = (time of K single steps) / (time of one packed step): how many times
    faster the pack trains K runs than running them one after another in this process.
    """
    dev = pick_device(device)
    specs = [RunSpec(size=size, bits=bits, steps=1000, batch_tokens=batch_tokens, seq_len=seq_len, seed=s,
                     muon_momentum_warmup_steps=5) for s in range(k)]
    engines = [engine_step_fn(s, dev) for s in specs]
    plains = [plain_step_fn(s, dev) for s in specs]
    sess = build_packed_session(specs, dev)
    sess.packed.set_qat([bits] * k)  # as engine.bench's step functions switch QAT on from the start

    fns = {
        "deepspeed": lambda i: [fn(i) for fn in engines],
        "plain": lambda i: [fn(i) for fn in plains],
        "packed": sess.step,
    }
    for fn in fns.values():
        _time_steps(fn, WARMUP_STEPS, dev)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(_time_steps(fn, steps, dev))
    t_ds, t_plain, t_packed = (statistics.median(times[name]) for name in fns)
    return {
        "size": size, "k": k, "bits": bits, "steps": steps, "rounds": rounds, "batch_tokens": batch_tokens,
        "seq_len": seq_len, "device": str(dev), "threads": torch.get_num_threads(),
        "sequential_deepspeed_s_per_step": t_ds,  # K single steps through DeepSpeed (engine.train)
        "sequential_plain_s_per_step": t_plain,  # K single steps, plain PyTorch
        "packed_s_per_step": t_packed,  # one packed step of K
        "speedup_vs_deepspeed": t_ds / t_packed,
        "speedup_vs_plain": t_plain / t_packed,
    }

"""Timing of seed packing: K single-run training steps one after another vs one packed step of K.

Owns `packed_speedup`, which a benchmark script calls. Every timed step is a whole training
step as the loops take it (batch, forward, backward, optimiser, zero_grad) at the default
schedule's peak (QAT off), on synthetic tokens so no corpus is needed. The single-run side is
timed twice: through DeepSpeed, as engine.train.run steps, and as a plain torch loop with the
same optimiser, so the speed-up is not credited with DeepSpeed's own per-step overhead.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from engine.data import batch_at
from engine.distributed import ensure_process_group, pick_device
from engine.ladder import get_config
from engine.model import GPT
from engine.optim import apply_schedule, build_optimizer
from engine.packed import PackedGPT, build_packed_optimizer
from engine.spec import RunSpec

BENCH_VOCAB = 256  # the tiny ladder's byte vocabulary
BENCH_TOKENS = 1 << 20  # synthetic token stream the batches are cut from
WARMUP_STEPS = 3  # untimed: first-call allocations and lazy init


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _time_steps(step_fn, first: int, steps: int, dev: torch.device) -> float:
    """Seconds per call of step_fn(step) over steps first .. first + steps - 1."""
    _sync(dev)
    t = time.perf_counter()
    for s in range(first, first + steps):
        step_fn(s)
    _sync(dev)
    return (time.perf_counter() - t) / steps


def packed_speedup(size: str, k: int, steps: int, device: str | None = None,
                   batch_tokens: int = 1024, seq_len: int = 64, rounds: int = 3) -> dict:
    """Seconds per step of K sequential single runs (DeepSpeed and plain) and of one pack of K.

    The three are timed in interleaved rounds of `steps` steps each and the median round
    is reported, so load from other processes on a shared machine hits all three alike.
    `speedup_vs_*` = (K single steps) / (one packed step): how many times faster the pack
    trains K runs than running them one after another in this process.
    """
    import deepspeed

    dev = pick_device(device)
    ensure_process_group(dev)
    tokens = np.random.default_rng(0).integers(0, BENCH_VOCAB, BENCH_TOKENS).astype(np.int32)
    specs = [RunSpec(size=size, steps=1000, batch_tokens=batch_tokens, seq_len=seq_len, seed=s) for s in range(k)]
    cfg = get_config(size)

    def single_model(spec: RunSpec) -> GPT:
        torch.manual_seed(spec.seed)
        return GPT(cfg, BENCH_VOCAB).to(dev)

    def batch(spec: RunSpec, step: int):
        x, y = batch_at(tokens, step, spec.batch_seqs, seq_len, spec.seed)
        return x.to(dev), y.to(dev)

    # DeepSpeed engines, configured as engine.train.run configures them
    engines = []
    for spec in specs:
        model = single_model(spec)
        opt = build_optimizer(model, spec, ns_on_cuda=dev.type == "cuda")
        apply_schedule(opt, 1.0, spec.muon_momentum, spec.beta2)
        ds_config = {"train_micro_batch_size_per_gpu": spec.batch_seqs, "gradient_accumulation_steps": 1,
                     "gradient_clipping": 0.0, "zero_optimization": {"stage": 0},
                     "steps_per_print": 2**31 - 1, "wall_clock_breakdown": False}
        engines.append(deepspeed.initialize(model=model, optimizer=opt, config=ds_config)[0])

    def ds_step(step: int) -> None:
        for spec, eng in zip(specs, engines):
            loss = eng(*batch(spec, step))
            eng.backward(loss)
            eng.step()

    plain = []
    for spec in specs:
        model = single_model(spec)
        opt = build_optimizer(model, spec, ns_on_cuda=dev.type == "cuda")
        apply_schedule(opt, 1.0, spec.muon_momentum, spec.beta2)
        plain.append((model, opt))

    def plain_step(step: int) -> None:
        for spec, (model, opt) in zip(specs, plain):
            model(*batch(spec, step)).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    packed = PackedGPT.from_models([single_model(s) for s in specs])
    popt = build_packed_optimizer(packed, specs, ns_on_cuda=dev.type == "cuda")
    popt.apply_schedule([1.0] * k, [s.muon_momentum for s in specs], [s.beta2 for s in specs])

    def packed_step(step: int) -> None:
        xs, ys = zip(*(batch_at(tokens, step, s.batch_seqs, seq_len, s.seed) for s in specs))
        packed(torch.stack(xs).to(dev), torch.stack(ys).to(dev)).sum().backward()
        popt.step()
        popt.zero_grad()

    fns = {"ds": ds_step, "plain": plain_step, "packed": packed_step}
    for fn in fns.values():
        for s in range(WARMUP_STEPS):
            fn(s)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        for name, fn in fns.items():
            times[name].append(_time_steps(fn, WARMUP_STEPS + r * steps, steps, dev))
    t_ds, t_plain, t_packed = (statistics.median(times[name]) for name in fns)
    return {
        "size": size, "k": k, "steps": steps, "rounds": rounds, "batch_tokens": batch_tokens, "seq_len": seq_len,
        "device": str(dev), "threads": torch.get_num_threads(),
        "sequential_deepspeed_s_per_step": t_ds,  # K single steps through DeepSpeed
        "sequential_plain_s_per_step": t_plain,  # K single steps, plain torch
        "packed_s_per_step": t_packed,  # one packed step of K
        "speedup_vs_deepspeed": t_ds / t_packed,
        "speedup_vs_plain": t_plain / t_packed,
    }

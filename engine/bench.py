"""`python -m engine bench`: the engine's step against plain PyTorch, side by side in one process.

Figures (all per training step, medians over interleaved repeats so drift hits both sides):
- overhead: the engine's step (`engine.train.Session.step`: schedule, batch, DeepSpeed
  forward/backward/step) vs a minimal PyTorch loop of the same model, batch, optimiser and
  precision; target ratio <= 1.05;
- throughput per ladder size: tokens/s and model FLOP/s (6 N T + attention, as
  `engine.design.estimate_flops`), MFU over the device's bf16 peak where known;
- QAT cost: step time at each bit-width over the FP16 step;
- Muon vs AdamW step time.
Writes `<out>/bench-<device>.json` and prints a short table.
"""

from __future__ import annotations

import json
import platform
import statistics
import time

import torch

from engine.atomic import atomic_write
from engine.design import estimate_flops
from engine.runtime import autocast_for, pick_device, set_threads
from engine.spec import FULL_PRECISION_BITS, RunSpec

# Dense bf16 peaks (no sparsity) by device-name fragment, in FLOP/s.
BF16_PEAK = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}


def device_peak(dev: torch.device) -> float | None:
    if dev.type != "cuda":
        return None
    name = torch.cuda.get_device_name(dev)
    return next((v for k, v in BF16_PEAK.items() if k in name), None)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _time_steps(fn, n: int, dev: torch.device) -> float:
    _sync(dev)
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    _sync(dev)
    return (time.perf_counter() - t) / n


def plain_step_fn(spec: RunSpec, dev: torch.device):
    """The reference: same model init, optimiser, batches and autocast; no DeepSpeed, no loop extras."""
    from engine.data import batch_at, load_corpus
    from engine.ladder import get_config
    from engine.model import GPT
    from engine.optim import build_optimizer
    from engine.paths import data_dir

    corpus = load_corpus(spec.data, spec.tokenizer, data_dir())
    torch.manual_seed(spec.seed)
    model = GPT(get_config(spec.size), corpus.vocab_size).to(dev)
    model.set_qat(spec.bits)
    opt = build_optimizer(model, spec, ns_on_cuda=dev.type == "cuda")
    fwd = torch.compile(model) if dev.type == "cuda" else model

    def step(i: int) -> None:
        x, y = batch_at(corpus.train, i, spec.batch_seqs, spec.seq_len, spec.seed)
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        with autocast_for(dev):
            loss = fwd(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def engine_step_fn(spec: RunSpec, dev: torch.device):
    from engine.train import build_session

    sess = build_session(spec, dev)
    sess.model.set_qat(spec.bits)
    return lambda i: sess.step(i)


def measure(spec: RunSpec, dev: torch.device, steps: int, repeats: int, with_plain: bool) -> dict:
    eng = engine_step_fn(spec, dev)
    plain = plain_step_fn(spec, dev) if with_plain else None
    for fn in filter(None, (eng, plain)):  # warm-up: compile, allocator, first-touch
        _time_steps(fn, 3, dev)
    t_eng, t_plain = [], []
    for _ in range(repeats):
        t_eng.append(_time_steps(eng, steps, dev))
        if plain:
            t_plain.append(_time_steps(plain, steps, dev))
    step_s = statistics.median(t_eng)
    out = {"size": spec.size, "bits": spec.bits, "optimizer": spec.optimizer, "step_s": step_s,
           "tokens_per_s": spec.batch_tokens / step_s,
           "model_flops_per_s": estimate_flops(spec) / spec.steps / step_s}
    if plain:
        out["plain_step_s"] = statistics.median(t_plain)
        out["overhead_ratio"] = step_s / out["plain_step_s"]
    return out


def main(args) -> int:
    dev = pick_device(args.device)
    threads = set_threads(getattr(args, "threads", None))
    cpu = dev.type == "cpu"
    base = dict(steps=1000, seq_len=64 if cpu else 1024, batch_tokens=1024 if cpu else 65536,
                tokenizer="byte" if cpu else "sp1024", muon_momentum_warmup_steps=5)
    sizes = [s for s in args.sizes.split(",") if s]
    peak = device_peak(dev)
    rows: dict[str, list] = {"throughput": [], "qat": [], "optimizer": []}
    for size in sizes:
        r = measure(RunSpec(size=size, bits=FULL_PRECISION_BITS, **base), dev, args.steps, args.repeats, with_plain=True)
        r["mfu"] = r["model_flops_per_s"] / peak if peak else None
        rows["throughput"].append(r)
    mid = sizes[len(sizes) // 2]
    fp16 = next(r for r in rows["throughput"] if r["size"] == mid)["step_s"]
    for bits in (8, 6, 5, 4):
        r = measure(RunSpec(size=mid, bits=bits, **base), dev, args.steps, args.repeats, with_plain=False)
        r["qat_over_fp16"] = r["step_s"] / fp16
        rows["qat"].append(r)
    for opt in ("muon", "adamw"):
        rows["optimizer"].append(measure(RunSpec(size=mid, optimizer=opt, **base), dev, args.steps, args.repeats,
                                         with_plain=False))
    dev_name = torch.cuda.get_device_name(dev) if not cpu else f"cpu {platform.processor() or platform.machine()}"
    report = {"device": dev_name, "threads": threads, "torch": torch.__version__, "peak_bf16_flops": peak,
              "steps_per_repeat": args.steps, "repeats": args.repeats, "spec_base": base, **rows}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench-{'cpu' if cpu else 'cuda'}.json"
    atomic_write(path, json.dumps(report, indent=1))
    print(f"device {dev_name}, {threads} thread(s), batch {base['batch_tokens']} tokens x seq {base['seq_len']}")
    print(f"{'size':>6} {'engine ms':>10} {'plain ms':>9} {'ratio':>6} {'tok/s':>10} {'GFLOP/s':>8} {'MFU':>6}")
    for r in rows["throughput"]:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        print(f"{r['size']:>6} {r['step_s'] * 1e3:>10.2f} {r['plain_step_s'] * 1e3:>9.2f} {r['overhead_ratio']:>6.3f} "
              f"{r['tokens_per_s']:>10,.0f} {r['model_flops_per_s'] / 1e9:>8.2f} {mfu:>6}")
    print("QAT step time over FP16 at " + mid + ": " + ", ".join(
        f"int{r['bits']} {r['qat_over_fp16']:.3f}" for r in rows["qat"]))
    m, a = rows["optimizer"]
    print(f"Muon {m['step_s'] * 1e3:.2f} ms vs AdamW {a['step_s'] * 1e3:.2f} ms per step at {mid} "
          f"(ratio {m['step_s'] / a['step_s']:.3f})")
    print(f"written: {path}")
    return 0

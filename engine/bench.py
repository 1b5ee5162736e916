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

import contextlib
import json
import platform
import statistics
import sys
import time

import torch

from engine.atomic import atomic_write
from engine.design import estimate_flops
from engine.precision import Precision, resolve_precision
from engine.runtime import pick_device, set_threads
from engine.spec import FULL_PRECISION_BITS, RunSpec

WARMUP_STEPS = 3  # untimed: compile, allocator, first touch

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


def plain_step_fn(spec: RunSpec, dev: torch.device, precision: Precision | None = None):
    """The reference: same model init, optimiser, batches and precision; no DeepSpeed, no loop extras."""
    from engine.data import batch_at, load_corpus
    from engine.ladder import get_config
    from engine.model import GPT
    from engine.optim import build_optimizer
    from engine.paths import data_dir

    precision = precision or resolve_precision(dev)
    corpus = load_corpus(spec.data, spec.tokenizer, data_dir())
    torch.manual_seed(spec.seed)
    model = GPT(get_config(spec.size), corpus.vocab_size).to(dev)
    model.set_qat(spec.bits)
    opt = build_optimizer(model, spec, ns_dtype=precision.ns_dtype)
    fwd = precision.maybe_compile(model)

    def step(i: int) -> None:
        x, y = batch_at(corpus.train, i, spec.batch_seqs, spec.seq_len, spec.seed)
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        with precision.autocast(dev):
            loss = fwd(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def engine_step_fn(spec: RunSpec, dev: torch.device, precision: Precision | None = None):
    from engine.train import build_session

    sess = build_session(spec, dev, precision=precision)
    sess.model.set_qat(spec.bits)
    return lambda i: sess.step(i)


def measure(spec: RunSpec, dev: torch.device, steps: int, repeats: int, with_plain: bool,
            precision: Precision | None = None) -> dict:
    eng = engine_step_fn(spec, dev, precision)
    plain = plain_step_fn(spec, dev, precision) if with_plain else None
    for fn in filter(None, (eng, plain)):  # warm-up: compile, allocator, first-touch
        _time_steps(fn, WARMUP_STEPS, dev)
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


# --- step breakdown -------------------------------------------------------------------


class Phases:
    """Seconds spent per named phase of a step, summed over the timed steps."""

    def __init__(self, dev: torch.device):
        self.dev, self.seconds, self.steps = dev, {}, 0

    @contextlib.contextmanager
    def __call__(self, name: str):
        _sync(self.dev)
        t = time.perf_counter()
        try:
            yield
        finally:
            _sync(self.dev)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t

    def timed(self, name: str, fn):
        def wrapper(*args, **kwargs):
            with self(name):
                return fn(*args, **kwargs)
        return wrapper

    def per_step_ms(self) -> dict[str, float]:
        return {k: v / max(self.steps, 1) * 1e3 for k, v in self.seconds.items()}


@contextlib.contextmanager
def _patched(obj, name: str, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _timed_optimizers(ph: Phases, optimizers) -> contextlib.ExitStack:
    """Time each child optimiser's step under its class name (instance attributes, undone on exit)."""
    stack = contextlib.ExitStack()
    for o in optimizers:
        stack.enter_context(_patched(o, "step", ph.timed(f"optimizer {type(o).__name__}", o.step)))
    return stack


def breakdown_single(spec: RunSpec, dev: torch.device, steps: int, precision: Precision | None = None) -> dict:
    """engine.train.Session.step taken apart: ms per step in each phase (fake quant is inside forward)."""
    import engine.model
    from engine.data import batch_at
    from engine.optim import apply_schedule
    from engine.train import build_session, schedule_at

    sess = build_session(spec, dev, precision=precision)
    sess.model.set_qat(spec.bits)
    ph = Phases(dev)
    with _timed_optimizers(ph, sess.optimizer.optimizers), \
            _patched(engine.model, "fake_quantize", ph.timed("  fake quantisation (in forward)", engine.model.fake_quantize)):
        for i in range(WARMUP_STEPS + steps):
            if i == WARMUP_STEPS:
                ph.seconds.clear()
            with ph("schedule"):
                apply_schedule(sess.optimizer, *schedule_at(spec, i))
            with ph("batch"):
                x, y = batch_at(sess.corpus.train, i, spec.batch_seqs, spec.seq_len, spec.seed)
                x, y = x.to(dev), y.to(dev)
            with ph("forward"), sess.precision.autocast(dev):
                loss = sess.forward(x, y)
            with ph("backward (DeepSpeed)"):
                sess.ds_engine.backward(loss)
            with ph("DeepSpeed step (incl. optimizers)"):
                sess.ds_engine.step()
    ph.steps = steps
    out = ph.per_step_ms()
    opt_ms = sum(v for k, v in out.items() if k.startswith("optimizer"))
    out["DeepSpeed step wrapper (step - optimizers)"] = out.pop("DeepSpeed step (incl. optimizers)") - opt_ms
    return {"size": spec.size, "bits": spec.bits, "k": 1, "ms_per_step": out}


def breakdown_packed(specs: list[RunSpec], dev: torch.device, steps: int, precision: Precision | None = None) -> dict:
    """engine.packed.PackedSession.step taken apart, as breakdown_single."""
    import engine.packed.model as pm
    from engine.data import batch_at
    from engine.packed.loop import build_packed_session
    from engine.train import schedule_at

    sess = build_packed_session(specs, dev, precision=precision)
    sess.packed.set_qat([s.bits for s in specs])
    ph = Phases(dev)
    with _timed_optimizers(ph, sess.optimizer.optimizers), \
            _patched(pm, "packed_fake_quantize", ph.timed("  fake quantisation (in forward)", pm.packed_fake_quantize)):
        for i in range(WARMUP_STEPS + steps):
            if i == WARMUP_STEPS:
                ph.seconds.clear()
            with ph("schedule"):
                sess.optimizer.apply_schedule(*zip(*(schedule_at(s, i) for s in specs)))
            with ph("batch"):
                b = [batch_at(sess.corpus.train, i, s.batch_seqs, s.seq_len, s.seed) for s in specs]
                x, y = torch.stack([t[0] for t in b]).to(dev), torch.stack([t[1] for t in b]).to(dev)
            with ph("forward"), sess.precision.autocast(dev):
                losses = sess.forward(x, y)
            with ph("backward"):
                losses.sum().backward()
            sess.optimizer.step()
            with ph("zero_grad"):
                sess.optimizer.zero_grad()
    ph.steps = steps
    return {"size": specs[0].size, "bits": specs[0].bits, "k": len(specs), "ms_per_step": ph.per_step_ms()}


# --- packed throughput and the allocator ------------------------------------------------------


def packed_throughput(size: str, k: int, base: dict, dev: torch.device, steps: int, repeats: int,
                      precision: Precision | None = None, bits: int = 6) -> dict:
    """Tokens/s per core of one pack of k (as the suite trains, QAT on) against one plain single run.

    Interleaved rounds, and in each round the pack runs once with the heap kept
    (engine.runtime.keep_freed_memory, the engine's setting) and once with glibc's default
    thresholds (the engine before it), so the allocator's share is measured side by side.
    """
    from engine.packed.loop import build_packed_session
    from engine.runtime import keep_freed_memory, restore_malloc_defaults

    specs = [RunSpec(size=size, bits=bits, seed=s, **base) for s in range(k)]
    sess = build_packed_session(specs, dev, precision=precision)
    sess.packed.set_qat([bits] * k)
    plain = plain_step_fn(specs[0], dev, precision)
    t0 = time.perf_counter()
    _time_steps(sess.step, WARMUP_STEPS, dev)  # compiles here when asked
    first_s = time.perf_counter() - t0
    _time_steps(plain, WARMUP_STEPS, dev)
    times: dict[str, list[float]] = {"packed": [], "packed_default_malloc": [], "single_plain": []}
    for _ in range(repeats):
        kept = keep_freed_memory()
        times["packed"].append(_time_steps(sess.step, steps, dev))
        times["single_plain"].append(_time_steps(plain, steps, dev))
        if kept and restore_malloc_defaults():
            times["packed_default_malloc"].append(_time_steps(sess.step, steps, dev))
    keep_freed_memory()
    med = {name: statistics.median(v) for name, v in times.items() if v}
    threads = torch.get_num_threads()
    tok = base["batch_tokens"]
    out = {"size": size, "k": k, "bits": bits, "threads": threads, "warmup_s": first_s,
           "packed_s_per_step": med["packed"], "single_plain_s_per_step": med["single_plain"],
           "packed_tokens_per_s_per_core": k * tok / med["packed"] / threads,
           "single_plain_tokens_per_s_per_core": tok / med["single_plain"] / threads,
           "packed_over_single_plain": (k * med["single_plain"]) / med["packed"]}
    if "packed_default_malloc" in med:
        out["packed_default_malloc_s_per_step"] = med["packed_default_malloc"]
        out["allocator_speedup"] = med["packed_default_malloc"] / med["packed"]
    return out


def _baseline(path) -> dict | None:
    """The figures recorded before this engine's speed work (kept in the JSON, see reports/bench/README.md)."""
    try:
        return json.loads(path.read_text()).get("baseline")
    except (OSError, ValueError, AttributeError):
        return None


# --- main -------------------------------------------------------------------------------------


def main(args) -> int:
    dev = pick_device(args.device)
    threads = set_threads(getattr(args, "threads", None))
    precision = resolve_precision(dev, getattr(args, "precision", None), getattr(args, "compile", None))
    cpu = dev.type == "cpu"
    base = dict(steps=1000, seq_len=64 if cpu else 1024, batch_tokens=1024 if cpu else 65536,
                tokenizer="byte" if cpu else "sp1024", muon_momentum_warmup_steps=5)
    sizes = [s for s in args.sizes.split(",") if s]
    k = getattr(args, "pack", None) or tiny_pack()
    peak = device_peak(dev)
    out_path = args.out / f"bench-{'cpu' if cpu else 'cuda'}.json"
    baseline = _baseline(out_path)
    rows: dict[str, list] = {"throughput": [], "packed": [], "breakdown": [], "qat": [], "optimizer": []}
    for size in sizes:
        r = measure(RunSpec(size=size, bits=FULL_PRECISION_BITS, **base), dev, args.steps, args.repeats,
                    with_plain=True, precision=precision)
        r["mfu"] = r["model_flops_per_s"] / peak if peak else None
        rows["throughput"].append(r)
        rows["packed"].append(packed_throughput(size, k, base, dev, args.steps, args.repeats, precision))
    mid = sizes[0]
    rows["breakdown"].append(breakdown_single(RunSpec(size=mid, bits=6, **base), dev, args.steps * args.repeats, precision))
    rows["breakdown"].append(breakdown_packed([RunSpec(size=mid, bits=6, seed=s, **base) for s in range(k)], dev,
                                              args.steps * args.repeats, precision))
    if not getattr(args, "quick", False):
        fp16 = rows["throughput"][0]["step_s"]
        for bits in (8, 6, 5, 4):
            r = measure(RunSpec(size=mid, bits=bits, **base), dev, args.steps, args.repeats, with_plain=False,
                        precision=precision)
            r["qat_over_fp16"] = r["step_s"] / fp16
            rows["qat"].append(r)
        for opt in ("muon", "adamw"):
            rows["optimizer"].append(measure(RunSpec(size=mid, optimizer=opt, **base), dev, args.steps, args.repeats,
                                             with_plain=False, precision=precision))
    dev_name = torch.cuda.get_device_name(dev) if not cpu else f"cpu {platform.processor() or platform.machine()}"
    report = {"command": "python -m engine " + " ".join(sys.argv[1:] if "bench" in sys.argv else ["bench"]),
              "device": dev_name, "threads": threads, "torch": torch.__version__, "peak_bf16_flops": peak,
              **precision.describe(), "pack": k, "steps_per_repeat": args.steps, "repeats": args.repeats,
              "spec_base": base, **rows, "baseline": baseline}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(out_path, json.dumps(report, indent=1))
    print_report(report)
    print(f"written: {out_path}")
    return 0


def print_report(report: dict) -> None:
    base = report["spec_base"]
    print(f"device {report['device']}, {report['threads']} thread(s), {report['precision']}"
          f"{' compiled' if report['compiled'] else ''}, batch {base['batch_tokens']} tokens x seq {base['seq_len']}")
    print(f"{'size':>6} {'engine ms':>10} {'plain ms':>9} {'ratio':>6} {'tok/s':>10} {'GFLOP/s':>8} {'MFU':>6}")
    for r in report["throughput"]:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        print(f"{r['size']:>6} {r['step_s'] * 1e3:>10.2f} {r['plain_step_s'] * 1e3:>9.2f} {r['overhead_ratio']:>6.3f} "
              f"{r['tokens_per_s']:>10,.0f} {r['model_flops_per_s'] / 1e9:>8.2f} {mfu:>6}")
    old = {r["size"]: r for r in ((report.get("baseline") or {}).get("packed") or [])}
    print(f"packed (K={report['pack']}, int6 QAT on), tokens/s per core; 'before' = the recorded baseline:")
    print(f"{'size':>6} {'packed':>10} {'single':>10} {'pack/single':>11} {'malloc x':>8} {'before':>10} {'now/before':>10}")
    for r in report["packed"]:
        before = old.get(r["size"], {}).get("packed_tokens_per_s_per_core")
        print(f"{r['size']:>6} {r['packed_tokens_per_s_per_core']:>10,.0f} {r['single_plain_tokens_per_s_per_core']:>10,.0f} "
              f"{r['packed_over_single_plain']:>11.2f} {r.get('allocator_speedup', float('nan')):>8.2f} "
              + (f"{before:>10,.0f} {r['packed_tokens_per_s_per_core'] / before:>10.2f}" if before else f"{'n/a':>10}"))
    for b in report["breakdown"]:
        ms = b["ms_per_step"]
        total = sum(v for name, v in ms.items() if not name.startswith(" "))
        print(f"step breakdown {b['size']} int{b['bits']} K={b['k']}: {total:.2f} ms/step")
        for name, v in sorted(ms.items(), key=lambda kv: -kv[1]):
            print(f"  {name:<44} {v:>8.3f} ms {v / total:>6.1%}")
    if report["qat"]:
        print("QAT step time over FP16 at " + report["qat"][0]["size"] + ": " + ", ".join(
            f"int{r['bits']} {r['qat_over_fp16']:.3f}" for r in report["qat"]))
    if report["optimizer"]:
        m, a = report["optimizer"]
        print(f"Muon {m['step_s'] * 1e3:.2f} ms vs AdamW {a['step_s'] * 1e3:.2f} ms per step at {m['size']} "
              f"(ratio {m['step_s'] / a['step_s']:.3f})")


def tiny_pack() -> int:
    """The tiny profile's pack size (fixtures/profiles/tiny.toml), the K the suite trains with."""
    from engine.design import load_profile

    return load_profile("tiny").pack

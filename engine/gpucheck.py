"""`python -m engine.gpucheck [smoke|placement|compile]`: GPU checks that scripts/gpu_check.sh runs.

- `smoke` (the default): trains one tiny spec on cuda in bf16 autocast + torch.compile (the CUDA default) and in fp32
eager, single and as a pack of two, in a temporary data directory (nothing enters the results
cache), and checks what CI checks on CPU (tests/engine/test_precision.py): every loss finite,
the loss falling, and val_bpb within BF16_TOLERANCE_BPB of the fp32 run. Prints one line per
run and exits 1 naming the first failed check.
- `placement`: one tiny run per visible GPU through the local executor, all at once; each run
  must succeed and report its own GPU (CUDA_VISIBLE_DEVICES in its record), every GPU used.
- `compile`: more configurations than dynamo's recompile limit (8) in one process, compiled
  with inductor on the GPU; every record must say compiled, with graphs from dynamo's counters.
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

import torch

from engine.precision import Precision
from engine.spec import RunSpec

SPEC = dict(size="t20k", bits=6, steps=60, batch_tokens=1024, seq_len=64, val_tokens=8192,
            muon_momentum_warmup_steps=5)
BF16_TOLERANCE_BPB = 0.05  # as tests/engine/test_precision.py


def _check(name: str, gpu: dict, fp32: dict) -> str | None:
    curve = [v for _, v in gpu["loss_curve"]]
    print(f"{name}: bf16+compile val_bpb {gpu.get('val_bpb', float('nan')):.4f}, fp32 {fp32.get('val_bpb', float('nan')):.4f}, "
          f"{gpu['tokens_per_s']:,.0f} vs {fp32['tokens_per_s']:,.0f} tok/s")
    if gpu["status"] != "ok" or not all(math.isfinite(v) for v in curve):
        return f"{name}: the bf16+compile run is {gpu['status']} (non-finite loss)"
    if not curve[-1] < curve[0] - 0.5:
        return f"{name}: the bf16+compile run did not learn (loss {curve[0]:.3f} -> {curve[-1]:.3f})"
    if abs(gpu["val_bpb"] - fp32["val_bpb"]) >= BF16_TOLERANCE_BPB:
        return f"{name}: bf16+compile val_bpb differs from fp32 by more than {BF16_TOLERANCE_BPB}"
    return None


def _report(name: str, failures: list[str]) -> int:
    for x in failures:
        print(f"error: {x}", file=sys.stderr)
    print(f"gpu check {name}: " + ("FAILED" if failures else "ok"))
    return 1 if failures else 0


def placement() -> int:
    """Every GPU trains at once, each run on its own GPU (engine.executors.worker_device)."""
    from engine.executors import LocalExecutor
    from engine.scheduling import Task

    n = torch.cuda.device_count()
    specs = [RunSpec(**{**SPEC, "steps": 20}, seed=s) for s in range(n)]
    failures, used = [], set()
    with tempfile.TemporaryDirectory() as tmp:
        for task, out in LocalExecutor(device="cuda").run([Task((s,)) for s in specs], data_dir=tmp):
            if isinstance(out, BaseException):
                failures.append(f"run {task} failed: {str(out).splitlines()[-1] if str(out) else out!r}")
                continue
            used.add(out[0].get("visible_devices"))
            print(f"seed {task.specs[0].seed}: {out[0]['status']} on GPU {out[0].get('visible_devices')}")
    if n > 1 and len(used) < min(n, len(specs)) - len(failures):
        failures.append(f"{n} GPUs visible but runs used only {sorted(map(str, used))}")
    return _report("placement", failures)


def compiled_configs() -> int:
    """Ten configurations in one process, compiled (inductor): none may fall back to eager."""
    from engine.train import run

    prec = Precision("bf16", compile=True)
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(1, 11):
            spec = RunSpec(**{**SPEC, "steps": 6, "batch_tokens": 64 * 4 * n}, bits=6 if n == 10 else 16,
                           qat_start=0.5 if n == 10 else 0.0)
            r = run(spec, device="cuda", data_dir=Path(tmp), precision=prec).result
            print(f"config {n}: compiled {r['compiled']}, {r['compile_graphs']} graph(s), {r['compile_s']:.1f} s")
            if not (r["compiled"] and r["compile_graphs"] >= 1):
                failures.append(f"configuration {n} did not compile: {r['compiled']=}, {r['compile_graphs']=}")
    return _report("compile", failures)


def main(argv: list[str] | None = None) -> int:
    what = (argv if argv is not None else sys.argv[1:]) or ["smoke"]
    if not torch.cuda.is_available():
        print("error: no CUDA device visible to torch; run the GPU check on a GPU machine", file=sys.stderr)
        return 2
    checks = {"smoke": smoke, "placement": placement, "compile": compiled_configs}
    if what[0] not in checks:
        print(f"error: unknown check {what[0]!r}; choose one of {', '.join(checks)}", file=sys.stderr)
        return 2
    return checks[what[0]]()


def smoke() -> int:
    from engine.packed import run_packed
    from engine.train import run

    gpu_path, fp32 = Precision("bf16", compile=True), Precision("fp32")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        spec = RunSpec(**SPEC)
        failures = [_check("single", run(spec, device="cuda", data_dir=data, precision=gpu_path).result,
                           run(spec, device="cuda", data_dir=data, precision=fp32).result)]
        specs = [RunSpec(**SPEC, seed=s) for s in (0, 1)]
        g = run_packed(specs, device="cuda", data_dir=data, precision=gpu_path)
        f = run_packed(specs, device="cuda", data_dir=data, precision=fp32)
        failures += [_check(f"packed run {k}", a.result, b.result) for k, (a, b) in enumerate(zip(g, f))]
    return _report("smoke", [x for x in failures if x])


if __name__ == "__main__":
    sys.exit(main())

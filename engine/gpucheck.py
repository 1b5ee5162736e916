"""`python -m engine.gpucheck`: a short CUDA smoke run of the GPU path (scripts/gpu_check.sh runs it).

Trains one tiny spec on cuda in bf16 autocast + torch.compile (the CUDA default) and in fp32
eager, single and as a pack of two, in a temporary data directory (nothing enters the results
cache), and checks what CI checks on CPU (tests/engine/test_precision.py): every loss finite,
the loss falling, and val_bpb within BF16_TOLERANCE_BPB of the fp32 run. Prints one line per
run and exits 1 naming the first failed check.
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


def main() -> int:
    from engine.packed import run_packed
    from engine.train import run

    if not torch.cuda.is_available():
        print("error: no CUDA device visible to torch; run the GPU check on a GPU machine", file=sys.stderr)
        return 2
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
    failures = [x for x in failures if x]
    for x in failures:
        print(f"error: {x}", file=sys.stderr)
    print("gpu check: " + ("FAILED" if failures else "ok"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Seed packing: K runs of the same shape trained at once, as one stacked model in one process.

The wing, one module per role:
- `engine.packed.model`: `PackedGPT`, K GPTs stacked along a leading run axis;
- `engine.packed.optim`: `PackedMuon` / `PackedAdam`, the optimisers with per-run scalars;
- `engine.packed.loop`: which runs may share a pack (`pack_key`, `check_packable`), the packed
  training step (`PackedSession`), the loop (`run_packed` / `train_packed`, engine.train.run for
  K runs, sharing its `engine.runlog.RunLog`) and `pack_plan` (the cache queue's hook);
- `engine.packed.bench`: `packed_speedup`, the timing of a pack against K single runs.
The names the rest of the house uses are re-exported here (`from engine.packed import pack_plan`).

Why: a small model leaves the device idle. A GPU step of a few-million-parameter model is
mostly kernel launches, and a CPU step of a tiny one spends much of its time on per-op
overhead; K runs that differ only in per-run scalars (seed, bits, warmdown, learning rates,
betas, QAT start) can share every op. On the 2-core development CPU (engine.packed.bench)
a pack of 4 trains 1.2x (1 thread) to 1.6-1.8x (2 threads) faster than 4 runs one after another
at 1,024 tokens per step, where the work is mostly arithmetic, and 2.7x at 128 tokens.

Equivalence: every per-run number is computed with the arithmetic the single-run path uses,
op for op (the optimiser updates mirror `engine.muon.Muon` and torch's single-tensor Adam;
per-run scalars become (K, 1, ...) float32 tensors, rounded from the same Python doubles).
On CPU (checked on the AVX2 development machine, torch 2.13) at the t20k-t100k shapes a slice
of a bmm equals the mm of that slice bit for bit, as does a batch of attention, so a packed run
reproduces `engine.train.run`'s record exactly there (tests/engine/test_packed.py checks it end
to end). At t10k (head dim 10) BLAS picks other kernels for the batched matmuls: the last bits
differ and QAT's rounding amplifies that over training (up to 0.03 bpb at INT4 after 120
steps, the same as changing machine or thread count would); records say `"packed": K`.
On CUDA (bf16 autocast, other kernels for batched and single matmuls; not yet run there)
expect close, not identical, results.

Relation to the single-run path: `engine.train.run` drives one GPT through DeepSpeed with
ZeRO stage 0, one process, fp32 gradients and no clipping, which reduces to
`loss.backward(); optimizer.step(); zero_grad()`. The packed loop runs exactly that without
DeepSpeed: its engine wraps one model with one scalar loss, and ZeRO partitioning buys
nothing for models that fit one device. Packs have no checkpoint/resume: they are for
short runs, and a killed pack simply reruns.
"""

from engine.packed.loop import (
    PACK_SHARED_FIELDS,
    PackedSession,
    build_packed_session,
    check_packable,
    pack_key,
    pack_plan,
    run_packed,
    train_packed,
)

__all__ = ["PACK_SHARED_FIELDS", "PackedSession", "build_packed_session", "check_packable", "pack_key", "pack_plan",
           "run_packed", "train_packed"]

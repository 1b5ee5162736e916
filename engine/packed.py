"""Seed packing: K runs of the same shape trained at once, as one stacked model in one process.

Owns the packed training loop: `pack_key` / `check_packable` (which runs may share a pack),
`PackedSession` (the packed training step), `run_packed` / `train_packed` (the loop of
`engine.train.run` applied to K runs at once) and `pack_plan` (the cache queue's hook). The
stacked model is `engine.packed_model.PackedGPT`; its optimisers `engine.packed_optim`.

Why: a small model leaves the device idle. A GPU step of a few-million-parameter model is
mostly kernel launches, and a CPU step of a tiny one spends much of its time on per-op
overhead; K runs that differ only in per-run scalars (seed, bits, warmdown, learning rates,
betas, QAT start) can share every op. On the 2-core development CPU (engine/bench_packed.py)
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

A run whose loss goes non-finite is frozen (weights and optimiser state zeroed, learning
rates 0, so no NaN reaches the shared kernels) and recorded as diverged at that step, with
the same record as engine.train.run's; the others go on. Its slice is still computed until
the pack ends (repacking is not worth it), and its returned model holds the zeroed weights.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from engine.data import Corpus, batch_at, load_corpus
from engine.evaluate import grid_probe
from engine.faults import fault_point
from engine.ladder import count_params, get_config
from engine.model import GPT
from engine.packed_model import PackedGPT
from engine.packed_optim import PackedOptimizer, build_packed_optimizer
from engine.paths import data_dir as default_data_dir
from engine.runtime import autocast_for, pick_device
from engine.spec import RunSpec
from engine.train import (
    CURVE_POINTS, Trained, probe_steps_of, provenance, result_record, schedule_at,
)

log = logging.getLogger(__name__)

# Fields that fix the shape of a pack's tensors or its shared loop; every other RunSpec
# field is a per-run scalar and may differ inside a pack.
PACK_SHARED_FIELDS = ("size", "steps", "batch_tokens", "seq_len", "data", "tokenizer", "optimizer")


def pack_key(spec: RunSpec) -> tuple:
    """Specs with equal keys can train in one pack."""
    return tuple(getattr(spec, name) for name in PACK_SHARED_FIELDS)


def check_packable(specs: Sequence[RunSpec]) -> None:
    """Raise ValueError naming the field unless the specs can share one pack."""
    if not specs:
        raise ValueError("a pack needs at least one RunSpec")
    for name in PACK_SHARED_FIELDS:
        values = {getattr(s, name) for s in specs}
        if len(values) > 1:
            raise ValueError(
                f"specs differ in {name!r} ({sorted(map(str, values))}); a pack shares {PACK_SHARED_FIELDS}"
            )


@dataclass
class PackedSession:
    """Everything a pack trains with, and its training step (engine.train.Session for K runs)."""

    specs: list[RunSpec]
    device: torch.device
    corpus: Corpus
    packed: PackedGPT
    optimizer: PackedOptimizer
    forward: object  # the packed model, or its compiled version

    def step(self, step: int, live: Sequence[bool] | None = None) -> Tensor:
        """One optimiser step of every run at `step`; runs with live[k] False take LR 0.

        Returns the (K,) losses, unsynchronised.
        """
        factors, momenta, beta2s = zip(*(schedule_at(s, step) for s in self.specs))
        if live is not None:
            factors = [f if ok else 0.0 for f, ok in zip(factors, live)]  # a frozen run takes no updates
        self.optimizer.apply_schedule(factors, momenta, beta2s)
        batches = [batch_at(self.corpus.train, step, s.batch_seqs, s.seq_len, s.seed) for s in self.specs]
        x = torch.stack([b[0] for b in batches]).to(self.device, non_blocking=True)  # (K, B, T)
        y = torch.stack([b[1] for b in batches]).to(self.device, non_blocking=True)  # (K, B, T)
        with autocast_for(self.device):
            losses = self.forward(x, y)  # (K,)
        losses.sum().backward()  # runs share no parameters: d(sum)/d(run k) = d(loss_k)/d(run k)
        fault_point("backward")
        self.optimizer.step()
        self.optimizer.zero_grad()
        return losses.detach()


def build_packed_session(specs: Sequence[RunSpec], dev: torch.device, data_dir: Path | None = None,
                         compile_model: bool | None = None) -> PackedSession:
    """engine.train.build_session for a pack: each run seeded as engine.train.run seeds it."""
    check_packable(specs)
    specs = list(specs)
    shared = specs[0]
    corpus = load_corpus(shared.data, shared.tokenizer, data_dir or default_data_dir())
    cfg = get_config(shared.size)
    models = []
    for s in specs:  # each run starts from exactly the weights engine.train.run would create
        torch.manual_seed(s.seed)
        models.append(GPT(cfg, corpus.vocab_size, quantize_embeddings=s.quantize_embeddings).to(dev))
    packed = PackedGPT.from_models(models)
    optimizer = build_packed_optimizer(packed, specs, ns_on_cuda=dev.type == "cuda")
    forward = packed
    if compile_model if compile_model is not None else dev.type == "cuda":
        forward = torch.compile(packed)
    return PackedSession(specs, dev, corpus, packed, optimizer, forward)


@dataclass
class _RunLog:
    """What engine.train.run keeps in locals, kept per run of the pack."""

    spec: RunSpec
    probe_steps: dict[int, str]
    curve_every: int
    probes: list[dict] = field(default_factory=list)
    curve: list[tuple[int, float]] = field(default_factory=list)
    qat_on: bool = False
    diverged_step: int | None = None

    def flush(self, window: Tensor, first: int) -> None:
        """engine.train.run's flush: move losses (n,) of steps first.. to the curve; note divergence."""
        for i in range(len(window)):
            if (first + i) % self.curve_every == 0 or first + i == self.spec.steps - 1:
                self.curve.append((first + i, float(window[i])))
        bad = (~torch.isfinite(window)).nonzero()
        self.diverged_step = first + int(bad[0]) if len(bad) else None


def pack_plan(k: int, device: str | None = None, data_dir: Path | None = None, progress: bool = False):
    """The `pack` argument of ResultsCache.ensure: packs of up to k runs, or None for k <= 1."""
    if k <= 1:
        return None
    return k, pack_key, lambda specs: train_packed(specs, device=device, data_dir=data_dir, progress=progress)


def train_packed(specs: Sequence[RunSpec], device: str | None = None, data_dir: Path | None = None,
                 **kwargs) -> list[dict]:
    """Train the specs as one pack; one result record per spec, in order (engine.train.train's keys + "packed")."""
    return [t.result for t in run_packed(specs, device=device, data_dir=data_dir, **kwargs)]


def run_packed(
    specs: Sequence[RunSpec],
    *,
    device: str | None = None,
    data_dir: Path | None = None,
    progress: bool = False,
    compile_model: bool | None = None,
) -> list[Trained]:
    """engine.train.run for K packable specs at once; per run its record, its model and the corpus."""
    t_start = time.time()
    dev = pick_device(device)
    sess = build_packed_session(specs, dev, data_dir, compile_model)
    specs, packed, corpus = sess.specs, sess.packed, sess.corpus
    K, total = len(specs), specs[0].steps
    n_params = count_params(packed.cfg, corpus.vocab_size)  # per run

    runs = [_RunLog(s, probe_steps_of(s), max(1, s.steps // CURVE_POINTS)) for s in specs]
    check_every = 1 if dev.type == "cpu" else 25  # a host sync per step is cheap on CPU only
    pending: list[Tensor] = []
    t_train = time.time()
    steps = range(total)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc=f"pack of {K} {specs[0].size}", unit="step", leave=False)
    for step in steps:
        live = [r.diverged_step is None for r in runs]
        if not any(live):
            break
        for k, r in enumerate(runs):
            if live[k] and step in r.probe_steps:
                probe = grid_probe(packed.model(k), r.spec.bits)
                r.probes.append({"step": step, "label": r.probe_steps[step], **probe})
        switch = [live[k] and not r.qat_on and step >= r.spec.qat_start_step for k, r in enumerate(runs)]
        if any(switch):
            for k, r in enumerate(runs):
                r.qat_on = r.qat_on or switch[k]
            packed.set_qat([r.spec.bits if r.qat_on else None for r in runs])
        pending.append(sess.step(step, live))
        fault_point("step")
        done = step + 1
        if done % check_every == 0 or done == total:
            window = torch.stack(pending).float().cpu()  # (n, K)
            first = done - len(pending)
            pending.clear()
            for k, r in enumerate(runs):
                if live[k]:
                    r.flush(window[:, k], first)
                    if r.diverged_step is not None:
                        log.warning("run %s diverged at step %d (in a pack of %d)", r.spec.short_id, r.diverged_step, K)
                        _freeze(packed, sess.optimizer, k)
    train_time = time.time() - t_train

    trained = []
    for k, r in enumerate(runs):
        model = packed.model(k)
        result = _record(r, model, corpus, dev, n_params, t_start, train_time, K)
        trained.append(Trained(result, model, corpus))
    return trained


@torch.no_grad()
def _freeze(packed: PackedGPT, optimizer: PackedOptimizer, k: int) -> None:
    """Zero run k's weights and optimiser state: its slice stays finite and takes no updates."""
    for p in packed.parameters():
        p[k].zero_()
    optimizer.reset_run(k)


def _record(r: _RunLog, model: GPT, corpus, dev: torch.device, n_params: int, t_start: float,
            train_time: float, k: int) -> dict:
    """engine.train's result record for one run of the pack, plus "packed": K."""
    base = {**provenance(r.spec, dev, n_params, t_start), "packed": k}
    # This run's tokens over the pack's time: the pack as a whole trained K times as many.
    return result_record(r.spec, model, corpus, dev, base, curve=r.curve, probes=r.probes,
                         probe_steps=r.probe_steps, diverged_step=r.diverged_step, train_time=train_time,
                         t_start=t_start, tokens_per_s=r.spec.tokens / max(train_time, 1e-9))

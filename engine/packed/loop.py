"""The packed training loop: engine.train.run for K runs of one shape at once.

Owns `pack_key` / `check_packable` (which runs may share a pack: the fields that fix tensor
shapes or the shared loop), `PackedSession` (the packed training step), `run_packed` /
`train_packed` and `pack_plan` (the cache queue's hook). Each run of the pack keeps its own
`engine.runlog.RunLog` (curve, probes, QAT switch, divergence) and ends with the same result
record as a single run, plus `"packed": K`. See `engine.packed` for why and how exactly a pack
reproduces single runs.

A run whose loss goes non-finite is frozen (weights and optimiser state zeroed, learning
rates 0, so no NaN reaches the shared kernels) and recorded as diverged at that step, with
the same record as engine.train.run's; the others go on. Its slice is still computed until
the pack ends (repacking is not worth it), and its returned model holds the zeroed weights.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from engine.data import Corpus, batch_at, load_corpus
from engine.faults import fault_point
from engine.ladder import count_params, get_config
from engine.model import GPT
from engine.packed.model import PackedGPT
from engine.packed.optim import PackedOptimizer, build_packed_optimizer
from engine.paths import data_dir as default_data_dir
from engine.runlog import RunLog, check_every, provenance, stack_losses
from engine.precision import Precision, resolve_precision
from engine.quant import QuantPolicy
from engine.runtime import pick_device
from engine.spec import RunSpec
from engine.train import Trained, execution, out_of_memory_named, reset_peak_memory, schedule_at
from engine.compilation import begin_run, eager_report

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
    precision: Precision

    def step(self, step: int, live: Sequence[bool] | None = None) -> Tensor:
        """One optimiser step of every run at `step`; runs with live[k] False take LR 0.

        Returns the (K,) losses, unsynchronised.
        """
        factors, momenta, beta2s = zip(*(schedule_at(s, step) for s in self.specs))
        if live is not None:
            factors = [f if ok else 0.0 for f, ok in zip(factors, live)]  # a frozen run takes no updates
        self.optimizer.apply_schedule(factors, momenta, beta2s)
        batches = [batch_at(self.corpus.train, step, s.batch_seqs, s.seq_len, s.seed, s.data_order) for s in self.specs]
        x = torch.stack([b[0] for b in batches]).to(self.device, non_blocking=True)  # (K, B, T)
        y = torch.stack([b[1] for b in batches]).to(self.device, non_blocking=True)  # (K, B, T)
        with self.precision.autocast(self.device):
            losses = self.forward(x, y)  # (K,)
        losses.sum().backward()  # runs share no parameters: d(sum)/d(run k) = d(loss_k)/d(run k)
        fault_point("backward")
        self.optimizer.step()
        self.optimizer.zero_grad()
        return losses.detach()


def build_packed_session(specs: Sequence[RunSpec], dev: torch.device, data_dir: Path | None = None,
                         precision: Precision | None = None) -> PackedSession:
    """engine.train.build_session for a pack: each run seeded as engine.train.run seeds it."""
    check_packable(specs)
    precision = precision or resolve_precision(dev)
    specs = list(specs)
    shared = specs[0]
    corpus = load_corpus(shared.data, shared.tokenizer, data_dir or default_data_dir())
    cfg = get_config(shared.size)
    models = []
    for s in specs:  # each run starts from exactly the weights engine.train.run would create
        torch.manual_seed(s.seed)
        models.append(GPT(cfg, corpus.vocab_size, quantize_embeddings=s.quantize_embeddings).to(dev))
    packed = PackedGPT.from_models(models)
    optimizer = build_packed_optimizer(packed, specs, ns_dtype=precision.ns_dtype)
    return PackedSession(specs, dev, corpus, packed, optimizer, precision.maybe_compile(packed), precision)


def pack_plan(k: int, device: str | None = None, data_dir: Path | None = None, progress: bool = False,
              precision: Precision | None = None):
    """The `pack` argument of ResultsCache.ensure: packs of up to k runs, or None for k <= 1."""
    if k <= 1:
        return None
    return k, pack_key, lambda specs: train_packed(specs, device=device, data_dir=data_dir, progress=progress,
                                                   precision=precision)


def train_packed(specs: Sequence[RunSpec], device: str | None = None, data_dir: Path | None = None,
                 **kwargs) -> list[dict]:
    """Train the specs as one pack; one result record per spec, in order (engine.train.train's keys + "packed")."""
    with out_of_memory_named(list(specs), device):
        return [t.result for t in run_packed(specs, device=device, data_dir=data_dir, **kwargs)]


def run_packed(
    specs: Sequence[RunSpec],
    *,
    device: str | None = None,
    data_dir: Path | None = None,
    progress: bool = False,
    precision: Precision | None = None,
) -> list[Trained]:
    """engine.train.run for K packable specs at once; per run its record, its model and the corpus."""
    t_start = time.time()
    dev = pick_device(device)
    precision = precision or resolve_precision(dev)
    # a pack's graphs differ from a single run's and with the pack's size (engine.compilation)
    watch = begin_run(("packed", len(specs), pack_key(specs[0]), precision)) if precision.compile else None
    reset_peak_memory(dev)
    sess = build_packed_session(specs, dev, data_dir, precision)
    specs, packed, corpus = sess.specs, sess.packed, sess.corpus
    K, total = len(specs), specs[0].steps
    n_params = count_params(packed.cfg, corpus.vocab_size)  # per run

    runs = [RunLog.start(s) for s in specs]
    flush_every = check_every(dev)
    pending: list[Tensor] = []  # (K,) losses not yet moved to the host
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
            if live[k]:
                r.probe(step, lambda k=k: packed.model(k))
        switch = [live[k] and r.qat_due(step) for k, r in enumerate(runs)]
        if any(switch):
            for k, r in enumerate(runs):
                r.qat_on = r.qat_on or switch[k]
            packed.set_qat([r.spec.bits if r.qat_on else None for r in runs], [QuantPolicy.of(r.spec) for r in runs])
        pending.append(sess.step(step, live))
        fault_point("step")
        done = step + 1
        if done % flush_every == 0 or done == total:
            window, first = stack_losses(pending), done - len(pending)  # (n, K)
            pending.clear()
            for k, r in enumerate(runs):
                if live[k] and r.flush(window[:, k], first) is not None:
                    log.warning("run %s diverged at step %d (in a pack of %d)", r.spec.short_id, r.diverged_step, K)
                    _freeze(packed, sess.optimizer, k)
    train_time = time.time() - t_train
    compiled = watch.report() if watch else eager_report()

    trained = []
    for k, r in enumerate(runs):
        model = packed.model(k)
        base = {**provenance(r.spec, dev, n_params, t_start, sess.precision, data_dir), "packed": K, **compiled,
                **execution(r.spec, r.spec.batch_seqs, dev)}
        # This run's tokens over the pack's time (compiling left out): the pack as a whole trained K times as many.
        result = r.result(model, corpus, dev, base, train_time=train_time, t_start=t_start,
                          tokens_per_s=r.spec.tokens / max(train_time - compiled["compile_s"], 1e-9),
                          precision=sess.precision)
        trained.append(Trained(result, model, corpus))
    return trained


@torch.no_grad()
def _freeze(packed: PackedGPT, optimizer: PackedOptimizer, k: int) -> None:
    """Zero run k's weights and optimiser state: its slice stays finite and takes no updates."""
    for p in packed.parameters():
        p[k].zero_()
    optimizer.reset_run(k)

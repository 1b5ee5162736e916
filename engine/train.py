"""One training run: spec in, result record out, through DeepSpeed on CPU or GPU.

The same loop everywhere: `deepspeed.initialize` with our model and client optimiser,
`engine(x, y)`, `engine.backward(loss)`, `engine.step()`. How it computes is the run's
`engine.precision.Precision`, a runtime setting like the device: by default bf16 autocast
(fp32 master weights, as parameter-golf keeps its CastedLinear weights) with a compiled
model on CUDA, fp32 eager on CPU; `--precision bf16 --compile` runs the CUDA path on CPU.

A non-finite loss ends the run as `status="diverged"` with the step where it happened
(and a run whose final validation loss is no better than a uniform guess over the
vocabulary is diverged too, at its last step):
it is a result (the schedule diverged), not a crash, and claim tests apply their rule to
it. An exception is a crash: nothing is returned and nothing is cached.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.checkpoint import Checkpointer
from engine.data import Corpus, batch_at, load_corpus
from engine.faults import fault_point
from engine.ladder import count_params, get_config
from engine.model import GPT
from engine.optim import apply_schedule, build_optimizer
from engine.paths import data_dir as default_data_dir
from engine.runlog import RunLog, check_every, provenance, stack_losses
from engine.precision import Precision, resolve_precision
from engine.quant import QuantPolicy
from engine.runtime import ensure_extensions_dir, ensure_process_group, pick_device
from engine.schedule import in_restart_warmdown, in_warmdown, lr_factor, muon_momentum, restart_lr_factor
from engine.spec import RunSpec, bits_label

log = logging.getLogger(__name__)


@dataclass
class Trained:
    result: dict  # what the cache stores
    model: GPT  # the trained model (fake quantisation left as at the end of training)
    corpus: Corpus


def schedule_at(spec: RunSpec, step: int) -> tuple[float, float, float]:
    """(LR factor, Muon momentum, Adam beta2) of `spec` at `step`; shared with the packed loop."""
    if spec.qat_lr_restart:
        q = spec.qat_start_step
        cooling = in_restart_warmdown(step, spec.steps, q, spec.wd)
        factor = restart_lr_factor(step, spec.steps, q, warmup_steps=spec.warmup_steps, wd=spec.wd,
                                   shape=spec.wd_shape)
    else:
        cooling = in_warmdown(step, spec.steps, spec.wd, spec.schedule)
        factor = lr_factor(step, spec.steps, warmup_steps=spec.warmup_steps, wd=spec.wd, shape=spec.wd_shape,
                           schedule=spec.schedule)
    return (
        factor,
        muon_momentum(step, spec.muon_momentum_warmup_start, spec.muon_momentum, spec.muon_momentum_warmup_steps),
        spec.cooldown_beta2 if (cooling and spec.cooldown_beta2 is not None) else spec.beta2,
    )


@dataclass
class Session:
    """Everything one run trains with, and its training step (shared with `engine bench`)."""

    spec: RunSpec
    device: torch.device
    corpus: Corpus
    model: GPT
    optimizer: torch.optim.Optimizer
    ds_engine: object  # deepspeed.DeepSpeedEngine
    forward: object  # the engine, or its compiled module
    precision: Precision

    def step(self, step: int) -> torch.Tensor:
        """One optimiser step at `step` of the schedule; returns the (unsynchronised) loss."""
        spec = self.spec
        apply_schedule(self.optimizer, *schedule_at(spec, step))
        x, y = batch_at(self.corpus.train, step, spec.batch_seqs, spec.seq_len, spec.seed, spec.data_order)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        with self.precision.autocast(self.device):
            loss = self.forward(x, y)
        self.ds_engine.backward(loss)
        fault_point("backward")  # mid-step: gradients computed, weights not yet updated
        self.ds_engine.step()
        return loss


def build_session(spec: RunSpec, dev: torch.device, data_dir: Path | None = None,
                  precision: Precision | None = None) -> Session:
    """Model (seeded init), optimiser and DeepSpeed engine for `spec` on `dev`, computing as `precision`."""
    precision = precision or resolve_precision(dev)
    ensure_extensions_dir()  # before DeepSpeed is imported: a read-only HOME must not break its op builds
    import deepspeed

    ensure_process_group(dev)
    corpus = load_corpus(spec.data, spec.tokenizer, data_dir or default_data_dir())
    torch.manual_seed(spec.seed)
    cfg = get_config(spec.size)
    model = GPT(cfg, corpus.vocab_size, quantize_embeddings=spec.quantize_embeddings).to(dev)
    assert sum(p.numel() for p in model.parameters()) == count_params(cfg, corpus.vocab_size), "ladder != model"
    optimizer = build_optimizer(model, spec, ns_dtype=precision.ns_dtype)
    # fp32 to DeepSpeed whatever the precision: bf16 is autocast around the forward (engine.precision).
    ds_config = {
        "train_micro_batch_size_per_gpu": spec.batch_seqs,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 0.0,  # parameter-golf GRAD_CLIP_NORM=0
        "zero_optimization": {"stage": 0},
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    ds_engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
    # Compiled, the module is called directly: DeepSpeed's forward wrapper adds nothing at ZeRO 0.
    forward = precision.maybe_compile(ds_engine.module) if precision.compile else ds_engine
    return Session(spec, dev, corpus, model, optimizer, ds_engine, forward, precision)


def preflight(specs: list[RunSpec], data_dir: Path | None = None) -> None:
    """Load every corpus/tokenizer the specs need, so bad input fails before any run starts.

    Raises the data layer's ValueError/FileNotFoundError naming the path and the fix; nothing
    is written to the results cache. Loaded corpora stay memoised for the runs that follow.
    """
    for spec in specs:
        check_memory(spec)
    corpora = {key: load_corpus(*key, data_dir or default_data_dir())
               for key in dict.fromkeys((s.data, s.tokenizer) for s in specs)}
    for spec in specs:
        check_fits(spec, corpora[spec.data, spec.tokenizer])


# Host bytes per batch token that no run can avoid: the window index array, x and y (int64 each).
HOST_BYTES_PER_BATCH_TOKEN = 24


def physical_memory() -> int | None:
    """This machine's RAM in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(spec: RunSpec) -> None:
    """Refuse a batch whose token arrays alone cannot fit in this machine's memory (before any lock)."""
    need, ram = spec.batch_tokens * HOST_BYTES_PER_BATCH_TOKEN, physical_memory()
    if ram is not None and need > ram:
        raise ValueError(f"RunSpec.batch_tokens={spec.batch_tokens} needs at least {need / 2**30:.1f} GiB for one "
                         f"batch's token arrays, more than this machine's {ram / 2**30:.1f} GiB; lower --batch-tokens")


def check_fits(spec: RunSpec, corpus: Corpus) -> None:
    """Both splits of the corpus hold at least one window of seq_len+1 tokens (else training or eval fails late)."""
    for split, tokens in (("training", corpus.train), ("validation", corpus.val)):
        if len(tokens) < spec.seq_len + 1:
            raise ValueError(
                f"the {split} split of data {spec.data!r} (tokenizer {spec.tokenizer!r}) has {len(tokens)} tokens, "
                f"fewer than seq_len={spec.seq_len} + 1 for one window: lower --seq-len or give a larger corpus")


def train(spec: RunSpec, **kwargs) -> dict:
    """Train `spec` to completion (or divergence) and return its result record."""
    return run(spec, **kwargs).result


def run(
    spec: RunSpec,
    *,
    device: str | None = None,
    data_dir: Path | None = None,
    progress: bool = False,
    precision: Precision | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 0,
) -> Trained:
    """Train `spec`; return the result record together with the model and its corpus.

    With `checkpoint_dir` and `checkpoint_every`, the loop saves a checkpoint every N steps
    and first resumes from the newest complete one found there.
    """
    t_start = time.time()
    dev = pick_device(device)
    sess = build_session(spec, dev, data_dir, precision)
    model, corpus, ds_engine = sess.model, sess.corpus, sess.ds_engine
    n_params = sum(p.numel() for p in model.parameters())

    runlog = RunLog.start(spec)
    pending: list[torch.Tensor] = []  # losses not yet moved to the host
    flush_every = check_every(dev)
    start = 0
    ckpt = Checkpointer(checkpoint_dir, checkpoint_every) if checkpoint_dir and checkpoint_every else None
    if ckpt and (state := ckpt.load(ds_engine)) is not None:
        start = runlog.restore(state)
        model.set_qat(spec.bits if runlog.qat_on else None, QuantPolicy.of(spec))
    t_train = time.time()

    steps = range(start, spec.steps)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc=f"train {spec.short_id} {spec.size} {bits_label(spec.bits)}", unit="step",
                     leave=False, initial=start, total=spec.steps)
    for step in steps:
        runlog.probe(step, lambda: model)
        if runlog.qat_due(step):
            model.set_qat(spec.bits, QuantPolicy.of(spec))
            runlog.qat_on = True
        loss = sess.step(step)
        pending.append(loss.detach())
        fault_point("step")
        done = step + 1
        save_now = ckpt is not None and ckpt.due(done, spec.steps)
        if done % flush_every == 0 or done == spec.steps or save_now:
            window, first = stack_losses(pending), done - len(pending)
            pending.clear()
            if runlog.flush(window, first) is not None:
                break
        if save_now:
            ckpt.save(ds_engine, done, runlog.loop_state(done))
    train_time = time.time() - t_train

    base = provenance(spec, dev, n_params, t_start, sess.precision)
    if runlog.diverged_step is not None:
        log.warning("run %s diverged at step %d", spec.short_id, runlog.diverged_step)
    result = runlog.result(model, corpus, dev, base, train_time=train_time, t_start=t_start, resumed_from=start,
                           precision=sess.precision)
    return Trained(result, model, corpus)

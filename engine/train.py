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

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.checkpoint import Checkpointer
from engine.compilation import begin_run, eager_report
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
        cooling = in_restart_warmdown(step, spec.steps, q, spec.warmdown)
        factor = restart_lr_factor(step, spec.steps, q, warmup_steps=spec.warmup_steps, warmdown=spec.warmdown,
                                   shape=spec.warmdown_shape)
    else:
        cooling = in_warmdown(step, spec.steps, spec.warmdown, spec.schedule)
        factor = lr_factor(step, spec.steps, warmup_steps=spec.warmup_steps, warmdown=spec.warmdown, shape=spec.warmdown_shape,
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
    micro_seqs: int  # sequences per forward/backward; batch_seqs / micro_seqs micro-batches per step

    def step(self, step: int) -> torch.Tensor:
        """One optimiser step at `step` of the schedule; returns the step's (unsynchronised) mean loss.

        The step's batch is drawn whole, as without accumulation, and split into equal
        micro-batches: DeepSpeed divides each micro-batch's loss by the accumulation count in
        `backward` and updates the weights at the last one's `step`, so the update is that of the
        whole batch (tests/engine/test_train.py checks it in fp64, Muon and AdamW).
        """
        spec = self.spec
        apply_schedule(self.optimizer, *schedule_at(spec, step))
        x, y = batch_at(self.corpus.train, step, spec.batch_seqs, spec.seq_len, spec.seed, spec.data_order)
        total = None
        for xs, ys in zip(x.split(self.micro_seqs), y.split(self.micro_seqs), strict=True):
            xs, ys = xs.to(self.device, non_blocking=True), ys.to(self.device, non_blocking=True)
            with self.precision.autocast(self.device):
                loss = self.forward(xs, ys)
            self.ds_engine.backward(loss)
            fault_point("backward")  # mid-step: gradients computed, weights not yet updated
            self.ds_engine.step()
            total = loss.detach() if total is None else total + loss.detach()
        return total / (spec.batch_seqs // self.micro_seqs)


def check_micro_batch(spec: RunSpec, micro_seqs: int) -> int:
    """`micro_seqs` if it splits the step's batch into equal micro-batches; ValueError otherwise."""
    if isinstance(micro_seqs, bool) or not isinstance(micro_seqs, int) or micro_seqs < 1 \
            or spec.batch_seqs % micro_seqs:
        raise ValueError(f"micro-batch {micro_seqs!r} must be a whole divisor of the run's {spec.batch_seqs} "
                         f"sequences per step (batch_tokens {spec.batch_tokens} / seq_len {spec.seq_len})")
    return micro_seqs


def choose_micro_batch(spec: RunSpec, dev: torch.device, precision: Precision,
                       gpu_memory_gib: float | None = None) -> int:
    """Sequences per micro-batch: the whole batch on a CPU (host memory, checked by check_memory);
    on a GPU the largest that engine.memplan estimates fits the device. An execution detail like
    the thread count: it is recorded with the run and is not part of its identity."""
    if dev.type != "cuda":
        return spec.batch_seqs
    from engine.memplan import device_memory_bytes, plan_run

    return plan_run(spec, device_memory_bytes(gpu_memory_gib), precision=precision.name).micro_seqs


def ds_config(micro_seqs: int, accum_steps: int) -> dict:
    """DeepSpeed's configuration for one run (a world of one, ZeRO 0, the client's optimiser)."""
    return {
        "train_micro_batch_size_per_gpu": micro_seqs,
        "gradient_accumulation_steps": accum_steps,
        "gradient_clipping": 0.0,  # parameter-golf GRAD_CLIP_NORM=0
        "zero_optimization": {"stage": 0},
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
        # DeepSpeed's throughput timer is on by default and synchronises the device at the start and
        # end of every step (an estimated 3-5 % of a 15M step); the run times itself once per run
        "timers": {"throughput": {"enabled": False, "synchronized": False}},
    }


def build_session(spec: RunSpec, dev: torch.device, data_dir: Path | None = None,
                  precision: Precision | None = None, micro_seqs: int | None = None) -> Session:
    """Model (seeded init), optimiser and DeepSpeed engine for `spec` on `dev`, computing as `precision`,
    `micro_seqs` sequences per micro-batch (None: the whole batch)."""
    precision = precision or resolve_precision(dev)
    micro = check_micro_batch(spec, micro_seqs or spec.batch_seqs)
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
    config = ds_config(micro, spec.batch_seqs // micro)
    ds_engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    # Compiled, the module is called directly: DeepSpeed's forward wrapper adds nothing at ZeRO 0.
    forward = precision.maybe_compile(ds_engine.module) if precision.compile else ds_engine
    return Session(spec, dev, corpus, model, optimizer, ds_engine, forward, precision, micro)


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
    with out_of_memory_named([spec], kwargs.get("device")):
        return run(spec, **kwargs).result


class RunOutOfMemory(ValueError):
    """A run (or pack) needed more memory than its device has; the message names it and the fix.

    A ValueError like the other input errors: `engine train` prints it as one `error:` line and a
    sweep worker reports it as the task's one failure line, instead of a long allocator traceback.
    """


CPU_ALLOCATION_FAILURE = "DefaultCPUAllocator: can't allocate memory"  # torch's CPU allocator, out of memory


@contextlib.contextmanager
def out_of_memory_named(specs: list[RunSpec], device: str | None = None):
    """Turn an allocation failure inside the block (CUDA OOM, torch's CPU allocator, MemoryError) into
    RunOutOfMemory naming the run(s) and the fix; any other error passes through unchanged."""
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
        if not isinstance(e, (torch.OutOfMemoryError, MemoryError)) and CPU_ALLOCATION_FAILURE not in str(e):
            raise
        log.debug("allocation failure", exc_info=True)  # -v shows where
        what = (f"run {specs[0].short_id} ({specs[0].size}, batch_tokens {specs[0].batch_tokens})" if len(specs) == 1
                else f"the pack of {len(specs)} runs {[s.short_id for s in specs]} ({specs[0].size}, batch_tokens "
                     f"{specs[0].batch_tokens} each)")
        kind = "GPU" if isinstance(e, torch.OutOfMemoryError) else "host"
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise RunOutOfMemory(f"{what} ran out of {kind} memory on {device or 'the default device'} ({detail}): "
                             "give it a smaller batch (--batch-tokens), or train fewer runs at once (fewer "
                             "workers: --jobs / --qat-jobs; --pack 1)") from None


def run(
    spec: RunSpec,
    *,
    device: str | None = None,
    data_dir: Path | None = None,
    progress: bool = False,
    precision: Precision | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 0,
    micro_batch: int | None = None,
    gpu_memory_gib: float | None = None,
) -> Trained:
    """Train `spec`; return the result record together with the model and its corpus.

    With `checkpoint_dir` and `checkpoint_every`, the loop saves a checkpoint every N steps
    and first resumes from the newest complete one found there. `micro_batch` sequences per
    forward/backward (None: `choose_micro_batch` for the device, planned for `gpu_memory_gib`).
    """
    t_start = time.time()
    dev = pick_device(device)
    precision = precision or resolve_precision(dev)
    micro = micro_batch or choose_micro_batch(spec, dev, precision, gpu_memory_gib)
    watch = compile_watch(spec, micro, precision)
    reset_peak_memory(dev)
    sess = build_session(spec, dev, data_dir, precision, micro)
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
    compiled = watch.report() if watch else eager_report()
    steps_done = (runlog.diverged_step + 1 if runlog.diverged_step is not None else spec.steps) - start
    # training throughput without the seconds dynamo spent compiling (recorded beside it)
    tokens_per_s = steps_done * spec.batch_tokens / max(train_time - compiled["compile_s"], 1e-9)

    base = {**provenance(spec, dev, n_params, t_start, sess.precision, data_dir), **compiled,
            **execution(spec, micro, dev)}
    if runlog.diverged_step is not None:
        log.warning("run %s diverged at step %d", spec.short_id, runlog.diverged_step)
    result = runlog.result(model, corpus, dev, base, train_time=train_time, t_start=t_start, resumed_from=start,
                           precision=sess.precision, tokens_per_s=tokens_per_s)
    return Trained(result, model, corpus)


def compile_watch(spec: RunSpec, micro: int, precision: Precision):
    """For a compiled run, dynamo prepared for its configuration (engine.compilation) and its watch; else None.

    The configuration is everything that gives the compiled graphs another shape or guard: the
    architecture, the micro-batch, the precision, fake quantisation and its export grid.
    """
    if not precision.compile:
        return None
    key = (spec.size, spec.tokenizer, spec.seq_len, micro, spec.bits, spec.quantize_embeddings, spec.scale_floor,
           spec.keep_float, spec.keep_float_numel, precision)
    return begin_run(key)


def reset_peak_memory(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def peak_memory(dev: torch.device) -> tuple[int, str]:
    """(bytes, what they measure): the CUDA caching allocator's peak since the run began, or on a CPU
    the process's resident high-water mark (whole process, earlier runs in a worker included)."""
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev), "cuda_max_allocated"
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process_max_rss"


def execution(spec: RunSpec, micro: int, dev: torch.device) -> dict:
    """How the run was executed, beside its provenance: micro-batching and peak memory (not identity)."""
    peak, kind = peak_memory(dev)
    return {"micro_batch_seqs": micro, "accum_steps": spec.batch_seqs // micro, "peak_memory_bytes": peak,
            "peak_memory_kind": kind}

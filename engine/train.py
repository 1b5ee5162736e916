"""One training run: spec in, result record out, through DeepSpeed on CPU or GPU.

The same loop everywhere: `deepspeed.initialize` with our model and client optimiser,
`engine(x, y)`, `engine.backward(loss)`, `engine.step()`. On CUDA the forward runs under
bf16 autocast (fp32 master weights, as parameter-golf keeps its CastedLinear weights)
and the model may be compiled; on CPU everything is fp32.

A non-finite loss ends the run as `status="diverged"` with the step where it happened
(and a run whose final validation loss is no better than a uniform guess over the
vocabulary is diverged too, at its last step):
it is a result (the schedule diverged), not a crash, and claim tests apply their rule to
it. An exception is a crash: nothing is returned and nothing is cached.
"""

from __future__ import annotations

import logging
import math
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from engine import __version__
from engine.data import Corpus, batch_at, load_corpus
from engine.faults import fault_point
from engine.checkpoint import Checkpointer
from engine.evaluate import evaluate, grid_probe, round_trip
from engine.ladder import count_params, get_config
from engine.model import GPT
from engine.optim import apply_schedule, build_optimizer
from engine.paths import REPO_ROOT
from engine.paths import data_dir as default_data_dir
from engine.runtime import autocast_for, ensure_process_group, pick_device
from engine.schedule import in_warmdown, lr_factor, muon_momentum
from engine.spec import RunSpec, bits_label

log = logging.getLogger(__name__)

CURVE_POINTS = 64  # points kept of the training-loss curve
COLLAPSE_MARGIN_NATS = 0.01  # val loss within this of ln(vocab) = a uniform guess = collapsed


@dataclass
class Trained:
    result: dict  # what the cache stores
    model: GPT  # the trained model (fake quantisation left as at the end of training)
    corpus: Corpus


def schedule_at(spec: RunSpec, step: int) -> tuple[float, float, float]:
    """(LR factor, Muon momentum, Adam beta2) of `spec` at `step`; shared with the packed loop."""
    cooling = in_warmdown(step, spec.steps, spec.wd, spec.schedule)
    return (
        lr_factor(step, spec.steps, warmup_steps=spec.warmup_steps, wd=spec.wd, shape=spec.wd_shape,
                  schedule=spec.schedule),
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

    def step(self, step: int) -> torch.Tensor:
        """One optimiser step at `step` of the schedule; returns the (unsynchronised) loss."""
        spec = self.spec
        apply_schedule(self.optimizer, *schedule_at(spec, step))
        x, y = batch_at(self.corpus.train, step, spec.batch_seqs, spec.seq_len, spec.seed)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        with autocast_for(self.device):
            loss = self.forward(x, y)
        self.ds_engine.backward(loss)
        fault_point("backward")  # mid-step: gradients computed, weights not yet updated
        self.ds_engine.step()
        return loss


def build_session(spec: RunSpec, dev: torch.device, data_dir: Path | None = None,
                  compile_model: bool | None = None) -> Session:
    """Model (seeded init), optimiser and DeepSpeed engine for `spec` on `dev`."""
    import deepspeed

    ensure_process_group(dev)
    corpus = load_corpus(spec.data, spec.tokenizer, data_dir or default_data_dir())
    torch.manual_seed(spec.seed)
    cfg = get_config(spec.size)
    model = GPT(cfg, corpus.vocab_size, quantize_embeddings=spec.quantize_embeddings).to(dev)
    assert sum(p.numel() for p in model.parameters()) == count_params(cfg, corpus.vocab_size), "ladder != model"
    optimizer = build_optimizer(model, spec, ns_on_cuda=dev.type == "cuda")
    ds_config = {
        "train_micro_batch_size_per_gpu": spec.batch_seqs,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 0.0,  # parameter-golf GRAD_CLIP_NORM=0
        "zero_optimization": {"stage": 0},
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    ds_engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
    forward = ds_engine
    if compile_model if compile_model is not None else dev.type == "cuda":
        forward = torch.compile(ds_engine.module)
    return Session(spec, dev, corpus, model, optimizer, ds_engine, forward)


def preflight(specs: list[RunSpec], data_dir: Path | None = None) -> None:
    """Load every corpus/tokenizer the specs need, so bad input fails before any run starts.

    Raises the data layer's ValueError/FileNotFoundError naming the path and the fix; nothing
    is written to the results cache. Loaded corpora stay memoised for the runs that follow.
    """
    for data, tokenizer in dict.fromkeys((s.data, s.tokenizer) for s in specs):
        load_corpus(data, tokenizer, data_dir or default_data_dir())


def train(spec: RunSpec, **kwargs) -> dict:
    """Train `spec` to completion (or divergence) and return its result record."""
    return run(spec, **kwargs).result


def run(
    spec: RunSpec,
    *,
    device: str | None = None,
    data_dir: Path | None = None,
    progress: bool = False,
    compile_model: bool | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 0,
) -> Trained:
    """Train `spec`; return the result record together with the model and its corpus.

    With `checkpoint_dir` and `checkpoint_every`, the loop saves a checkpoint every N steps
    and first resumes from the newest complete one found there.
    """
    t_start = time.time()
    dev = pick_device(device)
    sess = build_session(spec, dev, data_dir, compile_model)
    model, corpus, ds_engine = sess.model, sess.corpus, sess.ds_engine
    n_params = sum(p.numel() for p in model.parameters())

    probe_steps = probe_steps_of(spec)
    probes: list[dict] = []
    losses: list[torch.Tensor] = []
    curve: list[tuple[int, float]] = []
    curve_every = max(1, spec.steps // CURVE_POINTS)
    check_every = 1 if dev.type == "cpu" else 25  # a host sync per step is cheap on CPU only
    diverged_step: int | None = None
    qat_on = False
    start = 0
    ckpt = Checkpointer(checkpoint_dir, checkpoint_every) if checkpoint_dir and checkpoint_every else None
    if ckpt and (state := ckpt.load(ds_engine)) is not None:
        start, curve, probes, qat_on = state["step"], [tuple(c) for c in state["curve"]], state["probes"], state["qat_on"]
        model.set_qat(spec.bits if qat_on else None)
    t_train = time.time()

    def flush(steps_done: int) -> int | None:
        """Move the pending losses to the curve; the first non-finite step, if any."""
        window = torch.stack(losses).float().cpu()
        first = steps_done - len(losses)
        for i in range(len(losses)):
            if (first + i) % curve_every == 0 or first + i == spec.steps - 1:
                curve.append((first + i, float(window[i])))
        losses.clear()
        bad = (~torch.isfinite(window)).nonzero()
        return first + int(bad[0]) if len(bad) else None

    steps = range(start, spec.steps)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc=f"train {spec.short_id} {spec.size} {bits_label(spec.bits)}", unit="step", leave=False,
                     initial=start, total=spec.steps)
    for step in steps:
        if step in probe_steps:
            probes.append({"step": step, "label": probe_steps[step], **grid_probe(model, spec.bits)})
        if not qat_on and step >= spec.qat_start_step:
            model.set_qat(spec.bits)
            qat_on = True
        loss = sess.step(step)
        losses.append(loss.detach())
        fault_point("step")
        done = step + 1
        save_now = ckpt is not None and ckpt.due(done, spec.steps)
        if done % check_every == 0 or done == spec.steps or save_now:
            diverged_step = flush(done)
            if diverged_step is not None:
                break
        if save_now:
            ckpt.save(ds_engine, done, {"step": done, "curve": curve, "probes": probes, "qat_on": qat_on})
    train_time = time.time() - t_train

    base = provenance(spec, dev, n_params, t_start)
    if diverged_step is not None:
        log.warning("run %s diverged at step %d", spec.short_id, diverged_step)
    result = result_record(spec, model, corpus, dev, base, curve=curve, probes=probes, probe_steps=probe_steps,
                           diverged_step=diverged_step, train_time=train_time, t_start=t_start, resumed_from=start)
    return Trained(result, model, corpus)


def result_record(spec: RunSpec, model: GPT, corpus: Corpus, dev: torch.device, base: dict, *, curve: list,
                  probes: list, probe_steps: dict[int, str], diverged_step: int | None, train_time: float,
                  t_start: float, resumed_from: int = 0, tokens_per_s: float | None = None) -> dict:
    """The cached result of a trained model: evaluation, round trips, probes, timings.

    Shared by the single-run loop and the packed one, so both record exactly the same fields.
    """
    if diverged_step is not None:
        return {**base, "status": "diverged", "diverged_step": diverged_step, "diverged_reason": "non-finite loss",
                "loss_curve": curve, "tokens_seen": (diverged_step + 1) * spec.batch_tokens,
                "train_time_s": train_time, "wall_time_s": time.time() - t_start}
    probes = list(probes)
    if spec.steps in probe_steps:
        probes.append({"step": spec.steps, "label": probe_steps[spec.steps], **grid_probe(model, spec.bits)})
    fault_point("before_eval")
    trained = evaluate(model, corpus, spec.seq_len, spec.val_tokens, dev)
    rt_own = evaluate(round_trip(model, spec.bits, spec.clip_percentile).to(dev), corpus, spec.seq_len, spec.val_tokens, dev)
    rt_int8 = evaluate(round_trip(model, 8, spec.clip_percentile).to(dev), corpus, spec.seq_len, spec.val_tokens, dev)
    finite = all(math.isfinite(v) for v in (trained.bpb, rt_own.bpb, rt_int8.bpb))
    # A run that ends no better than guessing uniformly has collapsed (LR far too high):
    # its "result" says nothing about the schedule, so it is diverged, not ok.
    collapsed = finite and trained.loss >= math.log(corpus.vocab_size) - COLLAPSE_MARGIN_NATS
    why = None if finite and not collapsed else ("non-finite validation loss" if not finite else "no better than uniform")
    pre = next((p for p in probes if p["label"] == "pre_warmdown"), None)
    return {
        **base,
        "status": "ok" if why is None else "diverged",
        "diverged_step": None if why is None else spec.steps,
        "diverged_reason": why,
        "final_train_loss": curve[-1][1] if curve else float("nan"),
        "val_loss": trained.loss,
        "val_bpb": trained.bpb,
        "val_loss_q": rt_own.loss,
        "val_bpb_q": rt_own.bpb,
        "val_bpb_int8": rt_int8.bpb,
        "quant_penalty": rt_own.bpb - trained.bpb,
        "int8_penalty": rt_int8.bpb - trained.bpb,
        "val_tokens_evaluated": trained.tokens,
        "val_bytes_evaluated": trained.bytes,
        "grid_dist_int6_prewd": pre["int6_mean"] if pre else None,
        "grid_dist_own_prewd": pre["own_mean"] if pre else None,
        "grid_probes": probes,
        "loss_curve": curve,
        "tokens_seen": spec.tokens,
        "resumed_from_step": resumed_from,
        "train_time_s": train_time,  # of this process (after a resume: since the resume; packed: the pack's)
        "tokens_per_s": tokens_per_s if tokens_per_s is not None
        else (spec.steps - resumed_from) * spec.batch_tokens / max(train_time, 1e-9),
        "wall_time_s": time.time() - t_start,
    }


def probe_steps_of(spec: RunSpec) -> dict[int, str]:
    """Steps (counted in completed updates) at which weights are measured against the grids."""
    steps = {min(max(round(f * spec.steps), 0), spec.steps): "probe" for f in spec.probe_fracs}
    steps[spec.warmdown_start] = "pre_warmdown"  # C9: the last weights before any LR decay
    return steps


def provenance(spec: RunSpec, dev: torch.device, n_params: int, t_start: float) -> dict:
    import deepspeed

    return {
        "run_id": spec.run_id,
        "n_params": n_params,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
        "threads": torch.get_num_threads(),
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "deepspeed": deepspeed.__version__,
            "numpy": np.__version__,
            "engine": __version__,
        },
        "git_commit": _git_commit(),
        "host": socket.gethostname(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)),
    }


@lru_cache(maxsize=1)
def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None

"""What a run records while it trains, and the record it ends with; shared by both loops.

`RunLog` is the per-run state of a training loop: the loss curve (every `curve_every`-th
step, and the last: at most `CURVE_POINTS` points, `curve_every_of`), the grid-distance probes at their steps, whether fake quantisation has
switched on, and the first step with a non-finite loss. `engine.train.run` keeps one, the
packed loop (`engine.packed.loop`) one per run of the pack, so both record the same things
at the same steps with the same arithmetic (the packed-vs-single bit-identity tests rely on
it). Losses are flushed from the device in windows (every step on CPU, every
`CHECK_EVERY_CUDA` steps on CUDA, where a host sync per step would cost throughput).

`result_record` turns a trained model and its RunLog into the cached result (evaluation,
export round trips, probes, timings, and the curves: `loss_curve`, (step, train loss) pairs, and
`val_curve`, (step, val_bpb) pairs); `provenance` is the part that says where and with what
it ran: the machine (CPU model or GPU name, host), the torch build, and the run's `identity`
(engine.identity: its data fingerprint and numeric environment), which the cache checks before it
serves the record to a request.
"""

from __future__ import annotations

import math
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from engine import __version__
from engine.data import Corpus, data_fingerprint
from engine.evaluate import evaluate, export, grid_probe, load_export, round_trip
from engine.faults import fault_point
from engine.identity import numeric_identity
from engine.model import GPT
from engine.paths import REPO_ROOT
from engine.paths import data_dir as default_data_dir
from engine.quant import QuantPolicy, compressed_nbytes, export_nbytes
from engine.spec import RunSpec

CURVE_POINTS = 1000  # at most this many points kept of the training-loss curve (older records: 64)
COLLAPSE_MARGIN_NATS = 0.01  # val loss within this of ln(vocab) = a uniform guess = collapsed
CHECK_EVERY_CUDA = 25  # steps between loss flushes (and divergence checks) on CUDA; 1 on CPU


def curve_length(steps: int, every: int) -> int:
    """Points `RunLog.flush` keeps of a `steps`-step run: the steps divisible by `every`, and the last."""
    if steps <= 0:
        return 0
    return -(-steps // every) + (1 if (steps - 1) % every else 0)


def curve_every_of(steps: int) -> int:
    """The densest stride whose curve (`curve_length`) has at most `CURVE_POINTS` points: every step up
    to 1,000 steps, every 3rd at 2,000 (668 points), every 7th at 6,000 (858)."""
    every = max(1, -(-steps // CURVE_POINTS))
    while curve_length(steps, every) > CURVE_POINTS:
        every += 1
    return every


def check_every(dev: torch.device) -> int:
    """Steps between flushes of the pending losses: a host sync per step is cheap on CPU only."""
    return 1 if dev.type == "cpu" else CHECK_EVERY_CUDA


def stack_losses(pending: list[Tensor]) -> Tensor:
    """The pending per-step losses as one float32 CPU tensor, (n,) or (n, K) for a pack."""
    return torch.stack(pending).float().cpu()


@dataclass
class RunLog:
    """One run's loop state: curve, probes, QAT switch, divergence."""

    spec: RunSpec
    probe_steps: dict[int, str]
    curve_every: int
    probes: list[dict] = field(default_factory=list)
    curve: list[tuple[int, float]] = field(default_factory=list)
    qat_on: bool = False
    diverged_step: int | None = None

    @classmethod
    def start(cls, spec: RunSpec) -> RunLog:
        return cls(spec, probe_steps_of(spec), curve_every_of(spec.steps))

    def probe(self, step: int, model: Callable[[], GPT]) -> None:
        """Measure the weights against the grids if `step` is a probe step (`model()` only then)."""
        if step in self.probe_steps:
            self.probes.append({"step": step, "label": self.probe_steps[step],
                                **grid_probe(model(), self.spec.bits, QuantPolicy.of(self.spec))})

    def qat_due(self, step: int) -> bool:
        """Whether fake quantisation switches on before `step` (it stays on once on)."""
        return not self.qat_on and step >= self.spec.qat_start_step

    def flush(self, window: Tensor, first: int) -> int | None:
        """Move the losses (n,) of steps first.. to the curve; the first non-finite step, if any."""
        for i in range(len(window)):
            if (first + i) % self.curve_every == 0 or first + i == self.spec.steps - 1:
                self.curve.append((first + i, float(window[i])))
        bad = (~torch.isfinite(window)).nonzero()
        self.diverged_step = first + int(bad[0]) if len(bad) else None
        return self.diverged_step

    def loop_state(self, steps_done: int) -> dict:
        """What a checkpoint keeps of the loop (restored by `restore`)."""
        return {"step": steps_done, "curve": self.curve, "probes": self.probes, "qat_on": self.qat_on}

    def restore(self, state: dict) -> int:
        """Take a checkpoint's loop state; the step to resume from."""
        self.curve = [tuple(c) for c in state["curve"]]
        self.probes = state["probes"]
        self.qat_on = state["qat_on"]
        return state["step"]

    def result(self, model: GPT, corpus: Corpus, dev: torch.device, base: dict, *, train_time: float,
               t_start: float, resumed_from: int = 0, tokens_per_s: float | None = None, precision=None) -> dict:
        return result_record(self.spec, model, corpus, dev, base, curve=self.curve, probes=self.probes,
                             probe_steps=self.probe_steps, diverged_step=self.diverged_step, train_time=train_time,
                             t_start=t_start, resumed_from=resumed_from, tokens_per_s=tokens_per_s,
                             precision=precision)


def result_record(spec: RunSpec, model: GPT, corpus: Corpus, dev: torch.device, base: dict, *, curve: list,
                  probes: list, probe_steps: dict[int, str], diverged_step: int | None, train_time: float,
                  t_start: float, resumed_from: int = 0, tokens_per_s: float | None = None,
                  precision=None) -> dict:
    """The cached result of a trained model: evaluation, round trips, probes, timings, curves.

    Shared by the single-run loop and the packed one, so both record exactly the same fields.
    Every evaluation computes as the run trained (`precision`; None: the device default).

    Curves: `loss_curve` is the RunLog's (step, train loss) pairs (step = updates before it, so
    0..steps-1; at most `CURVE_POINTS`); `val_curve` the (step, val_bpb) pairs of the validation
    evaluations, step = updates completed. The loops evaluate only once, after the last step (no
    evaluation compute during training), so `val_curve` holds that one point, `(steps, val_bpb)`,
    and is empty for a run stopped by a non-finite loss. Records made before it have no `val_curve`
    (readers fall back to `val_bpb`; `engine.runs.val_points`).
    """
    if diverged_step is not None:
        return {**base, "status": "diverged", "diverged_step": diverged_step, "diverged_reason": "non-finite loss",
                "loss_curve": curve, "val_curve": [], "tokens_seen": (diverged_step + 1) * spec.batch_tokens,
                "train_time_s": train_time, "wall_time_s": time.time() - t_start}
    policy = QuantPolicy.of(spec)
    probes = list(probes)
    if spec.steps in probe_steps:
        probes.append({"step": spec.steps, "label": probe_steps[spec.steps], **grid_probe(model, spec.bits, policy)})
    fault_point("before_eval")
    trained = evaluate(model, corpus, spec.seq_len, spec.val_tokens, dev, precision)
    own = export(model, spec.bits, policy)  # the artifact the run would ship: evaluated and measured
    rt_own = evaluate(load_export(model, own).to(dev), corpus, spec.seq_len, spec.val_tokens, dev, precision)
    rt_int8 = evaluate(round_trip(model, 8, policy).to(dev), corpus, spec.seq_len, spec.val_tokens, dev,
                       precision)
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
        # Size of the own-bit-width export (R5): as stored (int8 codes, fp16 scales, float tensors) and
        # as parameter-golf counts its artifact (torch.save + zlib level 9)
        "export_bytes": export_nbytes(own),
        "export_bytes_compressed": compressed_nbytes(own),
        "val_tokens_evaluated": trained.tokens,
        "val_bytes_evaluated": trained.bytes,
        "grid_dist_int6_prewd": pre["int6_mean"] if pre else None,
        "grid_dist_own_prewd": pre["own_mean"] if pre else None,
        "grid_probes": probes,
        "loss_curve": curve,
        "val_curve": [(spec.steps, trained.bpb)],  # the one evaluation the loop makes, after the last step
        "tokens_seen": spec.tokens,
        # R1's predictor of the optimal QAT fraction (arXiv 2509.22935): tokens / (params x bits / 8),
        # over every parameter (fp16 = 16 bits), as that paper counts the model's size in bytes
        "tokens_per_param_byte": spec.tokens / (base["n_params"] * spec.bits / 8),
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


def provenance(spec: RunSpec, dev: torch.device, n_params: int, t_start: float, precision=None,
               data_dir=None) -> dict:
    """Where and how a run was made; `precision` is its engine.precision.Precision (None: the device default),
    `data_dir` the data directory it loaded its corpus from (None: the default)."""
    import deepspeed

    from engine.precision import default_precision

    precision = precision or default_precision(dev)
    threads = torch.get_num_threads()
    return {
        "run_id": spec.run_id,
        "n_params": n_params,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({cpu_model()})",
        "cpu_model": cpu_model(),
        "threads": threads,
        # which physical GPU(s) this process could see (a local worker sees only its own)
        "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES") if dev.type == "cuda" else None,
        **precision.describe(),  # runtime settings, not part of the run id: checked through "identity"
        "identity": run_identity(spec, dev, threads, precision.name, data_dir),
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,  # the build: None for a CPU-only wheel
            "torch_git": torch.version.git_version,
            "deepspeed": deepspeed.__version__,
            "numpy": np.__version__,
            "engine": __version__,
        },
        "git_commit": _git_commit(),
        "host": socket.gethostname(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)),
    }


def run_identity(spec: RunSpec, dev: torch.device, threads: int, precision: str, data_dir=None) -> dict:
    """The checked part of a record (engine.identity): the data fingerprint and the numeric environment."""
    return {"data": data_fingerprint(spec.data, spec.tokenizer, data_dir or default_data_dir()),
            "numeric": numeric_identity(dev.type, threads, precision)}


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """This machine's CPU model ('model name' of /proc/cpuinfo; else what platform says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                return value.strip()
    except OSError:  # no /proc (macOS, a sandbox): what platform knows, below
        pass
    return platform.processor() or platform.machine() or "unknown"


@lru_cache(maxsize=1)
def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None

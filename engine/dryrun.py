"""A dry run of a whole profile: every distinct configuration trains a few steps, nothing is cached.

The ten-minute check before a cluster-week: a profile's 1,506 runs fall into a few dozen
configurations that differ in what can fail on a device (architecture, micro-batch, QAT or
not, optimiser, precision, compile); one run of each, a few steps long, shows that each fits
its device, compiles and steps, with its peak memory and step time, before any run that
counts is started. The runs go through the sweep's own executor (one per device at once) and
the records come back to the driver, which prints them and writes nothing to the cache.

Substitutions are explicit and printed: `data`/`tokenizer` (on a machine without FineWeb the
paper's configurations train on KJV with a 1,024-piece SentencePiece model, the same
vocabulary size as sp1024, so the architecture is unchanged), `micro_steps` (micro-batches per
step: all of them on a GPU; on a CPU one, so that a paper-size micro-batch can be stepped at
all), `gpu_memory` (the device the micro-batch is planned for). Packs (the small and tiny
profiles train seeds in packs) are not dry-run: each configuration runs as a single run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from engine.spec import RunSpec, bits_label


@dataclass(frozen=True)
class DryConfig:
    """One configuration of a profile: its representative spec, shortened, and how many runs share it."""

    key: tuple
    spec: RunSpec  # the dry run's spec (short, substituted)
    runs: int
    micro_seqs: int
    accum_steps: int  # of the real runs
    est_peak_bytes: int


def config_key(spec: RunSpec) -> tuple:
    """What makes two runs the same configuration on a device (their shapes, graphs and optimiser state)."""
    return (spec.size, spec.tokenizer, spec.seq_len, spec.batch_seqs, spec.quantised, spec.qat_start > 0,
            spec.optimizer, spec.quantize_embeddings, spec.keep_float, spec.keep_float_numel)


def dry_configs(specs: Iterable[RunSpec], *, steps: int, gpu_memory: int, precision: str,
                micro_steps: int | None, sizes: set[str] | None = None, data: str | None = None,
                tokenizer: str | None = None) -> list[DryConfig]:
    """The profile's distinct configurations, each as a `steps`-step spec of `micro_steps` planned
    micro-batches (None: all of the real batch)."""
    from engine.memplan import plan_run

    groups: dict[tuple, list[RunSpec]] = {}
    for s in specs:
        if sizes is None or s.size in sizes:
            groups.setdefault(config_key(s), []).append(s)
    out = []
    for key, group in groups.items():
        first = group[0]
        plan = plan_run(first, gpu_memory, precision=precision)
        accum = plan.accum_steps if micro_steps is None else min(micro_steps, plan.accum_steps)
        changes = dict(steps=steps, batch_tokens=plan.micro_seqs * accum * first.seq_len, probe_fracs=(),
                       val_tokens=first.seq_len * plan.micro_seqs, muon_momentum_warmup_steps=min(steps, 2))
        if data:
            changes["data"] = data
        if tokenizer:
            changes["tokenizer"] = tokenizer
        out.append(DryConfig(key, first.replace(**changes), len(group), plan.micro_seqs, plan.accum_steps,
                             plan.est_peak_bytes))
    return out


def describe(c: DryConfig) -> str:
    s = c.spec
    arm = bits_label(s.bits) + (f" QAT@{s.qat_start:g}" if s.qat_start > 0 and s.quantised else "")
    return f"{s.size} {arm} {s.optimizer}"


def failed(result: dict | str) -> bool:
    """An error, or a loss that went non-finite within the dry run's few steps."""
    return isinstance(result, str) or result.get("diverged_reason") == "non-finite loss"


def run_dry(configs: list[DryConfig], executor, *, precision: str | None, compile: bool | None,
            data_dir) -> list[tuple[DryConfig, dict | str]]:
    """Train every configuration through `executor`; (config, record) or (config, error line) each."""
    from engine.executors import error_line
    from engine.scheduling import Task

    by_id: dict[str, list[DryConfig]] = {}
    for c in configs:  # configurations that shrink to one dry spec share its run
        by_id.setdefault(c.spec.run_id, []).append(c)
    tasks = [Task((group[0].spec,)) for group in by_id.values()]
    out = []
    results = executor.run(tasks, data_dir=str(data_dir), checkpoint_dir=None, checkpoint_every=0,
                           progress=False, precision=precision, compile=compile)
    for task, rec in results:
        for c in by_id[task.specs[0].run_id]:
            out.append((c, error_line(rec) if isinstance(rec, BaseException) else rec[0]))
    return sorted(out, key=lambda x: configs.index(x[0]))


def format_results(results: list[tuple[DryConfig, dict | str]]) -> str:
    """The dry run's table: per configuration ok or the error, peak memory against the plan, step time."""
    gib = 2**30
    head = ("configuration", "runs", "micro x accum", "ran", "est GiB", "peak GiB", "step s", "compile s", "status")
    rows = []
    for c, r in results:
        ran = f"{c.spec.batch_seqs // c.micro_seqs}/{c.accum_steps}"
        if isinstance(r, str):
            rows.append((describe(c), str(c.runs), f"{c.micro_seqs} x {c.accum_steps}", ran,
                         f"{c.est_peak_bytes / gib:.1f}", "-", "-", "-", f"FAILED: {r}"))
            continue
        step = (r["train_time_s"] - r.get("compile_s", 0.0)) / max(1, c.spec.steps)
        peak = r["peak_memory_bytes"] / gib
        kind = "" if r["peak_memory_kind"] == "cuda_max_allocated" else " (RSS)"
        # a few steps cannot beat a uniform guess (the record calls that collapsed); a non-finite loss is a failure
        status = "FAILED: non-finite loss" if r.get("diverged_reason") == "non-finite loss" else "ok"
        rows.append((describe(c), str(c.runs), f"{c.micro_seqs} x {c.accum_steps}", ran, f"{c.est_peak_bytes / gib:.1f}",
                     f"{peak:.2f}{kind}", f"{step:.2f}", f"{r.get('compile_s', 0.0):.1f}", status))
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(line, widths)) for line in (head, *rows))

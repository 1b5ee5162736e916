"""Options that the command line and the pytest plugin share, defined once as data.

Each `Option` has a flag stem, a dest, help, type, default and choices; `argparse_kwargs()`
gives what both `argparse.ArgumentParser.add_argument` and pytest's `group.addoption` take.
The CLI adds them as `--cache-dir`, the plugin as `--qat-cache-dir` (dest `qat_cache_dir`):

    for opt in shared_options("cache_dir", "on_corrupt", "device", "pack", "progress"):
        group.addoption(f"--qat-{opt.flag}", dest=f"qat_{opt.dest}", **opt.argparse_kwargs())

Defaults that come from the environment are read when a parser is built, never at import.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from engine.identity import ON_MISMATCH_CHOICES  # pure (no torch): what a cached run made elsewhere gets

ON_CORRUPT_ENV = "QAT_ON_CORRUPT"
ON_CORRUPT_CHOICES = ("error", "quarantine")
EXECUTOR_CHOICES = ("local", "ray", "slurm")  # engine.executors implements each
PRECISION_CHOICES = ("fp32", "bf16")  # engine.precision.PRECISIONS (kept here: parsing needs no torch)


def default_on_corrupt() -> str:
    """$QAT_ON_CORRUPT if set, else 'error'."""
    return os.environ.get(ON_CORRUPT_ENV) or "error"


# --- value types: one parse function per kind of value, shared by the CLI and the plugin ---------
# Each raises argparse.ArgumentTypeError (argparse and pytest turn it into one `error:` line
# naming the flag) with the value, what is allowed and how to fix it.


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer ({what})") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (threads, jobs)."""
    n = _int(text, "give a whole number >= 1")
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} must be >= 1")
    return n


def thread_count(text: str) -> int:
    """Torch CPU threads: an integer in [1, 4 x the cores]."""
    from engine.runtime import THREADS_PER_CORE_MAX, max_threads  # imports torch: only when --threads is given

    n = positive_int(text)
    if n > max_threads():
        raise argparse.ArgumentTypeError(f"{n} threads on {os.cpu_count()} core(s): give at most {max_threads()} "
                                         f"({THREADS_PER_CORE_MAX} per core), or leave it out to use the cores")
    return n


def non_negative_int(text: str) -> int:
    """An integer >= 0 (checkpoint intervals: 0 = never)."""
    n = _int(text, "give a whole number >= 0")
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n} must be >= 0 (0 = never)")
    return n


def pack_size(text: str) -> int:
    """Seed packing: K >= 1 runs per pack, 1 = unpacked. 0 and negatives are refused (they used to mean two things)."""
    n = _int(text, "give the number of runs per pack, 1 = unpacked")
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is not a pack size: give K >= 1 runs per pack (1 = unpacked)")
    return n


def device_name(text: str) -> str:
    """'cpu', 'cuda' or 'cuda:N' (whether CUDA is there is checked before a run starts: engine.runtime)."""
    from engine.runtime import DEVICE_HELP, is_device_name  # imports torch: only when --device is given

    if is_device_name(text):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not a training device; allowed: {DEVICE_HELP}")


@dataclass(frozen=True)
class Option:
    flag: str  # flag stem: "cache-dir" -> --cache-dir (CLI), --qat-cache-dir (pytest)
    help: str
    type: Callable[[str], Any] | None = None
    default: Any = None  # a value, or a zero-argument function called when a parser is built
    choices: tuple | None = None
    action: Any = None  # "store_true" for switches, argparse.BooleanOptionalAction for --x/--no-x

    @property
    def dest(self) -> str:
        return self.flag.replace("-", "_")

    def argparse_kwargs(self) -> dict[str, Any]:
        default = self.default() if callable(self.default) else self.default
        kw: dict[str, Any] = {"help": self.help, "default": default}
        if self.action:
            kw["action"] = self.action
        if self.type is not None:
            kw["type"] = self.type
        if self.choices is not None:
            kw["choices"] = self.choices
        return kw


SHARED: dict[str, Option] = {
    "cache_dir": Option(
        "cache-dir", type=Path,
        help="results cache (default: cache/ or $QAT_CACHE_DIR); tokenised data goes to <cache>/_data"),
    "on_corrupt": Option(
        "on-corrupt", choices=ON_CORRUPT_CHOICES, default=default_on_corrupt,
        help="a corrupt cache record: stop with an error (default; $QAT_ON_CORRUPT) or move it aside and retrain"),
    "on_mismatch": Option(
        "on-mismatch", choices=ON_MISMATCH_CHOICES, default="error",
        help="a cached run trained on other data or in another numeric environment (CPU threads, device, "
             "precision) than this one would be: stop before training with an error naming the difference "
             "(default), or retrain it (the old record is kept in <cache>/_superseded)"),
    "device": Option(
        "device", type=device_name,
        help="training device: cpu, cuda (every GPU, one worker each), cuda:N (default: cuda if available)"),
    "pack": Option(
        "pack", type=pack_size,
        help="train up to K >= 1 same-shape runs at once (seed packing; 1 = unpacked; default: the profile's `pack`)"),
    "progress": Option(
        "progress", action="store_true", default=False,
        help="show a progress bar per training run"),
    "threads": Option(
        "threads", type=thread_count,
        help="torch CPU threads per process (default: the cores, shared among parallel workers)"),
    # --- how a run computes (engine.precision): runtime settings, not part of a run's identity ---
    "precision": Option(
        "precision", choices=PRECISION_CHOICES,
        help="fp32, or bf16 autocast over fp32 weights (default: bf16 on CUDA, fp32 on CPU)"),
    "compile": Option(
        "compile", action=argparse.BooleanOptionalAction,
        help="torch.compile the model (inductor; default: on for CUDA, off for CPU)"),
    # --- where a sweep trains (engine.executors): `sweep` and the plugin's controller ---
    "executor": Option(
        "executor", choices=EXECUTOR_CHOICES, default="local",
        help="where missing runs train: local processes (one per GPU, else one per core), a Ray cluster, "
             "or Slurm job arrays via submitit (default: local)"),
    "jobs": Option(
        "jobs", type=positive_int,
        help="parallel workers (local: default one per GPU, else one per core; ray: CPUs of a local cluster "
             "started here; slurm: array tasks running at once)"),
    "retries": Option(
        "retries", type=non_negative_int, default=1,
        help="re-runs of a task whose worker died (OOM kill, node loss, pre-emption; default 1)"),
    "checkpoint_dir": Option(
        "checkpoint-dir", type=Path,
        help="resume checkpoints of single runs (default: <cache>/_checkpoints when the profile checkpoints); "
             "on a cluster, a directory every node can read and write"),
    "ray_address": Option(
        "ray-address",
        help="Ray cluster to join ('auto', 'ray://head:10001'); default: start a local one"),
    "ray_cpus_per_task": Option(
        "ray-cpus-per-task", type=positive_int, default=1, help="CPUs Ray reserves per task (default 1)"),
    "slurm_partition": Option("slurm-partition", help="Slurm partition (default: the site's)"),
    "slurm_account": Option("slurm-account", help="Slurm account to charge (default: yours)"),
    "slurm_time": Option(
        "slurm-time", type=positive_int, default=60, help="time limit of one array task, minutes (default 60)"),
    "slurm_cpus_per_task": Option(
        "slurm-cpus-per-task", type=positive_int, default=8, help="CPUs per array task (default 8)"),
    "slurm_folder": Option(
        "slurm-folder", type=Path, default=Path("slurm_logs"),
        help="submitit's job folder (pickles, logs): on a file system the jobs and this process share"),
    "slurm_max_array": Option(
        "slurm-max-array", type=positive_int, default=1000,
        help="tasks per job array, at most the site's MaxArraySize (`scontrol show config`; Slurm's default "
             "1001): a longer sweep is split into several arrays (default 1000)"),
    "slurm_local": Option(
        "slurm-local", action="store_true", default=False,
        help="run the Slurm job arrays as local processes (submitit's local executor: a dry run, tests)"),
}

# The settings of `engine.executors.executor_from_options`, in the order --help lists them.
EXECUTOR_OPTIONS = ("executor", "jobs", "retries", "checkpoint_dir", "ray_address", "ray_cpus_per_task",
                    "slurm_partition", "slurm_account", "slurm_time", "slurm_cpus_per_task", "slurm_folder",
                    "slurm_max_array", "slurm_local")


def shared_options(*names: str) -> list[Option]:
    """The named shared options, in the order given (KeyError lists the known names)."""
    unknown = [n for n in names if n not in SHARED]
    if unknown:
        raise KeyError(f"unknown shared option(s) {unknown}; known: {sorted(SHARED)}")
    return [SHARED[n] for n in names]


def add_shared(parser, *names: str, prefix: str = "", dest_prefix: str = "") -> None:
    """Add the named options to an argparse parser/group (`prefix` goes in the flag, `dest_prefix` in the dest)."""
    for opt in shared_options(*names):
        parser.add_argument(f"--{prefix}{opt.flag}", dest=f"{dest_prefix}{opt.dest}", **opt.argparse_kwargs())

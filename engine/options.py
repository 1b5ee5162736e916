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

ON_CORRUPT_ENV = "QAT_ON_CORRUPT"
ON_CORRUPT_CHOICES = ("error", "quarantine")


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
    action: str | None = None  # "store_true" for switches

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
    "device": Option(
        "device", type=device_name,
        help="training device: cpu, cuda, cuda:N (default: cuda if available, under xdist cuda:<worker mod GPUs>)"),
    "pack": Option(
        "pack", type=pack_size,
        help="train up to K >= 1 same-shape runs at once (seed packing; 1 = unpacked; default: the profile's `pack`)"),
    "progress": Option(
        "progress", action="store_true", default=False,
        help="show a progress bar per training run"),
    "threads": Option(
        "threads", type=positive_int,
        help="torch CPU threads per process (default: the cores, shared among parallel workers)"),
}


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

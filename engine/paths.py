"""Where the engine keeps things on disk: the results cache and, inside it, the data.

    <cache>/                 run records (engine.cache); default: the checkout's cache/,
                             or $QAT_CACHE_DIR, or --cache-dir / --qat-cache-dir
    <cache>/_data/           tokenised corpora and trained tokenizers (engine.data);
                             $QAT_DATA_DIR overrides it

The data directory follows the cache, so a cache placed elsewhere (a read-only checkout,
a shared scratch disk) never writes into the checkout. Environment variables are read
when a path is asked for, never at import.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_ENV = "QAT_CACHE_DIR"
DATA_ENV = "QAT_DATA_DIR"
DATA_SUBDIR = "_data"
QUARANTINE_SUBDIR = "_quarantine"


def default_cache_dir() -> Path:
    """$QAT_CACHE_DIR, else the checkout's cache/."""
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / "cache")


def data_dir(cache_dir: Path | str | None = None) -> Path:
    """Tokenised data of the cache at `cache_dir` (default: the default cache); $QAT_DATA_DIR wins."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / DATA_SUBDIR

"""Where the engine keeps things on disk: the results cache and, inside it, the data; and where the
shipped fixtures (claims, profiles) are read from.

    <cache>/                 run records (engine.cache); default: the checkout's cache/,
                             or $QAT_CACHE_DIR, or --cache-dir / --qat-cache-dir; from a
                             non-editable install (no checkout): ./cache in the working directory
    <cache>/_data/           tokenised corpora and trained tokenizers (engine.data);
                             $QAT_DATA_DIR overrides it

The data directory follows the cache, so a cache placed elsewhere (a read-only checkout,
a shared scratch disk) never writes into the checkout. Environment variables are read
when a path is asked for, never at import.

The fixtures live in the checkout's fixtures/ (the project's layout: people edit them there). A
wheel has no checkout, so the build (setup.py) copies them into the package as engine/_fixtures/;
`fixtures_dir()` gives the checkout's folder when there is one, else that copy.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
INSTALLED_FIXTURES = Path(__file__).resolve().parent / "_fixtures"  # a wheel's copy (setup.py's build hook)
CACHE_ENV = "QAT_CACHE_DIR"
DATA_ENV = "QAT_DATA_DIR"
DATA_SUBDIR = "_data"
QUARANTINE_SUBDIR = "_quarantine"


def in_checkout() -> bool:
    """Whether the engine runs from a source checkout (editable install, or none), not an installed copy.

    An installed copy's REPO_ROOT is site-packages (or dist-packages), which holds no pyproject.toml;
    a cache or fixtures folder there would be another package's or nobody's.
    """
    return REPO_ROOT.name not in ("site-packages", "dist-packages") and (REPO_ROOT / "pyproject.toml").is_file()


def fixtures_dir() -> Path:
    """The checkout's fixtures/ (claims.toml, profiles/); from an installed copy, the one it carries."""
    return REPO_ROOT / "fixtures" if in_checkout() else INSTALLED_FIXTURES


def default_cache_dir() -> Path:
    """$QAT_CACHE_DIR, else the checkout's cache/; from an installed copy ./cache (never inside site-packages)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return REPO_ROOT / "cache" if in_checkout() else Path.cwd() / "cache"


def data_dir(cache_dir: Path | str | None = None) -> Path:
    """Tokenised data of the cache at `cache_dir` (default: the default cache); $QAT_DATA_DIR wins."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / DATA_SUBDIR

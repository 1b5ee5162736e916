"""The checkout's root: `pytest .` collects the unit tests (tests/) and not the study.

The study (hypotheses/) trains runs and writes reports/, so it is collected only when named:
`pytest hypotheses/ ...`. (pytest's `norecursedirs` matches directory names anywhere, so it
would also drop tests/hypotheses/, the claim layer's unit tests.) Nothing else lives here: the
study's plugin is loaded by hypotheses/conftest.py, so `pytest tests/` never loads it.
"""

from pathlib import Path

STUDY = Path(__file__).resolve().parent / "hypotheses"


def pytest_ignore_collect(collection_path, config):
    if collection_path != STUDY:
        return None
    named = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    return not any(p == STUDY or STUDY in p.parents for p in named)

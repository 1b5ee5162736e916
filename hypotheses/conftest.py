"""pytest wiring for the study only: the claim tests in this directory load the plugin.

Here rather than in a root conftest.py so that `pytest tests/` (the unit tests) never loads
the study: no profile, no cache, no reports/ written. `pytest hypotheses/ ...` makes this
an initial conftest, which is where pytest accepts `pytest_plugins`.
"""

pytest_plugins = ["hypotheses.plugin"]

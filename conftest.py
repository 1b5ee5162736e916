"""pytest wiring: load the study's plugin (options, run access, verdicts, report)."""

pytest_plugins = ["hypotheses.plugin"]

"""Extending the suite (issue 23 item 3): a claim added as data plus a decider, on a profile of
its own, runs through the unchanged plugin, report and junit_check.

The claim record, its decider module, its test and the profile are docs/extending.md's own
snippets (so the page stays runnable). They go to a temporary directory laid out like
hypotheses/: the decider module joins ``DECIDER_MODULES`` there (what a new family does in
hypotheses/claims.py), the claims file is passed with ``--qat-claims`` / ``--claims-file``. No
training: the cache holds synthetic records, so each verdict is known in advance (X1 true at
t10k, false at t20k).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from engine.cache import ResultsCache
from engine.design import load_profile

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "extending.md"

FAMILY = "x_family"  # the toy claim's decider module, as hypotheses/<family>.py would be
# The toy family joins the study's (what a new family does in hypotheses/claims.py); `-p hypotheses.plugin`
# loads the plugin, as hypotheses/conftest.py does for the study.
CONFTEST = f"""
import hypotheses.claims

hypotheses.claims.DECIDER_MODULES = (*hypotheses.claims.DECIDER_MODULES, {FAMILY!r})
"""


def snippet(marker: str) -> str:
    """The one fenced code block of docs/extending.md that contains ``marker``."""
    blocks = [b for b in re.findall(r"^```\w*\n(.*?)^```", DOC.read_text(), re.S | re.M) if marker in b]
    assert len(blocks) == 1, f"docs/extending.md: expected one code block with {marker!r}, found {len(blocks)}"
    return blocks[0]


def fill(cache_dir: Path, profile_path: Path, better_wd: dict[str, float]) -> None:
    """Synthetic records: val_bpb_q lowest at ``better_wd[size]`` by 0.046 bpb (X1's delta: 0.02),
    seed noise 0.001."""
    rng = np.random.default_rng(0)
    cache = ResultsCache(cache_dir)
    for s in load_profile(profile_path).design("toy").specs:
        bpb = 2.0 + 0.2 * abs(s.warmdown - better_wd[s.size]) + 0.001 * rng.standard_normal()
        cache.put(s, {"status": "ok", "diverged_step": None, "val_bpb": bpb, "val_bpb_q": bpb, "val_bpb_int8": bpb,
                      "quant_penalty": 0.0, "n_params": 10_000 if s.size == "t10k" else 18_400})


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict[str, Path]:
    """The toy study's files (claims file, profile, decider module, test, conftest) and a filled cache."""
    tmp = tmp_path_factory.mktemp("extending")
    root = tmp / "study"
    root.mkdir()
    files = {"claims": root / "claims.toml", "profile": root / "toy.toml", "family": root / f"{FAMILY}.py",
             "test": root / "test_x_claims.py", "conftest": root / "conftest.py"}
    files["claims"].write_text(snippet("[X1.thresholds]"))
    files["profile"].write_text(snippet("[profile]"))
    files["family"].write_text(snippet('@decider("X1")'))
    files["test"].write_text(snippet('@pytest.mark.claim("X1")'))
    files["conftest"].write_text(CONFTEST)
    files["cache"], files["reports"] = tmp / "cache", tmp / "reports"
    fill(files["cache"], files["profile"], {"t10k": 0.33, "t20k": 0.10})
    return files


@pytest.fixture(scope="module")
def suite_run(study) -> subprocess.CompletedProcess:
    """The toy study through the plugin, as `pytest hypotheses/` runs the real one (no training)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(study["test"]), "-p", "hypotheses.plugin", "-p", "no:cacheprovider",
         "-o", "junit_family=xunit1", "--qat-claims", str(study["claims"]), "--qat-profile", str(study["profile"]),
         "--qat-cache-dir", str(study["cache"]), "--qat-no-train", "--qat-report-dir", str(study["reports"])],
        cwd=study["test"].parent, capture_output=True, text=True, timeout=300)


def test_the_plugin_decides_the_toy_claim(study, suite_run):
    """(a) one case per size; the true claim passes, the false one FAILS (exit 1: data, not a pipeline error)."""
    out = suite_run.stdout
    assert suite_run.returncode == 1 and "1 failed, 1 passed" in out, out[-3000:] + suite_run.stderr[-2000:]
    assert "CONTRADICTED X1[t20k]" in out and "observed: X1[t20k]: wd 0.10 - wd 0.33 = -0.04" in out, out[-3000:]
    props = [{p.get("name"): p.get("value") for p in case.iter("property")}
             for case in ET.parse(study["reports"] / "junit.xml").getroot().iter("testcase")]
    assert {(p["qat_cell"], p["qat_verdict"]) for p in props} == {("t10k", "reproduced"), ("t20k", "contradicted")}
    assert all(p["qat_claim_id"] == "X1" and p["qat_profile"] == "toy" and p["qat_stat_region"] == "> 0.02"
               and p["qat_stat_paper_effect"] == "wd 0.33 better" for p in props)


def test_the_report_shows_the_toy_claims_verdicts(study, suite_run):
    """(b) the verdict rows and the report pages name the claim and each of its test cases."""
    rows = json.loads((study["reports"] / "verdicts.json").read_text())["verdicts"]
    assert {(r["claim_id"], r["cell"], r["verdict"]) for r in rows} == {("X1", "t10k", "reproduced"),
                                                                         ("X1", "t20k", "contradicted")}
    summary = (study["reports"] / "summary.md").read_text()
    x1 = summary[summary.index('<a id="claim-x1"></a>'):]  # the claim's section: one row per test case
    assert re.search(r"^\| t10k \| reproduced \|", x1, re.M), x1
    assert re.search(r"^\| t20k \| \W*contradicted", x1, re.M | re.I), x1
    assert 'id="claim-x1"' in (study["reports"] / "report.html").read_text()


def test_the_report_states_the_toy_claim_from_its_claims_file(study, suite_run):
    """The plugin hands the report its --qat-claims file: X1's statement is shown, and the
    study's own claims (not in that file) are not listed as 'no verdict'."""
    summary = (study["reports"] / "summary.md").read_text()
    assert "At FP16 a warmdown of 0.33 beats one of 0.10" in summary and "[C1](#claim-c1)" not in summary


def test_junit_check_expects_the_claims_of_the_claims_file(study, suite_run, capsys):
    """(c) the check's expected claims come from the claims file given: a contradicted claim is data
    (exit 0); the study's file expects C1..R5, which this run lacks (exit 1)."""
    from hypotheses.junit_check import main as junit_check

    xml = study["reports"] / "junit.xml"
    capsys.readouterr()
    assert junit_check([str(xml), "--claims-file", str(study["claims"])]) == 0
    assert "2 verdicts: 1 reproduced, 1 contradicted" in capsys.readouterr().out
    assert junit_check([str(xml)]) == 1
    assert "claim C1: no test case recorded a verdict" in capsys.readouterr().err
    # a claim added to the file whose tests never ran is a pipeline problem, without editing junit_check
    more = study["claims"].with_name("more.toml")
    more.write_text(study["claims"].read_text() + snippet("[X1.thresholds]").replace("[X1", "[X2"))
    assert junit_check([str(xml), "--claims-file", str(more)]) == 1
    assert "claim X2: no test case recorded a verdict" in capsys.readouterr().err


@pytest.fixture
def registered(study, monkeypatch):
    """X1's family imported in this process the way the suite finds it (DECIDER_MODULES), then forgotten."""
    import hypotheses.claims
    from hypotheses.verdict import unregister

    monkeypatch.syspath_prepend(str(study["family"].parent))
    monkeypatch.setattr(hypotheses.claims, "DECIDER_MODULES", (*hypotheses.claims.DECIDER_MODULES, FAMILY))
    yield study
    unregister("X1")
    sys.modules.pop(FAMILY, None)


def test_the_toy_claim_decides_and_calibrates_without_pytest(registered):
    from hypotheses.calibration import calibrate
    from hypotheses.checks import check_claim, check_verdicts
    from hypotheses.claims import load_claims
    from hypotheses.decide import decide_all

    claims, profile = load_claims(registered["claims"]), load_profile(registered["profile"])
    check_verdicts(profile, claims)
    x1 = claims["X1"].at_profile(profile)
    check_claim(x1, profile)
    assert x1.decider == f"{FAMILY}.decide_x1" and x1.scenarios == f"{FAMILY}.scenarios_x1"
    results = decide_all(profile, ResultsCache(registered["cache"]), claims)  # the report command's path
    assert {(r.cell_id, r.verdict.outcome) for r in results} == {("t10k", "reproduced"), ("t20k", "contradicted")}
    (row,) = calibrate(claims, profile, n_draws=100, correlated_rho=None)  # @scenarios: type-I errors and power
    assert row.claim_id == "X1" and row.false_contradict <= 0.12 and row.false_reproduce <= 0.12
    assert row.power_reproduce > 0.5 and row.power_contradict > 0.5

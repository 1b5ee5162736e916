"""The pytest plugin end to end (pytester subprocesses over the real claim tests).

No training here: caches are filled with synthetic records, so each verdict is known in
advance. This is the end-to-end negative control: the same claim test passes on a table
where the claim is true and FAILS on one where it is false.
"""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from engine.cache import ResultsCache
from engine.design import load_profile

REPO = Path(__file__).resolve().parents[2]
pytest_plugins = ["pytester"]

PROFILE = """
[profile]
name = "unit"
description = "plugin test profile"
train_without_gpu = false

[defaults]
steps = 10
batch_tokens = 128
seq_len = 16

[roles]
int4_small = ["t10k", "t20k"]
int4_large = ["t45k"]

[designs.phase2]
grid = { size = ["t10k", "t20k"], bits = [16, 8, 6], wd = [0.10, 0.33, 0.50], seed = [0, 1, 2, 3] }

[verdicts]
stability_draws = 20

[verdicts.delta]
C1 = 0.01
C2 = 0.01
"""


def fill(cache_dir: Path, profile_path: Path, best_wd: float, design: str = "phase2") -> None:
    """Synthetic records: val_bpb_q lowest at `best_wd`, seed noise small against the effect."""
    rng = np.random.default_rng(0)
    cache = ResultsCache(cache_dir)
    for s in load_profile(profile_path).design(design).specs:
        bpb = 2.0 + 0.2 * abs(s.wd - best_wd) + 0.001 * rng.standard_normal() + 0.01 * (s.bits != 16)
        cache.put(s, {"status": "ok", "diverged_step": None, "val_bpb": bpb, "val_bpb_q": bpb, "val_bpb_int8": bpb,
                      "quant_penalty": 0.0, "n_params": 10_000 if s.size == "t10k" else 18_400,
                      "grid_dist_int6_prewd": 0.24, "grid_dist_own_prewd": 0.24})


def run_suite(pytester, tmp_path, *args):
    profile = tmp_path / "unit.toml"
    if not profile.exists():
        profile.write_text(PROFILE)
    return pytester.runpytest_subprocess(
        str(REPO / "hypotheses" / "test_schedule_claims.py"), "-k", "c1 or c2", "-p", "no:cacheprovider",
        "--profile", str(profile), "--qat-cache-dir", str(tmp_path / "cache"),
        "--qat-report-dir", str(tmp_path / "reports"), "--qat-no-report", *args,
    )


def test_missing_runs_are_errors_naming_the_command(pytester, tmp_path):
    result = run_suite(pytester, tmp_path, "--no-train")
    result.assert_outcomes(errors=8)  # 6 C1 cells + 2 C2 cells; never failed or skipped
    # the hint names the profile by its path and the non-default cache, so following it fills this cache
    result.stdout.fnmatch_lines(["*missing from the cache and training is off*python -m engine sweep --profile *unit.toml"
                                 " --design phase2 --cache-dir *cache*"])


def test_gpu_profile_on_cpu_does_not_train_silently(pytester, tmp_path):
    result = run_suite(pytester, tmp_path)  # no --no-train: 'auto' policy, no GPU here
    result.assert_outcomes(errors=8)
    result.stdout.fnmatch_lines(["*GPU-scale and no GPU is visible*"])


def test_true_table_passes_and_records_properties(pytester, tmp_path):
    fill(tmp_path / "cache", _profile(tmp_path), best_wd=0.33)
    result = run_suite(pytester, tmp_path, "--no-train", f"--junitxml={tmp_path / 'j.xml'}")
    result.assert_outcomes(passed=8)
    cases = ET.parse(tmp_path / "j.xml").getroot().iter("testcase")
    props = [{p.get("name"): p.get("value") for p in c.iter("property")} for c in cases]
    assert all(p["qat_verdict"] == "reproduced" and p["qat_profile"] == "unit" for p in props)
    assert {p["qat_claim_id"] for p in props} == {"C1", "C2"}
    assert all("qat_stat_ci_high" in p and "qat_stat_n_seeds" in p and "qat_stability" in p for p in props)
    assert all(float(p["qat_stability"]) >= 0.9 for p in props)  # far from every boundary: a re-run agrees
    verdicts = json.loads((tmp_path / "reports" / "verdicts.json").read_text())
    assert len(verdicts["verdicts"]) == 8


def test_false_table_fails_with_claimed_and_observed(pytester, tmp_path):
    fill(tmp_path / "cache", _profile(tmp_path), best_wd=0.10)
    result = run_suite(pytester, tmp_path, "--no-train")
    result.assert_outcomes(failed=6, passed=2)  # C1 contradicted in every cell; C2 (no interaction) still true
    result.stdout.fnmatch_lines(["*CONTRADICTED C1[[]fp16-t10k[]]*", "*claimed:*33 %*", "*observed:*vs wd 0.1*"])


def test_junit_check_flags_pipeline_problems(tmp_path):
    from hypotheses.junit_check import REQUIRED, check

    xml = tmp_path / "j.xml"
    xml.write_text(
        '<testsuites><testsuite name="s">'
        '<testcase classname="a" name="ok"><properties>'
        + "".join(f'<property name="{k}" value="1"/>' for k in REQUIRED if k not in ("qat_claim_id", "qat_verdict"))
        + '<property name="qat_claim_id" value="C1"/><property name="qat_verdict" value="contradicted"/>'
        '</properties><failure message="CONTRADICTED"/></testcase>'
        '<testcase classname="a" name="bug"><failure message="AttributeError: x"/></testcase>'
        '<testcase classname="a" name="err"><error message="MissingRunsError"/></testcase>'
        '<testcase classname="a" name="old"><properties><property name="qat_verdict" value="undecided"/>'
        '</properties></testcase>'
        "</testsuite></testsuites>"
    )
    problems, counts = check(xml, {"C1", "C2"})
    assert counts["contradicted"] == 1  # a contradicted claim is data
    assert any("bug" in p and "AttributeError" in p for p in problems)  # a crash in a test body is not
    assert any("err" in p for p in problems) and any("claim C2" in p for p in problems)
    assert any("old" in p for p in problems)  # a verdict without bounds/stability is a pipeline problem


def test_unit_tests_do_not_load_the_study_plugin(request):
    """`pytest tests/` must not load the study: no profile, no cache, no reports/ written."""
    assert not request.config.pluginmanager.hasplugin("hypotheses.plugin")
    xml = getattr(request.config.option, "xmlpath", None)
    assert not xml or "reports" not in Path(xml).parts[-2:-1]


def _profile(tmp_path: Path) -> Path:
    p = tmp_path / "unit.toml"
    p.write_text(PROFILE)
    return p


TRAIN_PROFILE = """
[profile]
name = "unit-train"
description = "the controller trains, workers decide"
train_without_gpu = true
pack = 2

[defaults]
steps = 8
batch_tokens = 128
seq_len = 16
val_tokens = 256
muon_momentum_warmup_steps = 1

[roles]
int4_small = ["t10k"]
int4_large = ["t10k"]

[designs.phase2]
grid = { size = ["t10k"], bits = [16], wd = [0.10, 0.33], seed = [0, 1] }

[verdicts]
stability_draws = 5

[verdicts.delta]
C1 = 0.05
"""


def test_the_controller_trains_and_xdist_workers_only_decide(pytester, tmp_path):
    profile = tmp_path / "train.toml"
    profile.write_text(TRAIN_PROFILE)
    cache = tmp_path / "cache"
    res = pytester.runpytest_subprocess(
        str(REPO / "hypotheses" / "test_schedule_claims.py"), "-k", "c1", "-p", "no:cacheprovider", "-n", "2",
        "--profile", str(profile), "--qat-cache-dir", str(cache), "--qat-report-dir", str(tmp_path / "reports"),
        "--qat-no-report", "--qat-jobs", "2",
    )
    out = res.stdout.str()
    assert "qat: trained 4 run(s), 0 diverged, 0 failed" in out, out[-3000:]
    # one bar for the whole sweep (2 packs of 2 runs), shown without -s
    assert "qat unit-train: training: 100%" in res.stderr.str() and "4/4" in res.stderr.str(), res.stderr.str()[-2000:]
    records = list(ResultsCache(cache).iter_records())
    assert len(records) == 4
    # a worker that trained would have taken the run's lock and left owner.json; the driver leaves none
    assert not list(cache.glob("[0-9a-f][0-9a-f]/*/owner.json"))
    verdicts = json.loads((tmp_path / "reports" / "verdicts.json").read_text())
    assert sorted(verdicts["trained_run_ids"]) == sorted(r["run_id"] for r in records)
    assert all(v["verdict"] in ("reproduced", "contradicted", "inconclusive") for v in verdicts["verdicts"])


def test_a_run_the_controller_could_not_train_is_an_error_and_no_worker_retrains_it(pytester, tmp_path, monkeypatch):
    # every attempt is SIGKILLed at its 3rd step and none is retried: the run fails for good in the
    # controller; were a test to train it, the fault would kill the test process itself
    monkeypatch.setenv("QAT_FAULT", "step:3")
    profile = tmp_path / "train.toml"
    profile.write_text(TRAIN_PROFILE)
    res = pytester.runpytest_subprocess(
        str(REPO / "hypotheses" / "test_schedule_claims.py"), "-k", "c1", "-p", "no:cacheprovider",
        "--profile", str(profile), "--qat-cache-dir", str(tmp_path / "cache"), "--qat-report-dir",
        str(tmp_path / "reports"), "--qat-no-report", "--qat-jobs", "1", "--qat-retries", "0", "--qat-pack", "4",
    )
    out = res.stdout.str()
    assert "qat: trained 0 run(s), 0 diverged, 1 failed" in out and "a worker died 1 times" in out, out[-3000:]
    res.assert_outcomes(errors=1)
    assert "the controller's training did not produce them" in out and "python -m engine sweep" in out
    assert not list(ResultsCache(tmp_path / "cache").iter_records())


def test_bad_input_stops_the_suite_with_one_line_before_training(pytester, tmp_path):
    profile = tmp_path / "bad.toml"
    profile.write_text(TRAIN_PROFILE.replace("[defaults]", f'[defaults]\ndata = "text:{tmp_path}/nowhere"'))
    res = pytester.runpytest_subprocess(
        str(REPO / "hypotheses" / "test_schedule_claims.py"), "-k", "c1", "-p", "no:cacheprovider",
        "--profile", str(profile), "--qat-cache-dir", str(tmp_path / "cache"), "--qat-no-report",
        "--qat-report-dir", str(tmp_path / "reports"),
    )
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = [ln for ln in res.stderr.lines if ln.startswith("ERROR:")]
    assert len(err) == 1 and "qat: cannot train the missing runs" in err[0] and "nowhere" in err[0], res.stderr.str()
    assert not list(ResultsCache(tmp_path / "cache").iter_records())

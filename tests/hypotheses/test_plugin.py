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
int4_large = ["t20k"]

[designs.phase2]
grid = { size = ["t10k", "t20k"], bits = [16, 8, 6], warmdown = [0.10, 0.33, 0.50], seed = [0, 1, 2, 3] }

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
        # QAT penalty 0.03, clearly above C2's delta 0.01: C2's premise (issue 22) holds
        bpb = 2.0 + 0.2 * abs(s.warmdown - best_wd) + 0.001 * rng.standard_normal() + 0.03 * (s.bits != 16)
        cache.put(s, {"status": "ok", "diverged_step": None, "val_bpb": bpb, "val_bpb_q": bpb, "val_bpb_int8": bpb,
                      "quant_penalty": 0.0, "n_params": 10_000 if s.size == "t10k" else 18_400,
                      "grid_dist_int6_prewd": 0.24, "grid_dist_own_prewd": 0.24})


def run_suite(pytester, tmp_path, *args):
    profile = tmp_path / "unit.toml"
    if not profile.exists():
        profile.write_text(PROFILE)
    return pytester.runpytest_subprocess(
        str(REPO / "hypotheses" / "test_schedule_claims.py"), "-k", "c1 or c2", "-p", "no:cacheprovider",
        "--qat-profile", str(profile), "--qat-cache-dir", str(tmp_path / "cache"),
        "--qat-report-dir", str(tmp_path / "reports"), "--qat-no-report", *args,
    )


def test_missing_runs_are_errors_naming_the_command(pytester, tmp_path):
    result = run_suite(pytester, tmp_path, "--qat-no-train")
    result.assert_outcomes(errors=8)  # 6 C1 cells + 2 C2 cells; never failed or skipped
    # the hint names the profile by its path and the non-default cache, so following it fills this cache
    result.stdout.fnmatch_lines(["*missing from the cache and training is off*python -m engine sweep --profile *unit.toml"
                                 " --design phase2 --cache-dir *cache*"])


def test_gpu_profile_on_cpu_does_not_train_silently(pytester, tmp_path):
    result = run_suite(pytester, tmp_path)  # no --qat-no-train: 'auto' policy, no GPU here
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # one line before any test, not an ERROR per test
    result.stderr.fnmatch_lines(["*GPU-scale and no GPU is visible: 72 of its 72 runs are not cached*"
                                 "python -m engine sweep --profile *unit.toml --design phase2*--tiny*"])


def test_true_table_passes_and_records_properties(pytester, tmp_path):
    fill(tmp_path / "cache", _profile(tmp_path), best_wd=0.33)
    result = run_suite(pytester, tmp_path, "--qat-no-train", f"--junitxml={tmp_path / 'j.xml'}")
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
    result = run_suite(pytester, tmp_path, "--qat-no-train")
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
grid = { size = ["t10k"], bits = [16], warmdown = [0.10, 0.33], seed = [0, 1] }

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
        "--qat-profile", str(profile), "--qat-cache-dir", str(cache), "--qat-report-dir", str(tmp_path / "reports"),
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
        "--qat-profile", str(profile), "--qat-cache-dir", str(tmp_path / "cache"), "--qat-report-dir",
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
        "--qat-profile", str(profile), "--qat-cache-dir", str(tmp_path / "cache"), "--qat-no-report",
        "--qat-report-dir", str(tmp_path / "reports"),
    )
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = [ln for ln in res.stderr.lines if ln.startswith("ERROR:")]
    assert len(err) == 1 and "qat: cannot train the missing runs" in err[0] and "nowhere" in err[0], res.stderr.str()
    assert not list(ResultsCache(tmp_path / "cache").iter_records())


def test_a_cache_made_in_another_identity_stops_training_but_not_deciding(pytester, tmp_path):
    # half the runs were trained on 7 CPU threads, half on 1 (a cache filled in two places)
    import torch

    from engine.runlog import run_identity

    profile = tmp_path / "train.toml"
    profile.write_text(TRAIN_PROFILE)
    cache = ResultsCache(tmp_path / "cache")
    for i, s in enumerate(load_profile(profile).design("phase2").specs):
        bpb = 2.0 + 0.2 * abs(s.warmdown - 0.33) + 0.001 * i
        cache.put(s, {"status": "ok", "diverged_step": None, "val_bpb": bpb, "val_bpb_q": bpb, "val_bpb_int8": bpb,
                      "quant_penalty": 0.0, "n_params": 10_000, "grid_dist_int6_prewd": 0.24,
                      "grid_dist_own_prewd": 0.24,
                      "identity": run_identity(s, torch.device("cpu"), 7 if i % 2 else 1, "fp32")})
    args = [str(REPO / "hypotheses" / "test_schedule_claims.py"), "-k", "c1", "-p", "no:cacheprovider",
            "--qat-profile", str(profile), "--qat-cache-dir", str(cache.root), "--qat-report-dir", str(tmp_path / "reports"),
            "--qat-no-report", "--qat-threads", "1"]
    res = pytester.runpytest_subprocess(*args)  # training allowed: the controller would serve them, so it checks
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = [ln for ln in res.stderr.lines if ln.startswith("ERROR:")]
    assert len(err) == 1 and "2 cached run(s) were trained with threads=7, this suite trains with threads=1" in err[0]
    assert "--qat-on-mismatch retrain" in err[0]
    res = pytester.runpytest_subprocess(*args, "--qat-no-train")  # deciding from the cache as it is still works
    out = res.stdout.str()
    assert res.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and " error" not in out.splitlines()[-1], out
    assert "qat: note: the cached runs these tests decide from mix environments: numeric environments differ " \
           "(2 run(s) cpu, 1 thread, fp32; 2 run(s) cpu, 7 threads, fp32)" in out, out


# --- input errors: found before any training, one line each (issue 21) ---------------------------


def _claims_with(tmp_path: Path, old: str, new: str) -> Path:
    from hypotheses.claims import DEFAULT_CLAIMS_PATH

    text = DEFAULT_CLAIMS_PATH.read_text()
    assert text.count(old) == 1
    path = tmp_path / "claims.toml"
    path.write_text(text.replace(old, new))
    return path


def _suite(pytester, tmp_path, profile_text: str, *args, cache: Path | None = None):
    profile = tmp_path / "train.toml"
    profile.write_text(profile_text)
    return pytester.runpytest_subprocess(
        str(REPO / "hypotheses" / "test_schedule_claims.py"), "-k", "c1", "-p", "no:cacheprovider",
        "--qat-profile", str(profile), "--qat-cache-dir", str(cache or tmp_path / "cache"), "--qat-no-report",
        "--qat-jobs", "1", *args,
    )


@pytest.mark.parametrize("broken", ["missing-delta", "missing-decider"])
def test_a_claim_that_cannot_be_decided_is_a_setup_error_and_trains_nothing(pytester, tmp_path, broken):
    """Once its runs trained first, then the test FAILED (the delta message naming [C1.thresholds])."""
    text, args = TRAIN_PROFILE, []
    if broken == "missing-delta":
        text, needle = TRAIN_PROFILE.replace("C1 = 0.05\n", ""), f"ProfileError: {tmp_path / 'train.toml'}: " \
                                                                "[verdicts.delta] has no entry for C1"
    else:
        # a claim whose id no @decider registers: a plugin loaded first forgets C1's registration
        (pytester.path / "forget_c1.py").write_text("import hypotheses.schedule\n"
                                                    "from hypotheses.verdict import unregister\n"
                                                    "unregister('C1')\n")
        from hypotheses.claims import DEFAULT_CLAIMS_PATH

        args, needle = ["-p", "forget_c1"], f"ClaimsFileError: {DEFAULT_CLAIMS_PATH}: claim C1 has no registered decider"
    res = _suite(pytester, tmp_path, text, "--qat-report-dir", str(tmp_path / "reports"), *args)
    res.assert_outcomes(errors=1)
    out = res.stdout.str()
    assert needle in out and "Traceback" not in out, out[-3000:]
    assert not list(ResultsCache(tmp_path / "cache").iter_records())  # nothing trained for a claim that cannot decide


def _corrupt_cache(tmp_path: Path) -> Path:
    profile = tmp_path / "p.toml"
    profile.write_text(TRAIN_PROFILE)
    cache = ResultsCache(tmp_path / "corrupt")
    spec = load_profile(profile).design("phase2").specs[0]
    cache.run_dir(spec).mkdir(parents=True)
    cache.record_path(spec).write_text('{"result_format": ')  # truncated
    return cache.root


BAD_INPUT = {  # case -> (profile text, extra args, what the one line says)
    "negative-stability-draws": (TRAIN_PROFILE.replace("stability_draws = 5", "stability_draws = -1"), [],
                                 "[verdicts] stability_draws must be an integer >= 0"),
    "misspelt-role-size": (TRAIN_PROFILE.replace('int4_large = ["t10k"]', 'int4_large = ["t7k"]'), [],
                           "[roles] int4_large names size(s) ['t7k']"),
    "misspelt-claims-filter": (TRAIN_PROFILE, ["claims:bitz"], "C2.cells.filters has unknown RunSpec field(s) ['bitz']"),
    "cache-dir-is-a-file": (TRAIN_PROFILE, ["cache:file"], "is not a directory"),
    "report-dir-unwritable": (TRAIN_PROFILE, ["report:under-a-file"], "--qat-report-dir"),
    "corrupt-record": (TRAIN_PROFILE, ["cache:corrupt"], "unreadable or truncated record"),
    "compile-without-a-compiler": (TRAIN_PROFILE, ["-p", "nocxx", "--qat-compile", "--qat-device", "cpu"],
                                   "--compile on a CPU needs a C++ compiler"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_error_line_before_training(pytester, tmp_path, case):
    """Each was an INTERNALERROR, a collection traceback or a traceback from inside the first training step."""
    text, extra, needle = BAD_INPUT[case]
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    cache, report, args = tmp_path / "cache", tmp_path / "reports", []
    for arg in extra:
        if arg == "claims:bitz":
            args += ["--qat-claims", str(_claims_with(tmp_path, '[C2.cells]\nby = ["size"]\nfilters = { bits = ',
                                                      '[C2.cells]\nby = ["size"]\nfilters = { bitz = '))]
        elif arg == "cache:file":
            cache = a_file
        elif arg == "cache:corrupt":
            cache = _corrupt_cache(tmp_path)
        elif arg == "report:under-a-file":
            report = a_file / "reports"
        else:
            args.append(arg)
    # as on a machine without a C++ compiler (engine.compilation asks torch's inductor which it would use)
    pytester.makepyfile(nocxx="import engine.compilation as c\nc.cpp_compiler = lambda: None\n")
    res = _suite(pytester, tmp_path, text, "--qat-report-dir", str(report), *args, cache=cache)
    errors = [ln for ln in res.stderr.lines if ln.startswith("ERROR:")]
    assert res.ret == pytest.ExitCode.USAGE_ERROR, res.stdout.str()[-3000:] + res.stderr.str()[-3000:]
    assert len(errors) == 1 and needle in errors[0], res.stderr.str()
    assert "INTERNALERROR" not in res.stdout.str() + res.stderr.str()
    if cache.is_dir():  # nothing trained: no run's lock was ever taken
        assert not list(cache.glob("[0-9a-f][0-9a-f]/*/owner.json"))


# --- stopping the controller while it trains --------------------------------------------------------

LONG_PROFILE = TRAIN_PROFILE.replace("steps = 8", "steps = 100000").replace("pack = 2", "checkpoint_every = 10").replace(
    'grid = { size = ["t10k"], bits = [16], warmdown = [0.10, 0.33], seed = [0, 1] }',
    'grid = { size = ["t10k"], bits = [16], warmdown = [0.10, 0.33], seed = [0] }')
HANG_GUARD_S = 900  # only a hang guard: each wait ends on an event (checkpoints written, an exit, a death)


@pytest.mark.slow
def test_sigterm_while_the_controller_trains_stops_it_and_its_workers_with_one_line(tmp_path):
    """Before: pytest died of the signal (exit -15) and both workers and the resource tracker trained on,
    with parent PID 1."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    profile, ckpt = tmp_path / "long.toml", tmp_path / "ckpt"
    profile.write_text(LONG_PROFILE)
    with open(tmp_path / "out.txt", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", str(REPO / "hypotheses" / "test_schedule_claims.py"), "-k", "c1",
             "-p", "no:cacheprovider", "--qat-profile", str(profile), "--qat-cache-dir", str(tmp_path / "cache"),
             "--qat-report-dir", str(tmp_path / "reports"), "--qat-no-report", "--qat-jobs", "2", "--qat-pack", "1",
             "--qat-checkpoint-dir", str(ckpt)], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    start = time.monotonic()
    while len(list(ckpt.glob("*/step*/COMPLETE"))) < 2:  # both runs training
        assert proc.poll() is None, (tmp_path / "out.txt").read_text()[-3000:]
        assert time.monotonic() - start < HANG_GUARD_S, "the controller's runs never started training"
        time.sleep(0.5)
    children = psutil.Process(proc.pid).children(recursive=True)  # two workers and the resource tracker
    proc.send_signal(signal.SIGTERM)
    proc.wait(HANG_GUARD_S)
    out = (tmp_path / "out.txt").read_text()
    assert proc.returncode == 130, out[-3000:]
    assert "qat: training stopped; its workers were stopped too" in out and "Traceback" not in out, out[-3000:]
    _, alive = psutil.wait_procs(children, timeout=HANG_GUARD_S)
    for p in alive:
        p.kill()
    assert not alive, "worker(s) still running after SIGTERM to the suite"


# --- pytest conventions (issue 24) ---------------------------------------------------------


def test_every_junit_property_is_recorded_once(pytester, tmp_path):
    fill(tmp_path / "cache", _profile(tmp_path), best_wd=0.33)
    run_suite(pytester, tmp_path, "--qat-no-train", f"--junitxml={tmp_path / 'j.xml'}").assert_outcomes(passed=8)
    for case in ET.parse(tmp_path / "j.xml").getroot().iter("testcase"):
        names = [p.get("name") for p in case.iter("property")]
        assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_the_suite_starts_beside_a_plugin_that_registers_profile(pytester, tmp_path):
    """pytest-profiling registers a bare `--profile`; with the suite's old alias pytest aborted
    at start-up ("conflicting option string: --profile")."""
    (pytester.path / "profiling_standin.py").write_text(
        "def pytest_addoption(parser):\n    parser.addoption('--profile', action='store_true')\n")
    fill(tmp_path / "cache", _profile(tmp_path), best_wd=0.33)
    result = run_suite(pytester, tmp_path, "--qat-no-train", "-p", "profiling_standin")
    result.assert_outcomes(passed=8)


def test_pytest_dot_from_the_root_collects_the_unit_tests_not_the_study(pytester):
    result = pytester.runpytest_subprocess(str(REPO), "--collect-only", "-q", "-p", "no:cacheprovider",
                                           "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml"))
    assert result.ret == 0, result.stdout.str()[-2000:]
    out = result.stdout.str()
    assert "tests/engine/test_spec.py" in out and "hypotheses/test_schedule_claims.py" not in out


def test_a_gpu_profile_on_a_cpu_is_a_few_lines_naming_the_runs_the_sweep_and_tiny(pytester):
    """`pytest hypotheses/` with no flag on a CPU: the real study cannot train here."""
    result = pytester.runpytest_subprocess(str(REPO / "hypotheses"), "-p", "no:cacheprovider", "-q",
                                           "--qat-cache-dir", str(pytester.path / "cache"), "--qat-no-report")
    text = (result.stdout.str() + result.stderr.str()).strip()
    assert result.ret not in (0, 1), text[-2000:]  # a pipeline stop, not verdicts
    assert "Traceback" not in text and len(text.splitlines()) <= 10, text[-3000:]
    assert "python -m engine sweep --profile paper" in text and "--tiny" in text
    assert "are not cached" in text

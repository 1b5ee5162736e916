"""Executors: local processes, a real Ray local cluster and submitit's local executor train the
same runs to the same records; the driver alone writes the cache; a worker killed mid-run is
retried; a restarted driver trains only what is missing; exported distributed variables do not
break a run. All on CPU, with t10k runs of a few steps."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from engine.cache import ResultsCache
from engine.executors import fill, make_executor, train_task
from engine.scheduling import Task, lpt, make_tasks, simulate
from engine.spec import RunSpec

FAST = dict(size="t10k", steps=6, batch_tokens=256, seq_len=32, val_tokens=256, muon_momentum_warmup_steps=1)
# fields that depend only on the spec (timings, host and pids differ between executors)
SAME = ("status", "val_bpb", "val_bpb_q", "val_bpb_int8", "final_train_loss", "loss_curve", "export_bytes",
        "tokens_per_param_byte")


def specs(seeds=(0, 1), bits=(16, 6)):
    return [RunSpec(**FAST, seed=s, bits=b) for s in seeds for b in bits]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Each run trained in this process, no executor: what every executor must reproduce."""
    data = tmp_path_factory.mktemp("refdata")
    # through JSON, as the cache stores them (tuples become lists)
    return {s.run_id: json.loads(json.dumps(train_task([s.to_dict()], data_dir=str(data), threads=1)[0]))
            for s in specs()}


def _same(cache: ResultsCache, reference: dict) -> None:
    for s in specs():
        got = cache.get(s)["result"]
        assert {k: got[k] for k in SAME} == {k: reference[s.run_id][k] for k in SAME}, s


def _no_worker_wrote(cache: ResultsCache) -> None:
    # a worker that took a run's lock would leave owner.json (ResultsCache._claim); the driver does not
    assert not list(cache.root.glob("[0-9a-f][0-9a-f]/*/owner.json"))


EXECUTORS = {
    "local": lambda tmp: make_executor("local", workers=2),
    "ray": lambda tmp: make_executor("ray", local_cpus=2),
    "slurm": lambda tmp: make_executor("slurm", cluster="local", folder=str(tmp / "submitit"), cpus_per_task=1,
                                       poll_s=0.3),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(EXECUTORS))
def test_every_executor_trains_each_run_once_to_the_same_records(kind, tmp_path, reference):
    cache = ResultsCache(tmp_path / "cache")
    report = fill(cache, specs(), EXECUTORS[kind](tmp_path), pack=1, progress=False)
    assert (report.trained, report.duplicates, report.failed) == (4, 0, [])
    _same(cache, reference)
    _no_worker_wrote(cache)
    again = fill(cache, specs(), EXECUTORS[kind](tmp_path), progress=False)  # restarted driver: nothing to do
    assert (again.trained, again.cached) == (0, 4)


@pytest.mark.slow
def test_packs_go_through_an_executor(tmp_path, reference):
    cache = ResultsCache(tmp_path / "cache")
    report = fill(cache, specs(), make_executor("local", workers=1), pack=4, progress=False)
    assert report.trained == 4 and not report.failed
    for s in specs():
        assert cache.get(s)["result"]["packed"] == 4
        assert cache.get(s)["result"]["status"] == "ok"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["local", "ray", "slurm"])
def test_a_worker_killed_mid_run_is_retried_and_the_sweep_completes(kind, tmp_path, reference, monkeypatch):
    # the first worker to reach its 3rd optimiser step is SIGKILLed (once across processes)
    monkeypatch.setenv("QAT_FAULT", "step:3")
    monkeypatch.setenv("QAT_FAULT_ONCE", str(tmp_path / "killed-once"))
    cache = ResultsCache(tmp_path / "cache")
    report = fill(cache, specs(), EXECUTORS[kind](tmp_path), progress=False)
    assert (tmp_path / "killed-once").exists()  # a worker did die
    assert report.failed == [] and report.trained == 4
    _same(cache, reference)


@pytest.mark.slow
def test_a_restarted_driver_trains_only_what_is_missing(tmp_path, reference):
    cache = ResultsCache(tmp_path / "cache")
    first = specs()[:2]
    assert fill(cache, first, make_executor("local", workers=1), progress=False).trained == 2
    report = fill(cache, specs(), make_executor("local", workers=2), progress=False)
    assert (report.cached, report.trained) == (2, 2)
    _same(cache, reference)


def fake(val_bpb: float) -> dict:
    """A finished-run result as the cache validates it (synthetic: unit tests of the driver only)."""
    from engine.cache import OK_METRICS

    return {"status": "ok", **{k: val_bpb for k in OK_METRICS}}


def test_a_task_that_fails_for_good_is_reported_and_the_sweep_goes_on(tmp_path, monkeypatch):
    class Flaky:  # an executor whose first task raised in its worker
        def run(self, tasks, **kwargs):
            for i, t in enumerate(tasks):
                yield (t, ValueError("boom")) if i == 0 else (t, [fake(1.0)] * len(t.specs))

    cache = ResultsCache(tmp_path / "cache")
    monkeypatch.setattr("engine.train.preflight", lambda specs, data_dir=None: None)
    report = fill(cache, specs(), Flaky(), progress=False)
    assert len(report.failed) == 1 and "ValueError: boom" in report.failed[0][1]
    assert report.trained == 3 and len(cache.missing(specs())) == 1


def test_a_duplicate_result_is_ignored(tmp_path, monkeypatch):
    cache = ResultsCache(tmp_path / "cache")
    s = specs()[0]
    cache.put(s, fake(2.0))

    class Late:  # the run was written by someone else after the driver listed what is missing
        def run(self, tasks, **kwargs):
            for t in tasks:
                yield t, [fake(9.0)] * len(t.specs)

    monkeypatch.setattr("engine.train.preflight", lambda specs, data_dir=None: None)
    monkeypatch.setattr(ResultsCache, "missing", lambda self, specs: list(specs))
    report = fill(cache, [s], Late(), progress=False)
    assert (report.trained, report.duplicates) == (0, 1)
    assert cache.get(s)["result"]["val_bpb"] == 2.0


def test_bad_input_fails_before_any_job_starts(tmp_path):
    class Never:
        def run(self, tasks, **kwargs):
            raise AssertionError("dispatched")

    bad = RunSpec(**{**FAST, "data": f"text:{tmp_path / 'nowhere'}"})
    with pytest.raises(Exception, match="nowhere"):
        fill(ResultsCache(tmp_path / "cache"), [bad], Never(), progress=False)


def test_unknown_executor_or_setting_is_one_clear_error():
    with pytest.raises(ValueError, match="choose one of"):
        make_executor("kubernetes")
    with pytest.raises(ValueError, match="no setting"):
        make_executor("ray", adress="auto")


# --- scheduling -----------------------------------------------------------------------------


def test_longest_first_over_the_whole_sweep():
    # one long task and many short ones: LPT puts the long one first, the rest fill around it
    assert simulate([10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 2).makespan == 10
    assert simulate([1] * 10 + [10], 2).makespan == 15  # the long task last: a long tail
    tasks = make_tasks(specs(seeds=range(4)) + [RunSpec(**{**FAST, "steps": 60})], pack=1)
    assert tasks[0].specs[0].steps == 60 and all(a.cost >= b.cost for a, b in zip(tasks, tasks[1:]))
    assert lpt(tasks, 2).ratio <= 1.0 + 1e-9


def test_packs_group_same_shape_runs_only():
    tasks = make_tasks(specs() + [RunSpec(**{**FAST, "steps": 8})], pack=4)
    assert sorted(len(t.specs) for t in tasks) == [1, 4]
    assert all(isinstance(t, Task) for t in tasks)


def test_the_paper_profile_schedules_within_five_percent_of_ideal():
    from engine.design import load_profile

    p = load_profile("paper")
    tasks = make_tasks(p.all_specs(), p.pack)
    for w in (8, 64):
        assert lpt(tasks, w).ratio <= 1.05, w


# --- a world of one -----------------------------------------------------------------------------


@pytest.mark.slow
def test_exported_distributed_variables_do_not_break_a_run(tmp_path):
    with socket.socket() as busy:  # MASTER_PORT points at a port another process holds
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "10.255.255.1",
               "MASTER_PORT": str(port)}
        env.pop("QAT_DISTRIBUTED", None)
        out = subprocess.run([sys.executable, "-m", "engine", "train", "--size", "t10k", "--steps", "4",
                              "--batch-tokens", "256", "--seq-len", "32", "--val-tokens", "256",
                              "--cache-dir", str(tmp_path / "cache")],
                             env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(list(ResultsCache(tmp_path / "cache").iter_records())) == 1


@pytest.mark.slow
def test_a_retried_run_resumes_from_its_checkpoints(tmp_path, monkeypatch):
    # checkpoints every 2 steps in a shared directory; the worker dies at step 5 (once); the retry resumes
    monkeypatch.setenv("QAT_FAULT", "step:5")
    monkeypatch.setenv("QAT_FAULT_ONCE", str(tmp_path / "killed-once"))
    cache = ResultsCache(tmp_path / "cache")
    s = RunSpec(**{**FAST, "steps": 8})
    report = fill(cache, [s], make_executor("local", workers=1), progress=False,
                  checkpoint_dir=tmp_path / "ckpt", checkpoint_every=2)
    assert (tmp_path / "killed-once").exists() and report.trained == 1 and not report.failed
    assert cache.get(s)["result"]["resumed_from_step"] >= 2
    assert not (tmp_path / "ckpt" / s.run_id).exists()  # the finished run's checkpoints are removed

"""Executors: local processes, a real Ray local cluster and submitit's local executor train the
same runs to the same records; the driver alone writes the cache; a worker killed mid-run is
retried; a restarted driver trains only what is missing; exported distributed variables do not
break a run. All on CPU, with t10k runs of a few steps."""

from __future__ import annotations

import json
import os
from pathlib import Path
import socket
import subprocess
import sys

import pytest

from engine.cache import ResultsCache
from engine.executors import (LocalExecutor, SlurmExecutor, SlurmTask, error_line, executor_from_options, fill,
                              make_executor, resume_dir, train_task)
from engine.options import EXECUTOR_OPTIONS, SHARED
from engine.scheduling import make_tasks
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


class DriverOnly:
    """Wraps an executor: when a task's result reaches the driver, no record of it may exist yet
    (a worker that wrote the cache itself would have stored it before returning)."""

    def __init__(self, inner, cache: ResultsCache):
        self.inner, self.cache, self.seen = inner, cache, 0

    def check(self):
        self.inner.check()

    def run(self, tasks, **kwargs):
        for task, out in self.inner.run(tasks, **kwargs):
            assert not any(self.cache.record_path(s).exists() for s in task.specs), f"{task} was stored by its worker"
            self.seen += len(task.specs)
            yield task, out


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
    watched = DriverOnly(EXECUTORS[kind](tmp_path), cache)
    report = fill(cache, specs(), watched, pack=1, progress=False)
    assert (report.trained, report.duplicates, report.failed, watched.seen) == (4, 0, [], 4)  # each run once
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
def test_precision_and_compile_reach_every_worker(tmp_path, reference):
    # bf16 autocast (eager here: compiling would cost a minute) asked once, at the driver: the
    # single run and the pack both train in it and say so; the default stays fp32 on this CPU
    cache = ResultsCache(tmp_path / "cache")
    four = specs()
    single, packed = four[:1], four[1:]
    ex = make_executor("local", workers=2)
    assert not fill(cache, single, ex, pack=1, progress=False, precision="bf16", compile=False).failed
    assert not fill(cache, packed, ex, pack=3, progress=False, precision="bf16", compile=False).failed
    for s in four:
        got = cache.get(s)["result"]
        assert (got["precision"], got["compiled"]) == ("bf16", False), s  # the record's provenance fields
        assert got["status"] == "ok" and got["val_bpb"] != reference[s.run_id]["val_bpb"]  # bf16 arithmetic
    assert reference[four[0].run_id]["precision"] == "fp32"


def test_a_bad_precision_is_refused_before_anything_is_dispatched(tmp_path):
    class Never:
        def run(self, tasks, **kwargs):
            raise AssertionError("dispatched")

    with pytest.raises(ValueError, match="precision 'fp8'"):
        fill(ResultsCache(tmp_path / "cache"), specs(), Never(), progress=False, precision="fp8")


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
    # threads pinned on both sides (the reference trains on 1): one worker would otherwise take every core, and
    # a thread count changes the numbers (tests/engine/test_identity.py shows that the change is detected)
    cache = ResultsCache(tmp_path / "cache")
    first = specs()[:2]
    assert fill(cache, first, make_executor("local", workers=1, threads=1), progress=False).trained == 2
    report = fill(cache, specs(), make_executor("local", workers=2, threads=1), progress=False)
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

    class Late:  # the run was written by someone else (not a driver: no claim) while this one trained it
        def run(self, tasks, **kwargs):
            for t in tasks:
                cache.put(s, fake(2.0))
                yield t, [fake(9.0)] * len(t.specs)

    monkeypatch.setattr("engine.train.preflight", lambda specs, data_dir=None: None)
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


def test_the_executor_options_build_each_executor(tmp_path):
    base = {k: SHARED[k].argparse_kwargs()["default"] for k in EXECUTOR_OPTIONS}  # every option at its default
    local = executor_from_options({**base, "jobs": 3, "retries": 2}, device="cpu")
    assert (type(local), local.workers, local.device, local.retries) == (LocalExecutor, 3, "cpu", 2)
    ray = executor_from_options({**base, "executor": "ray", "ray_address": "auto", "ray_cpus_per_task": 4})
    assert (ray.address, ray.cpus_per_task, ray.retries) == ("auto", 4, 1)
    slurm = executor_from_options({**base, "executor": "slurm", "slurm_partition": "gpu", "slurm_time": 120,
                                   "slurm_account": "proj", "slurm_max_array": 500, "jobs": 64})
    assert (slurm.partition, slurm.time_min, slurm.account, slurm.max_array, slurm.parallel, slurm.cluster) == (
        "gpu", 120, "proj", 500, 64, "slurm")
    assert executor_from_options({**base, "executor": "slurm", "slurm_local": True}).cluster == "local"


def test_slurm_without_sbatch_is_refused_before_anything_trains(tmp_path, monkeypatch):
    # submitit alone would quietly run every job on this machine instead
    monkeypatch.setattr("engine.executors.shutil.which", lambda name: None)
    cache = ResultsCache(tmp_path / "cache")
    with pytest.raises(ValueError, match="no `sbatch` on PATH.*--slurm-local"):
        fill(cache, specs(), SlurmExecutor(folder=str(tmp_path / "s")), progress=False)
    assert not list(cache.iter_records()) and not (cache.data_dir).exists()  # failed before the data was prepared


def test_local_workers_take_every_gpu_once_or_the_named_one(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert LocalExecutor().devices() == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert LocalExecutor(workers=6, device="cuda").devices() == ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    assert LocalExecutor(device="cuda:2").devices() == ["cuda:2"]  # one worker, not one per core on one GPU
    assert LocalExecutor(workers=3, device="cpu").devices() == ["cpu"] * 3


def test_a_slurm_task_requeued_by_submitit_trains_the_same_runs():
    # pre-empted or out of time, submitit calls checkpoint() and requeues what it returns
    from submitit.helpers import Checkpointable, DelayedSubmission

    task = SlurmTask(device="cuda", threads=8, data_dir="/shared/data", checkpoint_dir="/shared/ckpt", checkpoint_every=250)
    payload = [s.to_dict() for s in specs()[:1]]
    again = task.checkpoint(payload)
    assert isinstance(task, Checkpointable) and isinstance(again, DelayedSubmission)
    assert again.function is task and again.args == (payload,) and task.kwargs["checkpoint_dir"] == "/shared/ckpt"


def test_resume_checkpoints_go_where_the_workers_can_reach_them(tmp_path):
    assert resume_dir({"executor": "local"}, tmp_path, 250) == tmp_path / "_checkpoints"
    assert resume_dir({"executor": "ray"}, tmp_path, 250) is None  # a node may not see the driver's cache
    assert resume_dir({"executor": "slurm", "checkpoint_dir": "/shared/ckpt"}, tmp_path, 250) == Path("/shared/ckpt")
    assert resume_dir({"executor": "local", "checkpoint_dir": "/x"}, tmp_path, 0) is None  # no checkpointing


def test_a_failed_task_is_reported_in_one_line():
    remote = RuntimeError("Job (task=0) failed during processing with trace:\n-----\nTraceback (most recent call "
                          "last):\n  File \"x.py\", line 1\nValueError: data too short\n-----\nYou can check full logs")
    assert error_line(remote) == "ValueError: data too short"
    assert error_line(KeyError("seed")) == "KeyError: 'seed'"


@pytest.mark.slow
def test_an_abandoned_sweep_stops_its_workers(tmp_path):
    import multiprocessing as mp

    from engine.train import preflight

    todo = [RunSpec(**{**FAST, "steps": 5000})] + specs()[:2]  # one long run, two short ones
    preflight(todo, tmp_path / "data")  # as fill does: the workers find the data ready
    runs = make_executor("local", workers=2).run(make_tasks(todo), data_dir=str(tmp_path / "data"))
    task, out = next(runs)  # a short run; the long one is still training
    assert not isinstance(out, BaseException) and task.specs[0].steps == FAST["steps"]
    assert len(mp.active_children()) == 2
    runs.close()  # what fill does on Ctrl-C, SIGTERM or an error in the driver
    assert not [p for p in mp.active_children() if p.is_alive()]


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

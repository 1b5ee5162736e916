"""A run's identity beyond its spec (engine.identity): every record carries its data fingerprint and
numeric environment, and a cached record made in another identity is not served (an error line before
anything trains, by default; a retrain that keeps the old record, on request). Old records without
an identity are still served.

Fast tests drive the cache and the driver with records shaped as training writes them
(`engine.runlog.run_identity`, the function `provenance` calls); the slow one trains for real in two
working directories.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch

from engine.cache import OK_METRICS, ResultsCache
from engine.cli import build_parser, main, spec_from_args
from engine.data import data_fingerprint
from engine.executors import (LocalExecutor, RayExecutor, SlurmExecutor, environment, expected_identity, fill,
                              make_executor)
from engine.identity import IdentityMismatchError, differences, mismatch_message, mixed_environments, numeric_identity
from engine.runlog import run_identity
from engine.runtime import cpu_threads
from engine.spec import RunSpec
from tests.conftest import torch_threads

FAST = dict(size="t10k", steps=6, batch_tokens=256, seq_len=32, val_tokens=256, muon_momentum_warmup_steps=1)


def ident(spec: RunSpec, threads: int = 1, precision: str = "fp32", device: str = "cpu") -> dict:
    """The identity a worker training `spec` here would record."""
    return run_identity(spec, torch.device(device), threads, precision)


def result(spec: RunSpec, threads: int = 1, bpb: float = 1.0, **kw) -> dict:
    """A finished result as a worker returns it (synthetic numbers, a real identity)."""
    return {"status": "ok", **{k: bpb for k in OK_METRICS}, "identity": ident(spec, threads, **kw)}


class Fake:
    """An executor whose workers train in `threads` CPU threads and return synthetic records (val_bpb 9)."""

    def __init__(self, threads: int = 1):
        self.threads, self.trained = threads, []

    def environment(self, precision):
        return numeric_identity("cpu", self.threads, precision or "fp32")

    def run(self, tasks, **kwargs):
        for t in tasks:
            self.trained += t.specs
            yield t, [result(s, self.threads, bpb=9.0) for s in t.specs]


@pytest.fixture(autouse=True)
def no_preflight(request, monkeypatch):
    # the fast tests' specs never train: their data need not be tokenised (fingerprinting still reads it)
    if not request.node.get_closest_marker("slow"):
        monkeypatch.setattr("engine.train.preflight", lambda specs, data_dir=None: None)


def specs(n: int = 3, **kw) -> list[RunSpec]:
    return [RunSpec(**{**FAST, **kw}, seed=i) for i in range(n)]


# --- what differs, and how it is said ----------------------------------------------------------


def test_differences_name_each_field_and_skip_what_the_request_cannot_know():
    have = {"data": {"source": "/a/d", "data_sha256": "1" * 64}, "numeric": numeric_identity("cpu", 2, "fp32")}
    want = {"data": {"source": "/b/d", "data_sha256": "1" * 64}, "numeric": numeric_identity("cpu", 1, "fp32")}
    assert differences(have, want) == [("data.source", "/a/d", "/b/d"), ("numeric.threads", 2, 1)]
    assert differences(have, {**want, "data": None, "numeric": None}) == []  # unknown here: not compared
    assert differences(None, want) is None  # an old record: cannot be checked
    # on a GPU the CPU's threads are not identity; a CUDA record against a CPU request differs in device
    assert numeric_identity("cuda:3", 8, "bf16") == {"device": "cuda", "precision": "bf16"}
    assert [f for f, _, _ in differences({"numeric": numeric_identity("cuda", None, "bf16")},
                                         {"numeric": numeric_identity("cpu", 2, "fp32")})] == [
        "numeric.device", "numeric.precision", "numeric.threads"]


def test_the_mismatch_message_is_one_line_with_the_count_the_difference_and_the_fixes():
    diffs = [(f"spec{i}", [("numeric.threads", 2, 1)]) for i in range(12)]
    msg = mismatch_message(diffs, "cache/_superseded")
    assert "\n" not in msg
    assert msg.startswith("12 cached run(s) were trained with threads=2, this sweep trains with threads=1; ")
    assert "--threads 2" in msg and "--jobs" in msg and "--on-mismatch retrain" in msg and "cache/_superseded" in msg
    data = mismatch_message([("s", [("data.source", "/a/d", "/b/d")])], "x", who="this suite")
    assert "data source=/a/d, this suite trains with data source=/b/d" in data and "(/a/d)" in data


def test_each_executor_says_the_environment_its_workers_train_in(monkeypatch):
    cpu = lambda threads, precision="fp32": numeric_identity("cpu", threads, precision)  # noqa: E731
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert environment(LocalExecutor(workers=2)) == cpu(cpu_threads(2))  # --jobs shares the cores out
    assert environment(LocalExecutor(workers=2, threads=3)) == cpu(3)  # --threads wins
    assert environment(LocalExecutor(workers=1, threads=1), precision="bf16") == cpu(1, "bf16")
    assert environment(RayExecutor(cpus_per_task=4)) == cpu(4)
    assert environment(RayExecutor(address="auto")) is None  # the cluster decides: known only once joined
    assert environment(SlurmExecutor(cluster="local", cpus_per_task=1)) == cpu(1)
    assert environment(SlurmExecutor(cpus_per_task=8)) == numeric_identity("cuda", None, "bf16")
    assert environment(object()) is None
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert environment(LocalExecutor()) == {"device": "cuda", "precision": "bf16"}


# --- the numeric environment ---------------------------------------------------------------------


def test_a_thread_count_change_is_detected_not_mixed(tmp_path):
    cache = ResultsCache(tmp_path / "cache")
    runs = specs()
    for s in runs:
        cache.put(s, result(s, threads=2))
    ex = Fake(threads=1)
    with pytest.raises(IdentityMismatchError) as e:  # the default: one line, before anything is dispatched
        fill(cache, runs, ex, progress=False)
    assert "3 cached run(s) were trained with threads=2, this sweep trains with threads=1" in str(e.value)
    assert "--on-mismatch retrain" in str(e.value) and "\n" not in str(e.value)
    assert ex.trained == [] and all(cache.get(s)["result"]["val_bpb"] == 1.0 for s in runs)

    report = fill(cache, runs, ex, progress=False, on_mismatch="retrain")
    assert (report.trained, report.superseded, report.failed) == (3, 3, [])
    for s in runs:  # the retrained record replaced the old one, which is kept
        got = cache.get(s)["result"]
        assert got["val_bpb"] == 9.0 and got["identity"]["numeric"]["threads"] == 1
    kept = [json.loads(p.read_text()) for p in (cache.root / "_superseded").glob("*.json")]
    assert sorted(r["run_id"] for r in kept) == sorted(s.run_id for s in runs)
    assert all(r["result"]["identity"]["numeric"]["threads"] == 2 for r in kept)
    again = fill(cache, runs, Fake(threads=1), progress=False)  # now served
    assert (again.cached, again.trained) == (3, 0)


def test_an_old_record_without_identity_is_served_with_one_warning(tmp_path, caplog):
    cache = ResultsCache(tmp_path / "cache")
    runs = specs(2)
    for s in runs:
        cache.put(s, {"status": "ok", **{k: 1.0 for k in OK_METRICS}})  # written before identities
    ex = Fake(threads=5)
    with caplog.at_level(logging.WARNING, logger="engine.cache"):
        assert fill(cache, runs, ex, progress=False).cached == 2
        assert fill(cache, runs, ex, progress=False).cached == 2
    assert ex.trained == []
    warned = [r for r in caplog.records if "before records carried an identity" in r.getMessage()]
    assert len(warned) == 1 and "2 cached run(s)" in warned[0].getMessage()


# --- the data ----------------------------------------------------------------------------------


def corpus(where, text: str) -> None:
    """A text corpus of a few documents (files), enough for train and val splits of a t10k run."""
    where.mkdir(parents=True, exist_ok=True)
    for i in range(8):
        (where / f"doc{i}.txt").write_text(f"{i} {text}" * 60)


def test_text_d_from_another_working_directory_is_not_served_the_first_ones_result(tmp_path, monkeypatch):
    corpus(tmp_path / "a" / "d", "in the beginning was the word. ")
    corpus(tmp_path / "b" / "d", "call me ishmael, some years ago. ")
    cache = ResultsCache(tmp_path / "cache")
    [s] = specs(1, data="text:d")
    monkeypatch.chdir(tmp_path / "a")
    cache.put(s, result(s))  # trained in a/
    assert fill(cache, [s], Fake(), progress=False).cached == 1  # served in a/
    monkeypatch.chdir(tmp_path / "b")  # the same spec and run id, another corpus
    with pytest.raises(IdentityMismatchError, match=r"data source=.*/a/d, this sweep trains with data source=.*/b/d"):
        fill(cache, [s], Fake(), progress=False)
    report = fill(cache, [s], Fake(), progress=False, on_mismatch="retrain")
    assert report.trained == 1 and cache.get(s)["result"]["identity"]["data"]["source"] == f"text:{tmp_path}/b/d"


def test_a_changed_file_of_an_absolute_text_corpus_is_detected(tmp_path):
    corpus(tmp_path / "corpus", "the quick brown fox. ")
    cache = ResultsCache(tmp_path / "cache")
    [s] = specs(1, data=f"text:{tmp_path / 'corpus'}")
    cache.put(s, result(s))
    expect = expected_identity(Fake(), cache.data_dir)
    assert cache.missing([s], expect) == []
    (tmp_path / "corpus" / "doc3.txt").write_text("another text altogether. " * 300)  # edited in place
    with pytest.raises(IdentityMismatchError, match="trained with data content="):
        cache.missing([s], expected_identity(Fake(), cache.data_dir))
    assert cache.missing([s], expected_identity(Fake(), cache.data_dir), on_mismatch="retrain") == [s]


# --- the command line ------------------------------------------------------------------------------


def test_sweep_and_train_stop_with_one_error_line_on_a_mismatch(unit, capsys):
    path, profile, cache = unit
    runs = profile.design("phase2").specs
    for s in runs:
        cache.put(s, result(s, threads=2))
    with torch_threads(torch.get_num_threads()):  # main() sets this process's threads
        rc = main(["sweep", "--profile", str(path), "--cache-dir", str(cache.root), "--jobs", "1", "--threads", "1"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1, err
        assert err[0].startswith(f"error: {len(runs)} cached run(s) were trained with threads=2, this sweep trains "
                                 "with threads=1")
        argv = ["train", "--size", "t10k", "--steps", "6", "--batch-tokens", "256", "--seq-len", "32",
                "--threads", "1", "--cache-dir", str(cache.root)]
        spec = spec_from_args(build_parser().parse_args(argv))
        cache.put(spec, result(spec, threads=2))
        rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "1 cached run(s) were trained with threads=2, this run trains with " \
                                         "threads=1" in err[0], err
    assert not list((cache.root / "_superseded").glob("*"))  # nothing trained, nothing moved


# --- what a record says -------------------------------------------------------------------------


def cpuinfo_model() -> str | None:
    try:
        lines = open("/proc/cpuinfo").read().splitlines()
    except OSError:
        return None
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), None)


@pytest.mark.slow
def test_real_records_carry_their_identity_the_cpu_model_and_the_torch_build(tmp_path, monkeypatch):
    # trained for real in a/ then b/ (one run each): the record's identity is the one the driver expects
    # (a second fill serves it), and another working directory's `text:d` is another corpus
    corpus(tmp_path / "a" / "d", "in the beginning was the word. ")
    corpus(tmp_path / "b" / "d", "call me ishmael, some years ago. ")
    cache = ResultsCache(tmp_path / "cache")
    [s] = specs(1, data="text:d")
    monkeypatch.chdir(tmp_path / "a")
    ex = make_executor("local", workers=1, threads=1)
    assert fill(cache, [s], ex, progress=False).trained == 1
    first = cache.get(s)["result"]
    assert first["identity"] == {"data": data_fingerprint("text:d", "byte", cache.data_dir),
                                 "numeric": {"device": "cpu", "threads": 1, "precision": "fp32"}}
    assert fill(cache, [s], ex, progress=False).cached == 1  # what the driver expects is what the worker recorded
    model = cpuinfo_model()
    assert first["cpu_model"] == (model or first["cpu_model"]) and first["cpu_model"] in first["device"]
    assert first["versions"]["torch"] == torch.__version__ and first["versions"]["torch_git"] == torch.version.git_version
    assert "torch_cuda" in first["versions"]

    monkeypatch.chdir(tmp_path / "b")
    with pytest.raises(IdentityMismatchError, match="data source"):
        fill(cache, [s], ex, progress=False)
    assert fill(cache, [s], ex, progress=False, on_mismatch="retrain").superseded == 1
    second = cache.get(s)["result"]
    assert second["identity"]["data"]["source"] == f"text:{tmp_path}/b/d" and second["val_bpb"] != first["val_bpb"]


def test_mixed_environments_are_one_note():
    def rec(data, threads, sha="1"):
        return {"spec": {"data": data}, "result": {"identity": {
            "data": {"source": data, "data_sha256": sha}, "numeric": numeric_identity("cpu", threads, "fp32")}}}

    assert mixed_environments([rec("kjv", 1), rec("kjv", 1), {"spec": {}, "result": {}}]) is None
    note = mixed_environments([rec("kjv", 1), rec("kjv", 2), rec("kjv", 2, sha="2")])
    assert "2 run(s) cpu, 2 threads, fp32; 1 run(s) cpu, 1 thread, fp32" in note and "data kjv differs" in note

"""Bad input: each kind gets one clear message naming the value, exit 2, nothing in the cache."""

import json
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.data import load_documents, write_shard
from engine.tokenizer import train_sentencepiece


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory) -> Path:
    docs = load_documents("kjv")[:40]
    return train_sentencepiece(docs, 400, tmp_path_factory.mktemp("sp") / "m")


def shards(tmp: Path, damage: str) -> Path:
    d = tmp / "fw"
    d.mkdir()
    for split in ("train", "val"):
        write_shard(d / f"fineweb_{split}_000000.bin", np.arange(2000, dtype=np.uint16) % 300)
    bad = d / "fineweb_train_000000.bin"
    raw = bytearray(bad.read_bytes())
    if damage == "magic":
        raw[0:4] = (12345).to_bytes(4, "little")
    else:
        raw = raw[:-10]
    bad.write_bytes(bytes(raw))
    return d


TINY = ["--steps", "5", "--batch-tokens", "128", "--seq-len", "16"]


def cases(tmp: Path, sp: Path) -> dict[str, tuple[list[str], str]]:
    bad_toml = tmp / "broken.toml"
    bad_toml.write_text("[profile\nname = 'x'")
    no_txt = tmp / "empty_dir"
    no_txt.mkdir()
    garbage_sp = tmp / "garbage.model"
    garbage_sp.write_bytes(b"not a sentencepiece model")
    unknown_field = tmp / "unknown.json"
    unknown_field.write_text(json.dumps({"size": "t20k", "weight_decay": 0.3}))
    not_json = tmp / "not.json"
    not_json.write_text("size: t20k")
    return {
        "unknown size": (["train", "--size", "t7k"], "'t7k' is not a ladder name"),
        "bits 2": (["train", "--size", "t20k", "--bits", "2"], "bits=2 is not allowed"),
        "bits 17": (["train", "--size", "t20k", "--bits", "17"], "bits=17 is not allowed"),
        "warmdown above 4": (["train", "--size", "t20k", "--wd", "4.5"], "warmdown=4.5"),
        "warmdown negative": (["train", "--size", "t20k", "--warmdown", "-0.1"], "warmdown=-0.1"),
        "zero steps": (["train", "--size", "t20k", "--steps", "0"], "steps=0"),
        "negative steps": (["train", "--size", "t20k", "--steps", "-4"], "steps=-4"),
        "batch not divisible": (["train", "--size", "t20k", "--batch-tokens", "1000", "--seq-len", "64"],
                                "multiple of seq_len=64"),
        "negative lr": (["train", "--size", "t20k", "--lr-mult", "-1"], "lr_mult=-1.0"),
        "unknown optimizer": (["train", "--size", "t20k", "--optimizer", "sgd"], "optimizer='sgd'"),
        "missing data path": (["train", "--size", "t20k", *TINY, "--data", f"text:{tmp}/nope"], "nope"),
        "text dir without txt": (["train", "--size", "t20k", *TINY, "--data", f"text:{no_txt}"], "empty_dir"),
        "unreadable tokenizer": (["train", "--size", "t20k", *TINY, "--tokenizer", f"sp:{garbage_sp}"], "garbage.model"),
        "missing tokenizer": (["train", "--size", "t20k", *TINY, "--tokenizer", f"sp:{tmp}/none.model"], "none.model"),
        "shard wrong magic": (["train", "--size", "t20k", *TINY, "--data", f"fineweb:{shards(tmp / 'a', 'magic')}",
                               "--tokenizer", f"sp:{sp}"], "fineweb_train_000000.bin"),
        "shard wrong size": (["train", "--size", "t20k", *TINY, "--data", f"fineweb:{shards(tmp / 'b', 'size')}",
                              "--tokenizer", f"sp:{sp}"], "fineweb_train_000000.bin"),
        "unknown profile": (["sweep", "--profile", "huge"], "unknown profile 'huge'"),
        "malformed profile": (["sweep", "--profile", str(bad_toml)], "malformed TOML"),
        "unknown design": (["sweep", "--profile", "tiny", "--design", "phase9"], "no design 'phase9'"),
        "unknown spec field": (["train", "--spec", str(unknown_field)], "unknown RunSpec field(s) ['weight_decay']"),
        "spec not json": (["train", "--spec", str(not_json)], "cannot read a JSON object"),
        "unknown run id": (["show", "abcdef12"], "no run with id starting 'abcdef12'"),
        "unknown executor": (["sweep", "--profile", "tiny", "--executor", "k8s"], "invalid choice: 'k8s'"),
        "negative retries": (["sweep", "--profile", "tiny", "--retries", "-1"], "-1 must be >= 0"),
        "zero jobs": (["sweep", "--profile", "tiny", "--jobs", "0"], "0 must be >= 1"),
        "zero workers to plan": (["plan", "--profile", "tiny", "--workers", "0"], "0 must be >= 1"),
    }


def test_at_least_fifteen_kinds(tmp_path, sp_model):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    assert len(cases(tmp_path, sp_model)) >= 15


@pytest.mark.parametrize("kind", [
    "unknown size", "bits 2", "bits 17", "warmdown above 4", "warmdown negative", "zero steps", "negative steps",
    "batch not divisible", "negative lr", "unknown optimizer", "missing data path", "text dir without txt",
    "unreadable tokenizer", "missing tokenizer", "shard wrong magic", "shard wrong size", "unknown profile",
    "malformed profile", "unknown design", "unknown spec field", "spec not json", "unknown run id",
    "unknown executor", "negative retries", "zero jobs", "zero workers to plan",
])
def test_bad_input_is_one_clear_error_and_writes_nothing(kind, tmp_path, sp_model, capsys):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    argv, needle = cases(tmp_path, sp_model)[kind]
    cache = tmp_path / "cache"
    rc = main([*argv, "--cache-dir", str(cache)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and needle in err, err
    assert len(err.strip().splitlines()) == 1  # one message, no traceback
    assert not list(cache.glob("[0-9a-f][0-9a-f]/*")), "bad input wrote to the results cache"


SWEEP_PROFILE = """
[profile]
name = "sweep-unit"
train_without_gpu = true
[defaults]
size = "t10k"
steps = 12
batch_tokens = 256
seq_len = 32
val_tokens = 1024
[designs.mixed]
grid = { lr_mult = [1.0, 1e12], seed = [0] }
"""


@pytest.mark.slow
def test_sweep_records_a_diverged_run_and_goes_on(tmp_path, capsys):
    prof = tmp_path / "p.toml"
    prof.write_text(SWEEP_PROFILE)
    cache = tmp_path / "cache"
    assert main(["sweep", "--profile", str(prof), "--jobs", "1", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "2 trained" in out and "1 diverged" in out and "0 failed" in out
    from engine.cache import ResultsCache

    records = list(ResultsCache(cache).iter_records())
    assert sorted(r["result"]["status"] for r in records) == ["diverged", "ok"]
    assert main(["show", records[0]["run_id"][:10], "--cache-dir", str(cache)]) == 0
    assert "status" in capsys.readouterr().out
    # resume with the same workers: nothing to do (another --jobs would share the cores out to other thread
    # counts, which change the numbers: the cached runs would then be an identity mismatch, test_identity.py)
    assert main(["sweep", "--profile", str(prof), "--jobs", "1", "--cache-dir", str(cache)]) == 0
    assert "0 to train" in capsys.readouterr().out
    assert main(["plan", "--profile", str(prof), "--cache-dir", str(cache)]) == 0
    assert "mixed" in capsys.readouterr().out


def test_slurm_sweep_without_sbatch_is_one_clear_error_before_any_data(tmp_path, capsys, monkeypatch):
    prof = tmp_path / "p.toml"
    prof.write_text(SWEEP_PROFILE)
    monkeypatch.setattr("engine.executors.shutil.which", lambda name: None)  # as on a machine without Slurm
    cache = tmp_path / "cache"
    rc = main(["sweep", "--profile", str(prof), "--executor", "slurm", "--cache-dir", str(cache),
               "--slurm-folder", str(tmp_path / "logs")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: executor 'slurm': no `sbatch` on PATH") and len(err.splitlines()) == 1
    assert not (cache / "_data").exists() and not list(cache.glob("[0-9a-f][0-9a-f]/*"))


def test_plan_prints_the_schedule_against_the_ideal(capsys):
    assert main(["plan", "--profile", "paper", "--workers", "8", "64"]) == 0
    out = capsys.readouterr().out
    rows = {int(line.split()[0]): [float(x) for x in line.split()[1:]]
            for line in out.splitlines() if line.strip() and line.split()[0] in ("8", "64")}
    assert set(rows) == {8, 64}
    for w, (lpt_ratio, per_design) in rows.items():
        assert 1.0 <= lpt_ratio <= 1.05 < per_design, (w, lpt_ratio, per_design)


# --- issue 21: one line for every input error; --force keeps a good record; `show` refuses what get() would ---

T10K = ["train", "--size", "t10k", "--steps", "4", "--batch-tokens", "128", "--seq-len", "16", "--val-tokens", "256",
        "--device", "cpu", "--quiet"]


@pytest.fixture
def no_compute(monkeypatch):
    """`engine train` without the data preflight or DeepSpeed's op build (this file tests the command, not training)."""
    monkeypatch.setattr("engine.train.preflight", lambda specs, data_dir=None: None)
    monkeypatch.setattr("engine.runtime.prepare_ops", lambda *a, **k: None)


def _stored(cache_dir: Path, fake_result, val_bpb: float = 3.0):
    from engine.cache import ResultsCache
    from engine.spec import RunSpec

    spec = RunSpec(size="t10k", steps=4, batch_tokens=128, seq_len=16, val_tokens=256)
    cache = ResultsCache(cache_dir)
    cache.put(spec, {**fake_result(spec), "val_bpb": val_bpb})
    return cache, spec


def test_force_keeps_the_old_record_until_the_new_one_replaces_it(tmp_path, fake_result, no_compute, monkeypatch,
                                                                 capsys, caplog):
    """`--force` once quarantined a good record (logged as corrupt) before retraining: a retrain that died left none."""
    cache, spec = _stored(tmp_path / "cache", fake_result, val_bpb=3.0)

    def dies(s, **kw):
        assert cache.get(s)["result"]["val_bpb"] == 3.0  # still served while the run retrains
        raise KeyboardInterrupt("killed mid-retrain")

    monkeypatch.setattr("engine.train.train", dies)
    with pytest.raises(KeyboardInterrupt):
        main([*T10K, "--cache-dir", str(cache.root), "--force"])
    assert cache.get(spec)["result"]["val_bpb"] == 3.0  # the old record survives the dead retrain
    assert not (cache.root / "_quarantine").exists() and not (cache.root / "_superseded").exists()

    monkeypatch.setattr("engine.train.train", lambda s, **kw: {**fake_result(s), "val_bpb": 2.5})
    assert main([*T10K, "--cache-dir", str(cache.root), "--force"]) == 0
    assert "trained and stored" in capsys.readouterr().out
    assert cache.get(spec)["result"]["val_bpb"] == 2.5
    [kept] = (cache.root / "_superseded").iterdir()
    assert json.loads(kept.read_text())["result"]["val_bpb"] == 3.0 and kept.name.startswith(spec.run_id)
    assert not (cache.root / "_quarantine").exists()
    assert any("superseded record" in r.message for r in caplog.records)
    assert not any("corrupt" in r.message for r in caplog.records)


def test_an_allocation_failure_is_one_line_naming_the_run_and_the_fix(tmp_path, no_compute, monkeypatch, capsys):
    """An oversized batch once ended in a long allocator traceback, after the run's lock was taken."""
    def out_of_memory(spec, **kw):  # what torch's CPU allocator raises (no memory is really asked for)
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 549755813888 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr("engine.train.run", out_of_memory)
    assert main([*T10K, "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: run ") and "(t10k, batch_tokens 128)" in err, err
    assert "ran out of host memory" in err and "--batch-tokens" in err and "--jobs" in err


def test_only_allocation_failures_are_renamed():
    import torch

    from engine.spec import RunSpec
    from engine.train import RunOutOfMemory, out_of_memory_named

    specs = [RunSpec(size="t10k", seed=i) for i in range(2)]
    with pytest.raises(RunOutOfMemory, match=r"the pack of 2 runs .* ran out of GPU memory"):
        with out_of_memory_named(specs, "cuda:0"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with pytest.raises(RuntimeError, match="shape mismatch"):  # any other error passes through unchanged
        with out_of_memory_named(specs):
            raise RuntimeError("shape mismatch")


def test_compile_on_a_cpu_without_a_compiler_is_one_line_before_any_lock(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("engine.compilation.cpp_compiler", lambda: None)  # as on a machine without g++
    cache = tmp_path / "cache"
    assert main([*T10K, "--compile", "--cache-dir", str(cache)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--compile on a CPU needs a C++ compiler" in err, err
    assert not cache.exists()
    from engine.compilation import check_compiler

    check_compiler("cpu", None)  # the CPU's default (eager) and a GPU need no C++ compiler
    check_compiler("cuda", True)


def test_an_absurd_thread_count_is_refused(capsys):
    """`--threads 10000` once started 20,006 threads (the host's load average reached 3,034)."""
    import os

    from engine.runtime import set_threads

    from engine.cli import build_parser

    with pytest.raises(SystemExit) as exit_:  # parsed only: were it accepted, nothing trains here
        build_parser().parse_args(["train", "--size", "t10k", "--threads", "10000"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert len(err.strip().splitlines()) == 1 and f"give at most {4 * os.cpu_count()}" in err, err
    with pytest.raises(ValueError, match="--threads 10000 is more than"):
        set_threads(10000)


def test_show_prints_a_record_with_an_odd_field(tmp_path, fake_result, capsys):
    """`n_params: "abc"` once made `engine show` print only `error: Cannot specify ',' with 's'.`"""
    cache, spec = _stored(tmp_path / "cache", fake_result)
    record = json.loads(cache.record_path(spec).read_text())
    record["result"]["n_params"] = "abc"
    del record["result"]["tokens_seen"]
    cache.record_path(spec).write_text(json.dumps(record))
    assert main(["show", spec.run_id[:8], "--cache-dir", str(cache.root)]) == 0
    out = capsys.readouterr().out
    assert "('abc' params)" in out and "val_bpb     3.0000" in out and "tokens      None" in out, out


def test_show_refuses_a_record_whose_spec_is_not_its_run(tmp_path, fake_result, capsys):
    cache, spec = _stored(tmp_path / "cache", fake_result)
    record = json.loads(cache.record_path(spec).read_text())
    record["spec"]["warmdown"] = 0.5  # edited by hand: no longer the run it is stored under
    cache.record_path(spec).write_text(json.dumps(record))
    assert main(["show", spec.run_id[:8], "--cache-dir", str(cache.root)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "its spec does not match the run id it is stored under" in err
    assert str(cache.run_dir(spec)) in err

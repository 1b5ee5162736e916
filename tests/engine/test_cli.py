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
    unknown_field.write_text(json.dumps({"size": "t20k", "warmdown": 0.3}))
    not_json = tmp / "not.json"
    not_json.write_text("size: t20k")
    return {
        "unknown size": (["train", "--size", "t7k"], "'t7k' is not a ladder name"),
        "bits 3": (["train", "--size", "t20k", "--bits", "3"], "bits=3 is not allowed"),
        "bits 17": (["train", "--size", "t20k", "--bits", "17"], "bits=17 is not allowed"),
        "warmdown above 4": (["train", "--size", "t20k", "--wd", "4.5"], "wd=4.5"),
        "warmdown negative": (["train", "--size", "t20k", "--wd", "-0.1"], "wd=-0.1"),
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
        "unknown spec field": (["train", "--spec", str(unknown_field)], "unknown RunSpec field(s) ['warmdown']"),
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
    "unknown size", "bits 3", "bits 17", "warmdown above 4", "warmdown negative", "zero steps", "negative steps",
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
    assert main(["sweep", "--profile", str(prof), "--cache-dir", str(cache)]) == 0  # resume: nothing to do
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

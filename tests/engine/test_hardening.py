"""Hardening: every bad input is one `error:` line before any compute, lock or file; state stays sound.

Each case here was a traceback, a wrong meaning or a late failure before (the "Hardening" issue):
- bad values in a spec file, on the command line or in a profile (`test_bad_input_*`);
- errors that used to come after the whole training (val tokens, a short validation split, a full disk);
- cache records with valid JSON but broken contents, concurrent quarantines, a SIGTERM'd sweep;
- profile typos, repeated grid values, the missing-runs hint, `--pack` meanings, `show` outside the cache.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from engine.cli import main

T = ["--size", "t10k", "--steps", "20", "--batch-tokens", "1024", "--seq-len", "64", "--val-tokens", "2048",
     "--quiet", "--threads", "1"]

PROFILE = """
[profile]
name = "hard-unit"
train_without_gpu = true
{meta}
[defaults]
size = "t10k"
steps = 12
batch_tokens = 256
seq_len = 32
val_tokens = 1024
{defaults}
[designs.one]
grid = {{ seed = [0] }}
{design}
"""


def _json(tmp: Path, name: str, text: str) -> str:
    p = tmp / name
    p.write_text(text)
    return str(p)


def _profile(tmp: Path, name: str, meta: str = "", defaults: str = "", design: str = "", whole: str | None = None) -> str:
    p = tmp / f"{name}.toml"
    p.write_text(whole if whole is not None else PROFILE.format(meta=meta, defaults=defaults, design=design))
    return str(p)


def _short_val_corpus(tmp: Path) -> str:
    d = tmp / "shortval"
    d.mkdir()
    for i in range(30):  # ~400 bytes each: a validation split of a few hundred tokens
        (d / f"doc{i:02d}.txt").write_text(f"document {i} " + "in the beginning was the word. " * 13)
    return f"text:{d}"


def cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    return {
        # --- spec files with the wrong JSON types ---------------------------------------------------
        "spec null": (["train", "--spec", _json(tmp, "null.json", "null")], "JSON object"),
        "spec number": (["train", "--spec", _json(tmp, "five.json", "5")], "JSON object"),
        "size list": (["train", "--spec", _json(tmp, "s.json", '{"size": ["t10k"]}')], "RunSpec.size"),
        "data number": (["train", "--spec", _json(tmp, "d.json", '{"size": "t10k", "data": 5}')], "RunSpec.data"),
        "tokenizer null": (["train", "--spec", _json(tmp, "t.json", '{"size": "t10k", "tokenizer": null}')],
                           "RunSpec.tokenizer"),
        "probe_fracs number": (["train", "--spec", _json(tmp, "p.json", '{"size": "t10k", "probe_fracs": 0.5}')],
                               "RunSpec.probe_fracs"),
        "steps Infinity": (["train", "--spec", _json(tmp, "i.json", '{"size": "t10k", "steps": Infinity}')],
                           "RunSpec.steps"),
        "steps NaN": (["train", "--spec", _json(tmp, "n.json", '{"size": "t10k", "steps": NaN}')], "RunSpec.steps"),
        "profile steps inf": (["sweep", "--profile", _profile(tmp, "inf", whole=PROFILE.format(
            meta="", defaults="", design="").replace("steps = 12", "steps = inf"))], "RunSpec.steps"),
        "seed 2**70": (["train", *T, "--seed", str(2**70)], "RunSpec.seed"),
        "quantize_embeddings string": (
            ["train", "--spec", _json(tmp, "q.json", '{"size": "t10k", "quantize_embeddings": "no"}')],
            "RunSpec.quantize_embeddings"),
        "train_without_gpu string": (["sweep", "--profile", _profile(tmp, "twg", whole=PROFILE.format(
            meta="", defaults="", design="").replace("train_without_gpu = true", 'train_without_gpu = "false"'))],
            "train_without_gpu"),
        "adamw_weight_decay Infinity": (
            ["train", "--spec", _json(tmp, "w.json", '{"size": "t10k", "adamw_weight_decay": Infinity}')],
            "RunSpec.adamw_weight_decay"),
        # --- command-line flags -------------------------------------------------------------------
        "threads -1": (["train", *T, "--threads", "-1"], "--threads"),
        "device foo": (["train", *T, "--device", "foo"], "--device"),
        "device meta": (["train", *T, "--device", "meta"], "--device"),
        "checkpoint-every -5": (["train", *T, "--checkpoint-every", "-5"], "--checkpoint-every"),
        "batch-tokens 1e12": (["train", *T, "--batch-tokens", "1000000000000"], "batch_tokens"),
        "sweep pack 0": (["sweep", "--profile", "tiny", "--pack", "0"], "--pack"),
        "sweep pack -1": (["sweep", "--profile", "tiny", "--pack", "-1"], "--pack"),
        # --- found only after the whole training before -------------------------------------------
        "val-tokens below seq-len": (["train", *T, "--val-tokens", "32"], "val_tokens=32"),
        "validation split shorter than seq-len": (
            ["train", *T, "--seq-len", "2048", "--batch-tokens", "2048", "--data", _short_val_corpus(tmp)],
            "seq_len=2048"),
        # --- cache and show -------------------------------------------------------------------------
        "show outside the cache": (["show", "../other/cache/71/71d6"], "hex"),
        "show with a pattern": (["show", "7***"], "hex"),
        # --- profile typos -----------------------------------------------------------------------------
        "[defualts]": (["sweep", "--profile", _profile(tmp, "defualts", whole=PROFILE.format(
            meta="", defaults="", design="").replace("[defaults]", "[defualts]"))], "defualts"),
        "[bogus]": (["sweep", "--profile", _profile(tmp, "bogus", design="[bogus]\nx = 1")], "bogus"),
        "sett": (["sweep", "--profile", _profile(tmp, "sett", design="sett = { warmdown = 0.5 }")], "sett"),
        "pakc": (["sweep", "--profile", _profile(tmp, "pakc", meta="pakc = 4")], "pakc"),
        "checkpoint_evry": (["sweep", "--profile", _profile(tmp, "evry", meta="checkpoint_evry = 5")],
                            "checkpoint_evry"),
        "descripton": (["sweep", "--profile", _profile(tmp, "descripton", meta='descripton = "x"')], "descripton"),
        "design descripton": (["sweep", "--profile", _profile(tmp, "ddescripton", design='descripton = "x"')],
                              "descripton"),
        "profile pack 0": (["sweep", "--profile", _profile(tmp, "pack0", meta="pack = 0")], "pack"),
        "repeated seeds": (["sweep", "--profile", _profile(tmp, "seeds", whole=PROFILE.format(
            meta="", defaults="", design="").replace("seed = [0]", "seed = [0, 0, 1]"))], "repeats"),
        "repeated warmdowns": (["sweep", "--profile", _profile(tmp, "wds", whole=PROFILE.format(
            meta="", defaults="", design="").replace("seed = [0]", "seed = [0], warmdown = [0.33, 0.330]"))], "repeats"),
        "set and grid": (["sweep", "--profile", _profile(tmp, "both", design="set = { seed = 3 }")], "seed"),
        # --- export policy and data order (issue 13) ---------------------------------------------------
        "scale-floor -1": (["train", *T, "--scale-floor", "-1"], "RunSpec.scale_floor=-1.0"),
        "keep-float-numel -5": (["train", *T, "--keep-float-numel", "-5"], "RunSpec.keep_float_numel=-5"),
        "keep-float typo": (["train", *T, "--keep-float", "atn"], "pattern 'atn' matches no weight matrix"),
        "data-order shuffled": (["train", *T, "--data-order", "shuffled"], "RunSpec.data_order='shuffled'"),
        "profile data_order": (["sweep", "--profile", _profile(tmp, "order", defaults='data_order = "stream"')],
                               "RunSpec.data_order='stream'"),
        "profile scale_floor string": (["sweep", "--profile", _profile(tmp, "floor", defaults='scale_floor = "1/127"')],
                                       "RunSpec.scale_floor"),
    }


KINDS = [
    "spec null", "spec number", "size list", "data number", "tokenizer null", "probe_fracs number", "steps Infinity",
    "steps NaN", "profile steps inf", "seed 2**70", "quantize_embeddings string", "train_without_gpu string",
    "adamw_weight_decay Infinity", "threads -1", "device foo", "device meta", "checkpoint-every -5",
    "batch-tokens 1e12", "sweep pack 0", "sweep pack -1", "val-tokens below seq-len",
    "validation split shorter than seq-len", "show outside the cache", "show with a pattern", "[defualts]", "[bogus]",
    "sett", "pakc", "checkpoint_evry", "descripton", "design descripton", "profile pack 0", "repeated seeds",
    "repeated warmdowns", "set and grid", "scale-floor -1", "keep-float-numel -5", "keep-float typo",
    "data-order shuffled", "profile data_order", "profile scale_floor string",
]


def test_every_kind_is_listed(tmp_path):
    assert sorted(cases(tmp_path)) == sorted(KINDS)


def _assert_one_error_nothing_written(rc: int, err: str, needle: str, cache: Path) -> None:
    assert rc == 2, err
    assert err.startswith("error: ") and needle in err, err
    assert len(err.strip().splitlines()) == 1, err  # one message, no traceback
    left = [p for p in cache.glob("[0-9a-f][0-9a-f]/**/*")] if cache.is_dir() else []
    assert not left, f"bad input left {left}"


@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_is_one_error_line_before_any_lock(kind, tmp_path, capsys):
    argv, needle = cases(tmp_path)[kind]
    cache = tmp_path / "cache"
    rc = main([*argv, "--cache-dir", str(cache)])
    _assert_one_error_nothing_written(rc, capsys.readouterr().err, needle, cache)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_gpu_leaves_no_lock(tmp_path, capsys):
    cache = tmp_path / "cache"
    rc = main(["train", *T, "--device", "cuda", "--cache-dir", str(cache)])
    _assert_one_error_nothing_written(rc, capsys.readouterr().err, "CUDA", cache)


def test_quantize_embeddings_must_be_a_bool():
    from engine.spec import RunSpec, SpecError

    with pytest.raises(SpecError, match="quantize_embeddings"):
        RunSpec(size="t10k", quantize_embeddings="no")
    assert RunSpec(size="t10k", quantize_embeddings=True).quantize_embeddings is True


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_a_file_as_cache_dir_is_one_error(command, tmp_path, capsys):
    f = tmp_path / "notadir"
    f.write_text("x")
    argv = ["train", *T] if command == "train" else ["sweep", "--profile", "tiny"]
    rc = main([*argv, "--cache-dir", str(f)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "not a directory" in err and str(f) in err, err
    assert "to train" not in capsys.readouterr().out


# --- disk space -----------------------------------------------------------------------------------


def test_a_nearly_full_disk_is_refused_before_training(tmp_path, capsys, monkeypatch):
    import engine.cache

    monkeypatch.setattr(engine.cache, "free_bytes", lambda path: 1024)
    cache = tmp_path / "cache"
    rc = main(["train", *T, "--cache-dir", str(cache)])
    _assert_one_error_nothing_written(rc, capsys.readouterr().err, "free", cache)


def test_a_failed_final_write_keeps_the_result_recoverable(tmp_path, fake_result, monkeypatch):
    import errno

    import engine.cache
    from engine.cache import ResultsCache
    from engine.spec import RunSpec

    real = engine.cache.atomic_write_json

    def full(path, payload, **kw):
        if Path(path).name == "record.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, payload, **kw)

    monkeypatch.setattr(engine.cache, "atomic_write_json", full)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "rescue"))
    (tmp_path / "rescue").mkdir()
    c = ResultsCache(tmp_path / "cache")
    s = RunSpec(size="t10k")
    with pytest.raises(OSError) as e:
        c.ensure([s], fake_result)
    msg = str(e.value)
    assert str(c.record_path(s)) in msg and "No space left" in msg
    [rescued] = list((tmp_path / "rescue").glob("*.json"))
    assert str(rescued) in msg
    assert json.loads(rescued.read_text())["run_id"] == s.run_id
    monkeypatch.setattr(engine.cache, "atomic_write_json", real)
    assert c.restore(rescued)["run_id"] == s.run_id  # space freed: the result goes in without retraining
    assert c.get(s)["result"]["val_bpb"] == fake_result(s)["val_bpb"]


# --- records: shape validated on read; concurrent quarantine --------------------------------------


@pytest.mark.parametrize("damage", [
    {"result": {}}, {"result": None}, {"result.val_bpb_q": "oops"}, {"result.status": "running"},
    {"result.val_bpb": None}, {"spec": None}, {"run_id": 5},
])
def test_records_with_broken_contents_are_corrupt(damage, tmp_path, fake_result):
    from engine.cache import CorruptRecordError, ResultsCache
    from engine.spec import RunSpec

    c = ResultsCache(tmp_path)
    s = RunSpec(size="t10k")
    c.put(s, fake_result(s))
    rec = json.loads(c.record_path(s).read_text())
    for key, value in damage.items():
        if key.startswith("result."):
            rec["result"][key.split(".", 1)[1]] = value
        else:
            rec[key] = value
    c.record_path(s).write_text(json.dumps(rec))
    with pytest.raises(CorruptRecordError) as e:
        c.get(s)
    assert str(c.record_path(s)) in str(e.value) and "quarantine" in str(e.value)
    q = ResultsCache(tmp_path, on_corrupt="quarantine")
    assert q.get(s) is None
    [got] = q.ensure([s], fake_result)  # repaired: retrained, readable again
    assert ResultsCache(tmp_path).get(s)["result"]["status"] == "ok" and got["run_id"] == s.run_id


def _quarantine_worker(root: str, go, out) -> None:
    from engine.cache import ResultsCache
    from engine.spec import RunSpec

    c = ResultsCache(root, on_corrupt="quarantine")
    path = c.record_path(RunSpec(size="t10k"))
    with contextlib.suppress(Exception):  # each reads the record as corrupt; then all three race to move it
        c._read(path)
    go.wait()
    try:
        c.quarantine(path)
        out.put("ok")
    except Exception as e:  # noqa: BLE001 - reported to the test
        out.put(f"{type(e).__name__}: {e}")


def test_three_processes_quarantine_the_same_record_at_once(tmp_path, fake_result):
    from engine.cache import ResultsCache
    from engine.spec import RunSpec

    ctx = mp.get_context("forkserver")  # not fork: a child forked from a process with torch's threads can hang
    ctx.set_forkserver_preload(["engine.cache"])
    s = RunSpec(size="t10k")
    for trial in range(5):
        root = tmp_path / f"c{trial}"
        c = ResultsCache(root)
        c.put(s, fake_result(s))
        c.record_path(s).write_text("{truncated")
        go, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_quarantine_worker, args=(str(root), go, out)) for _ in range(3)]
        for p in procs:
            p.start()
        time.sleep(0.5)  # all three started and waiting
        go.set()
        for p in procs:
            p.join(30)
        assert sorted(out.get(timeout=5) for _ in procs) == ["ok"] * 3
        assert len(list((root / "_quarantine").iterdir())) == 1
        assert c.get(s) is None  # gone from its place: will be retrained


# --- sweep stops its workers on SIGTERM -------------------------------------------------------------

LONG_PROFILE = """
[profile]
name = "long-unit"
train_without_gpu = true
[defaults]
size = "t20k"
steps = 100000
batch_tokens = 1024
seq_len = 64
val_tokens = 1024
[designs.long]
grid = { seed = [0, 1] }
"""


HANG_GUARD_S = 900  # only a hang guard: every wait below ends on an event (a checkpoint, an exit, a death)
STOPPED = ("error: sweep stopped; its workers were stopped too. Finished runs are cached; run the same "
           "command again to resume")


def _long_sweep(tmp: Path, *flags: str) -> tuple[subprocess.Popen, Path]:
    """`engine sweep` of two long runs in the background (output in tmp/out.txt, err.txt), and the
    directory where its runs' checkpoints show that they train."""
    prof = tmp / "long.toml"
    prof.write_text(LONG_PROFILE)
    ckpt = tmp / "ckpt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "engine", "sweep", "--profile", str(prof), "--jobs", "2", "--pack", "1",
           "--cache-dir", str(tmp / "cache"), "--checkpoint-dir", str(ckpt), "--checkpoint-every", "10", *flags]
    with open(tmp / "out.txt", "wb") as out, open(tmp / "err.txt", "wb") as err:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=err, cwd=tmp), ckpt


def _wait_until_training(proc: subprocess.Popen, ckpt: Path, tmp: Path, runs: int = 2) -> None:
    """Until `runs` runs have each written a complete checkpoint (imports done, steps running)."""
    start = time.monotonic()
    while len(list(ckpt.glob("*/step*/COMPLETE"))) < runs:
        assert proc.poll() is None, f"the sweep exited ({proc.returncode}): {(tmp / 'err.txt').read_text()[-3000:]}"
        assert time.monotonic() - start < HANG_GUARD_S, "the sweep's runs never started training"
        time.sleep(0.5)


def _descendants(pid: int) -> list:
    import psutil

    return psutil.Process(pid).children(recursive=True)


def _gone(procs: list) -> list:
    """Those of `procs` still alive once each has died or the hang guard ran out (they are then killed).

    A zombie counts as dead: it runs nothing and holds no memory; it waits for PID 1 to reap it."""
    import psutil

    def living(p) -> bool:
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    start = time.monotonic()
    while (alive := [p for p in procs if living(p)]) and time.monotonic() - start < HANG_GUARD_S:
        time.sleep(0.2)
    for p in alive:  # clean up before failing
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    return [repr(p) for p in alive]


def _stopped_cleanly(proc: subprocess.Popen, tmp: Path) -> None:
    proc.wait(HANG_GUARD_S)
    err = (tmp / "err.txt").read_text()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == [STOPPED], err[-3000:]


@pytest.mark.slow
def test_sigterm_to_sweep_stops_its_workers(tmp_path):
    proc, ckpt = _long_sweep(tmp_path)
    _wait_until_training(proc, ckpt, tmp_path)
    children = _descendants(proc.pid)
    assert len(children) >= 2
    proc.send_signal(signal.SIGTERM)
    _stopped_cleanly(proc, tmp_path)
    assert not _gone(children), "worker(s) still running after SIGTERM to the sweep"


@pytest.mark.slow
@pytest.mark.parametrize("executor", [[], ["--executor", "slurm", "--slurm-local"]], ids=["local", "slurm-local"])
def test_sigkill_of_sweep_kills_its_workers_and_their_tracker(executor, tmp_path):
    """A driver that cannot clean up (SIGKILL, the OOM killer): its local workers die with it
    (PR_SET_PDEATHSIG), and multiprocessing's resource tracker ends once they have; submitit's
    local jobs end when they see the driver gone. Before, both workers were still training 500 s
    later, with parent PID 1, and so were the local jobs with their controllers."""
    flags = [*executor, "--slurm-folder", str(tmp_path / "submitit")] if executor else []
    proc, ckpt = _long_sweep(tmp_path, *flags)
    _wait_until_training(proc, ckpt, tmp_path)
    # local: the two workers and the resource tracker; slurm-local: two job controllers and their tasks
    children = _descendants(proc.pid)
    assert len(children) >= 3, children
    proc.kill()
    proc.wait(HANG_GUARD_S)
    assert not _gone(children), "process(es) of the sweep still running after it was killed"


@pytest.mark.slow
@pytest.mark.parametrize("executor", [["--executor", "ray"], ["--executor", "slurm", "--slurm-local"]],
                         ids=["ray", "slurm-local"])
def test_sigterm_to_sweep_is_one_line_under_every_executor(executor, tmp_path):
    """Ray used to abort (exit 134, a C++ stack dump), submitit's local jobs to print five
    KeyboardInterrupt tracebacks; each stops like the local executor now, and leaves nothing running."""
    flags = [*executor, "--slurm-folder", str(tmp_path / "submitit")] if "--slurm-local" in executor else executor
    proc, ckpt = _long_sweep(tmp_path, *flags)
    _wait_until_training(proc, ckpt, tmp_path)
    children = _descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _stopped_cleanly(proc, tmp_path)
    assert not _gone(children), "process(es) still running after SIGTERM to the sweep"


# --- read-only HOME: DeepSpeed's op builds go elsewhere ---------------------------------------------


def test_read_only_home_moves_the_extension_dir(tmp_path, monkeypatch):
    from engine.runtime import EXTENSIONS_ENV, ensure_extensions_dir

    (tmp_path / "ro").write_text("")  # HOME inside a file: nothing can be created there (also as root)
    home = tmp_path / "ro" / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv(EXTENSIONS_ENV, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    where = ensure_extensions_dir()
    assert os.environ[EXTENSIONS_ENV] == str(where) and where.is_dir() and where.parent == tmp_path / "tmp"
    monkeypatch.setenv(EXTENSIONS_ENV, str(tmp_path / "mine"))
    assert ensure_extensions_dir() == tmp_path / "mine"  # the user's choice wins


# --- token caches ----------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_token_cache_names_the_file_and_the_fix(damage, tmp_path, capsys):
    from engine.data import load_corpus

    cache = tmp_path / "cache"
    data = _short_val_corpus(tmp_path)
    load_corpus(data, "byte", cache / "_data")
    [npy] = list((cache / "_data" / "tokens").glob("*/train.npy"))
    npy.write_bytes(npy.read_bytes()[:100] if damage == "truncate" else b"garbage" * 10)
    load_corpus.cache_clear()
    rc = main(["train", *T, "--data", data, "--cache-dir", str(cache)])
    err = capsys.readouterr().err
    _assert_one_error_nothing_written(rc, err, str(npy), cache)
    assert "delete" in err.lower()


# --- the missing-runs hint ------------------------------------------------------------------------


def test_sweep_command_names_path_profiles_and_other_caches(tmp_path):
    from engine.design import load_profile, sweep_command
    from engine.paths import default_cache_dir

    tiny = load_profile("tiny")
    assert sweep_command(tiny, ["phase2"]) == "python -m engine sweep --profile tiny --design phase2"
    assert sweep_command(tiny, ["phase2"], default_cache_dir()) == sweep_command(tiny, ["phase2"])
    assert sweep_command(tiny, ["a", "b"], tmp_path / "my cache").endswith(
        f"--design a --design b --cache-dir '{tmp_path / 'my cache'}'")
    own = load_profile(_profile(tmp_path, "tiny", whole=PROFILE.format(meta="", defaults="", design="").replace('"hard-unit"', '"tiny"')))  # named like a shipped profile, but another file
    assert f"--profile {own.path}" in sweep_command(own, ["one"])


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_pack_has_one_meaning_in_the_cli_and_the_plugin(value, capsys):
    import argparse

    from engine.options import add_shared

    p = argparse.ArgumentParser()
    add_shared(p, "pack", prefix="qat-", dest_prefix="qat_")  # as the plugin adds it
    with pytest.raises(SystemExit):
        p.parse_args(["--qat-pack", value])
    assert "--qat-pack" in capsys.readouterr().err
    assert p.parse_args(["--qat-pack", "1"]).qat_pack == 1  # 1 = unpacked

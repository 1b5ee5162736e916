"""`python -m engine runs` / `export` (engine/runs.py) on a small fake cache: filters, table, JSON,
CSV and Parquet round trips, the missing-pyarrow error line, TensorBoard event files read back."""

from __future__ import annotations

import argparse
import builtins
import json

import pandas as pd
import pytest

from engine.runs import add_runs_parser, bits_value, run_folder_name
from engine.spec import RunSpec

SMALL = dict(size="t10k", steps=10, batch_tokens=128, seq_len=16)


@pytest.fixture
def cli(monkeypatch):
    """engine.cli.main with `runs`/`export` registered (as the lead wires them), its error handling included."""
    import engine.cli

    build = engine.cli.build_parser

    def build_with_runs():
        p = build()
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        if "runs" not in sub.choices:
            add_runs_parser(sub)
        return p

    monkeypatch.setattr(engine.cli, "build_parser", build_with_runs)
    return engine.cli.main


@pytest.fixture
def small_cache(tmp_cache, fake_result):
    """Six runs: t10k FP16/INT6 x warmdown 0.1/0.5 x seed 0, one INT6 seed 1, one diverged t20k INT8."""
    specs = [RunSpec(bits=b, warmdown=wd, seed=0, **SMALL) for b in (16, 6) for wd in (0.1, 0.5)]
    specs.append(RunSpec(bits=6, warmdown=0.5, seed=1, **SMALL))
    for s in specs:
        tmp_cache.put(s, fake_result(s))
    bad = RunSpec(bits=8, warmdown=0.33, seed=0, **{**SMALL, "size": "t20k"})
    tmp_cache.put(bad, fake_result(bad, diverged=True))
    return tmp_cache, specs, bad


def test_runs_lists_every_run_as_a_table(cli, small_cache, capsys):
    cache, specs, bad = small_cache
    assert cli(["runs", "--cache-dir", str(cache.root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:9] == ["run", "size", "bits", "warmdown", "shape", "optim", "seed", "steps", "status"]
    assert len(out) == 1 + 6 + 1  # header, one line per run, the count line
    assert out[-1] == "6 run(s): 5 ok, 1 diverged"
    assert any(line.startswith(bad.run_id[:12]) and "diverged@7" in line and "int8" in line for line in out)


@pytest.mark.parametrize("flags, expected", [
    (["--bits", "int6"], 3),
    (["--bits", "16", "--bits", "8"], 3),
    (["--size", "t20k"], 1),
    (["--status", "diverged"], 1),
    (["--status", "ok", "--bits", "6", "--size", "t10k,t20k"], 3),
], ids=["bits-int6", "bits-fp16-or-int8", "size-t20k", "status-diverged", "all-filters"])
def test_runs_filters(cli, small_cache, capsys, flags, expected):
    cache, _, _ = small_cache
    assert cli(["runs", "--json", "--cache-dir", str(cache.root), *flags]) == 0
    assert len(json.loads(capsys.readouterr().out)) == expected


def test_runs_json_rows_have_full_ids_and_numbers(cli, small_cache, capsys):
    cache, specs, _ = small_cache
    cli(["runs", "--json", "--status", "ok", "--cache-dir", str(cache.root)])
    rows = json.loads(capsys.readouterr().out)
    assert {r["run_id"] for r in rows} == {s.run_id for s in specs}
    assert all(isinstance(r["val_bpb_q"], float) and r["warmdown"] in (0.1, 0.5) for r in rows)


def test_runs_profile_and_design_filter(cli, unit, fake_result, capsys):
    """--profile/--design keep exactly the design's runs; a run of no design is left out."""
    path, profile, cache = unit
    design = profile.design("phase2").specs
    for s in design[:5]:
        cache.put(s, fake_result(s))
    stray = RunSpec(bits=6, warmdown=0.2, seed=9, **SMALL)
    cache.put(stray, fake_result(stray))
    cli(["runs", "--json", "--profile", str(path), "--design", "phase2", "--cache-dir", str(cache.root)])
    assert {r["run_id"] for r in json.loads(capsys.readouterr().out)} == {s.run_id for s in design[:5]}


@pytest.mark.parametrize("argv, message", [
    (["runs", "--design", "phase2"], "--design needs --profile"),
    (["runs", "--profile", "tiny", "--design", "nosuch"], "nosuch"),
    (["export"], "nothing to export"),
    (["export", "--format", "parquet"], "give --out"),
], ids=["design-without-profile", "unknown-design", "export-nothing", "parquet-to-stdout"])
def test_bad_input_is_one_error_line(cli, tmp_cache, capsys, argv, message):
    assert cli([*argv, "--cache-dir", str(tmp_cache.root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_bits_value_spellings():
    assert [bits_value(t) for t in ("6", "int6", "INT6", "fp16", "16")] == [6, 6, 6, 16, 16]
    with pytest.raises(argparse.ArgumentTypeError):
        bits_value("six")


def test_export_csv_round_trips_the_results_table(cli, small_cache, tmp_path):
    cache, _, _ = small_cache
    out = tmp_path / "runs.csv"
    assert cli(["export", "--format", "csv", "--out", str(out), "--cache-dir", str(cache.root)]) == 0
    df = pd.read_csv(out)
    want = cache.table().set_index("run_id")
    assert len(df) == 6 and set(df.run_id) == set(want.index)
    got = df.set_index("run_id").loc[want.index]
    pd.testing.assert_series_equal(got.val_bpb_q, want.val_bpb_q, check_names=False)
    assert (got.status == want.status).all()


def test_export_csv_to_stdout_with_filter(cli, small_cache, capsys):
    cache, _, bad = small_cache
    assert cli(["export", "--format", "csv", "--status", "diverged", "--cache-dir", str(cache.root)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("run_id,") and lines[1].startswith(bad.run_id)


def test_export_parquet_round_trips(cli, small_cache, tmp_path):
    pytest.importorskip("pyarrow")
    cache, _, _ = small_cache
    out = tmp_path / "runs.parquet"
    assert cli(["export", "--format", "parquet", "--out", str(out), "--cache-dir", str(cache.root)]) == 0
    df = pd.read_parquet(out)
    want = cache.table().set_index("run_id")
    got = df.set_index("run_id").loc[want.index]
    assert len(df) == 6
    pd.testing.assert_series_equal(got.val_bpb_q, want.val_bpb_q, check_names=False)
    assert (got.bits == want.bits).all() and (got.seed == want.seed).all()


def test_export_parquet_without_pyarrow_says_pip_install(cli, small_cache, tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_pyarrow(name, *a, **k):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError("No module named 'pyarrow'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    cache, _, _ = small_cache
    out = tmp_path / "runs.parquet"
    assert cli(["export", "--format", "parquet", "--out", str(out), "--cache-dir", str(cache.root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install pyarrow" in err[0] and not out.exists()


def _read_events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(folder))
    ea.Reload()
    return ea


def test_export_tensorboard_one_folder_per_run_with_curve_and_hparams(cli, small_cache, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.plugins.hparams import plugin_data_pb2

    cache, specs, bad = small_cache
    logdir = tmp_path / "tb"
    argv = ["export", "--tensorboard", str(logdir), "--cache-dir", str(cache.root)]
    assert cli(argv) == 0
    records = {r["run_id"]: r for r in cache.iter_records()}
    assert sorted(p.name for p in logdir.iterdir()) == sorted(run_folder_name(r) for r in records.values())

    rec = records[specs[3].run_id]  # INT6, warmdown 0.5
    ea = _read_events(logdir / run_folder_name(rec))
    curve = [(e.step, e.value) for e in ea.Scalars("train/loss")]
    assert curve == [(s, pytest.approx(v, rel=1e-6)) for s, v in rec["result"]["loss_curve"]]
    assert ea.Scalars("final/val_bpb_q")[0].value == pytest.approx(rec["result"]["val_bpb_q"], rel=1e-6)
    content = ea.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content)
    hp = start.session_start_info.hparams
    assert hp["warmdown"].number_value == pytest.approx(0.5) and hp["bits"].number_value == 6
    assert hp["size"].string_value == "t10k" and hp["run_id"].string_value == rec["run_id"]

    # the diverged run has its curve and no final metrics; a second export does not double any curve
    assert cli(argv) == 0
    ea = _read_events(logdir / run_folder_name(records[bad.run_id]))
    assert len(ea.Scalars("train/loss")) == len(records[bad.run_id]["result"]["loss_curve"])
    assert "final/val_bpb_q" not in ea.Tags()["scalars"]
    assert len(list((logdir / run_folder_name(rec)).iterdir())) == 1  # one event file after the rewrite


# --- TensorBoard on real runs: every kept point read back ------------------------------------

REAL = dict(size="t10k", steps=30, batch_tokens=128, seq_len=16, val_tokens=1024, muon_momentum_warmup_steps=5)


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory, one_thread_module):
    """A cache of real tiny runs (t10k, 30 steps, ~1 s each): an INT6 run with a mid-run probe and a run that
    diverges. The curve cap is lowered to 8 points so the real loop's stride (every 5th step, and the last)
    is what the export reads back."""
    from engine.cache import ResultsCache
    from engine.train import train

    root = tmp_path_factory.mktemp("real")
    cache = ResultsCache(root / "cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("engine.runlog.CURVE_POINTS", 8)
        for spec in (RunSpec(**REAL, bits=6, probe_fracs=(0.5,)), RunSpec(**REAL, bits=16, lr_mult=1e12)):
            cache.put(spec, train(spec, data_dir=root / "data"))
    return cache


def _points(ea, tag):
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def _same(points, recorded):
    """Event-file scalars (float32) equal a record's (step, value) pairs, point for point."""
    assert [s for s, _ in points] == [int(s) for s, _ in recorded]
    for (_, got), (_, want) in zip(points, recorded):
        assert got == pytest.approx(want, rel=1e-6, nan_ok=True) or got == want  # inf == inf


def test_export_tensorboard_of_real_runs_has_every_recorded_point(cli, real_cache, tmp_path):
    pytest.importorskip("tensorboard")
    logdir = tmp_path / "tb"
    assert cli(["export", "--tensorboard", str(logdir), "--cache-dir", str(real_cache.root)]) == 0
    records = {r["result"]["status"]: r for r in real_cache.iter_records()}
    assert set(records) == {"ok", "diverged"}

    ok = records["ok"]
    res = ok["result"]
    assert [s for s, _ in res["loss_curve"]] == [0, 5, 10, 15, 20, 25, 29]  # every 5th step and the last
    ea = _read_events(logdir / run_folder_name(ok))
    _same(_points(ea, "train/loss"), res["loss_curve"])
    assert res["val_curve"] == [[30, res["val_bpb"]]]  # one evaluation, after the last step (JSON: lists)
    _same(_points(ea, "val/bpb"), res["val_curve"])
    probes = sorted(res["grid_probes"], key=lambda p: p["step"])
    assert [p["label"] for p in probes] == ["probe", "pre_warmdown"]  # 15, then 30 x (1 - 0.33) = 20
    _same(_points(ea, "probe/grid_dist_int6"), [(p["step"], p["int6_mean"]) for p in probes])
    _same(_points(ea, "probe/grid_dist_own"), [(p["step"], p["own_mean"]) for p in probes])
    assert _points(ea, "final/val_bpb_q")[0][1] == pytest.approx(res["val_bpb_q"], rel=1e-6)

    bad = records["diverged"]
    ea = _read_events(logdir / run_folder_name(bad))
    _same(_points(ea, "train/loss"), bad["result"]["loss_curve"])  # up to and with the non-finite step
    assert bad["result"]["val_curve"] == [] and "val/bpb" not in ea.Tags()["scalars"]


def test_export_tensorboard_reads_records_made_before_val_curves(cli, tmp_cache, fake_result, tmp_path):
    """A record of the 64-point days (no val_curve) still exports: its curve whole, its val_bpb as one point."""
    pytest.importorskip("tensorboard")
    spec = RunSpec(**{**SMALL, "steps": 640})
    old = fake_result(spec)
    old["loss_curve"] = [[s, 5.0 - s / 1000] for s in range(0, 640, 10)]  # curve_every = 640 // 64
    assert "val_curve" not in old and len(old["loss_curve"]) == 64
    rec = tmp_cache.put(spec, old)
    logdir = tmp_path / "tb"
    assert cli(["export", "--tensorboard", str(logdir), "--cache-dir", str(tmp_cache.root)]) == 0
    ea = _read_events(logdir / run_folder_name(rec))
    _same(_points(ea, "train/loss"), old["loss_curve"])
    _same(_points(ea, "val/bpb"), [(640, old["val_bpb"])])


def test_export_tensorboard_without_tensorboard_says_pip_install(cli, small_cache, tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *a, **k):
        if name.startswith("torch.utils.tensorboard") or name.split(".")[0] == "tensorboard":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    cache, _, _ = small_cache
    logdir = tmp_path / "tb"
    assert cli(["export", "--tensorboard", str(logdir), "--cache-dir", str(cache.root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install tensorboard" in err[0] and not logdir.exists()

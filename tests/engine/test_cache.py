"""Results cache: atomic records, corrupt-record errors, locking, the shared run queue."""

import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest

from engine.cache import CorruptRecordError, MissingRunsError, ResultsCache, records_to_table
from engine.spec import RunSpec


def spec(seed: int = 0, **kw) -> RunSpec:
    return RunSpec(size="t20k", seed=seed, **kw)


def test_put_get_layout(tmp_path, fake_result):
    c = ResultsCache(tmp_path)
    s = spec()
    assert c.get(s) is None
    c.put(s, fake_result(s))
    rid = s.run_id
    assert (tmp_path / rid[:2] / rid / "record.json").exists()
    rec = c.get(s)
    assert rec["spec"] == s.to_dict() and rec["result"]["val_bpb"] == fake_result(s)["val_bpb"]
    assert not list(tmp_path.rglob("*.tmp"))  # no temp file left behind
    assert c.find(rid[:8])["run_id"] == rid


def test_only_finished_runs_are_written(tmp_path):
    with pytest.raises(ValueError, match="only finished runs"):
        ResultsCache(tmp_path).put(spec(), {"status": "running"})
    assert not list(tmp_path.rglob("record.json"))


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda p: p.write_text(p.read_text()[:40]), "unreadable or truncated"),
        (lambda p: p.write_bytes(b"\x00\xff garbage"), "unreadable or truncated"),
        (lambda p: p.write_text(json.dumps({"hello": 1})), "not a run record"),
        (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "result_format": 0})), "result format 0"),
        (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "spec": spec(seed=9).to_dict()})),
         "does not match"),
    ],
)
def test_corrupt_record_is_a_clear_error_or_quarantined(tmp_path, damage, needle, fake_result):
    c = ResultsCache(tmp_path)
    s = spec()
    c.put(s, fake_result(s))
    damage(c.record_path(s))
    with pytest.raises(CorruptRecordError) as e:
        c.get(s)
    assert needle in str(e.value) and str(c.record_path(s)) in str(e.value) and "quarantine" in str(e.value)
    q = ResultsCache(tmp_path, on_corrupt="quarantine")
    assert q.get(s) is None  # moved aside: the run will be retrained
    assert list((tmp_path / "_quarantine").iterdir())


def test_missing_runs_without_training_raise(tmp_cache):
    with pytest.raises(MissingRunsError, match="2 run"):
        tmp_cache.ensure([spec(0), spec(1)], None, missing_hint="run the sweep")


def test_ensure_trains_once_and_table(tmp_path, fake_result):
    c = ResultsCache(tmp_path)
    calls = []
    recs = c.ensure([spec(0), spec(1), spec(0)], lambda s: calls.append(s) or fake_result(s))
    assert len(calls) == 2 and len(recs) == 3
    assert c.ensure([spec(0)], lambda s: pytest.fail("retrained a cached run"))[0]["run_id"] == spec(0).run_id
    t = c.table()
    assert len(t) == 2 and {"size", "bits", "warmdown", "seed", "val_bpb", "status"} <= set(t.columns)
    assert "loss_curve" not in t.columns  # only scalars in the table


def _worker(root: str, seeds: list[int], counter_dir: str, fake_result) -> list[str]:
    def train(s: RunSpec) -> dict:
        Path(counter_dir, f"{s.run_id}.{os.getpid()}.{time.time_ns()}").touch()
        time.sleep(0.05)
        return fake_result(s)

    recs = ResultsCache(root).ensure([spec(k) for k in seeds], train, poll_s=0.01)
    return [json.dumps(r, sort_keys=True) for r in recs]


def test_four_processes_train_each_run_exactly_once(tmp_path, fake_result):
    counter = tmp_path / "counter"
    counter.mkdir()
    seeds = list(range(12))
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        outs = pool.starmap(_worker, [(str(tmp_path / "c"), seeds[i:] + seeds[:i], str(counter), fake_result)
                                     for i in (0, 3, 6, 9)])
    trained = [p.name.split(".")[0] for p in counter.iterdir()]
    assert sorted(trained) == sorted(spec(k).run_id for k in seeds)  # each exactly once
    by_run = [dict(zip([spec(k).run_id for k in seeds[i:] + seeds[:i]], o)) for i, o in zip((0, 3, 6, 9), outs)]
    for rid in by_run[0]:
        assert len({b[rid] for b in by_run}) == 1  # every requester got the identical record


def test_records_to_table_keeps_diverged_rows():
    s = spec()
    rec = {"run_id": s.run_id, "spec": s.to_dict(), "result": {"status": "diverged", "diverged_step": 3}}
    t = records_to_table([rec])
    assert t.loc[0, "status"] == "diverged" and t.loc[0, "diverged_step"] == 3


def test_ensure_packs_same_shape_runs(tmp_path, fake_result):
    c = ResultsCache(tmp_path)
    specs = [spec(k) for k in range(5)] + [spec(k, steps=7) for k in range(2)]
    packs, singles = [], []

    def many(group):
        packs.append([s.steps for s in group])
        return [fake_result(s) for s in group]

    recs = c.ensure(specs, lambda s: singles.append(s) or fake_result(s),
                    pack=(3, lambda s: s.steps, many))
    assert len(recs) == 7 and all(r is not None for r in recs)
    # 5 runs of one shape -> packs of 3 and 2; 2 runs of another -> one pack; never mixed
    assert sorted(map(len, packs)) == [2, 2, 3] and all(len(set(p)) == 1 for p in packs)
    assert singles == []


def test_a_record_written_before_an_option_existed_still_reads(tmp_path, fake_result):
    # records cached before qat_lr_restart existed have no such key: same run id, same run
    c = ResultsCache(tmp_path)
    c.put(spec(0), fake_result(spec(0)))
    path = c.record_path(spec(0))
    old = json.loads(path.read_text())
    del old["spec"]["qat_lr_restart"]
    path.write_text(json.dumps(old))
    assert c.get(spec(0))["run_id"] == spec(0).run_id
    assert c.table()["qat_lr_restart"].tolist() == [False]


def test_a_record_written_before_the_warmdown_rename_still_reads(tmp_path, fake_result):
    # records written before `wd` was renamed `warmdown` store "wd": read under the new name, same run id
    c = ResultsCache(tmp_path)
    s = spec(0).replace(warmdown=0.5)
    c.put(s, fake_result(s))
    path = c.record_path(s)
    old = json.loads(path.read_text())
    old["spec"]["wd"] = old["spec"].pop("warmdown")
    path.write_text(json.dumps(old))
    assert c.get(s)["spec"]["warmdown"] == 0.5 and "wd" not in c.get(s)["spec"]
    assert [r["spec"]["warmdown"] for r in c.iter_records()] == [0.5]
    table = c.table()
    assert table["warmdown"].tolist() == [0.5] and "wd" not in table.columns
    assert table["run_id"].tolist() == [s.run_id]

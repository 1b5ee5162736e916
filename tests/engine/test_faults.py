"""Kill -9 at chosen points of real training processes: nothing is lost or half-written.

Each chain kills one run again and again at different points (mid-step, after a step,
mid-checkpoint, before evaluation, mid-cache-write), restarting it each time; after every
kill there is no record, the run's lock is free, and the final run equals an uninterrupted
one with the same seed. 3 chains x 7 kills = 21 kill points.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cache import ResultsCache
from engine.spec import RunSpec
from engine.train import train

REPO = Path(__file__).resolve().parents[2]
FLAGS = dict(size="t20k", bits=6, warmdown=0.5, steps=40, batch_tokens=1024, seq_len=64, val_tokens=4096)
EVERY = 10  # checkpoint cadence of the chains

# "point:n" kills at the n-th arrival in that process; a restarted process resumes from the
# newest complete checkpoint (every 10 steps), so counts are relative to the resume.
CHAINS = {
    "steps-then-checkpoint": ["step:5", "step:15", "checkpoint:1", "backward:3", "checkpoint:2", "before_eval:1",
                              "cache_write:1"],
    "mid-step-everywhere": ["backward:1", "backward:12", "step:10", "backward:25", "step:4", "step:9",
                            "cache_write:1"],
    "late-kills": ["checkpoint:3", "checkpoint:1", "step:2", "before_eval:1", "step:7", "backward:9",
                   "cache_write:1"],
}


def cli(cache_dir: Path, data_dir: Path, fault: str | None) -> subprocess.CompletedProcess:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in FLAGS.items()]
    env = {**os.environ, "QAT_DATA_DIR": str(data_dir), "QAT_FAULT": fault or ""}
    cmd = [sys.executable, "-m", "engine", "train", *flags, "--cache-dir", str(cache_dir), "--threads", "1",
           "--quiet", "--checkpoint-every", str(EVERY)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_thread_module):
    # The CLI runs below use one thread: same reductions, same floats.
    return train(RunSpec(**FLAGS), data_dir=tmp_path_factory.mktemp("data"))


@pytest.mark.slow
@pytest.mark.parametrize("chain", list(CHAINS))
def test_kill_chain_loses_nothing(chain, tmp_path, reference):
    cache = ResultsCache(tmp_path / "cache")
    spec = RunSpec(**FLAGS)
    for fault in CHAINS[chain]:
        proc = cli(cache.root, tmp_path / "data", fault)
        assert proc.returncode == -signal.SIGKILL, f"{fault}: expected a kill, got {proc.returncode}\n{proc.stderr[-2000:]}"
        assert cache.get(spec) is None, f"{fault}: a killed run left a record"
        lock = cache._claim(spec, timeout=0)
        assert lock is not None, f"{fault}: the dead process's lock was not released"
        lock.release()
        assert all(p.name.endswith((".tmp", ".lock", "owner.json", "ckpt")) or p.is_dir()
                   for p in cache.run_dir(spec).iterdir())
    proc = cli(cache.root, tmp_path / "data", None)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = cache.get(spec)
    assert record["result"]["status"] == "ok"
    assert record["result"]["resumed_from_step"] > 0  # it really resumed
    for key in ("val_bpb", "val_bpb_q", "val_bpb_int8", "grid_dist_int6_prewd"):
        assert record["result"][key] == pytest.approx(reference[key], rel=1e-6, abs=1e-9), key
    assert not cache.checkpoint_dir(spec).exists()  # checkpoints go once the record is written
    assert not list(cache.run_dir(spec).glob(".*.tmp"))  # debris of the killed writer removed

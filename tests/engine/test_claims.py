"""One computation per run across drivers (engine.claims, engine.executors.fill): a run another live
driver has claimed is waited for, not trained again; a stale claim (a dead driver's, one whose
heartbeat stopped, one whose driver ended) is taken over; claims are released on every exit.

Drivers here are threads calling `fill`; they meet on events (a driver's executor started, the other
driver refused a claim), never on fixed sleeps. The fast tests use synthetic executors; the slow one
runs two real sweeps of t10k runs at once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from engine.cache import OK_METRICS, ResultsCache
from engine.claims import CLAIM, DRIVERS_SUBDIR, Claims, boot_id, read_claim, stale_reason
from engine.executors import fill, make_executor
from engine.spec import RunSpec

FAST = dict(size="t10k", steps=6, batch_tokens=256, seq_len=32, val_tokens=256, muon_momentum_warmup_steps=1)
WAIT = 120.0  # generous: only a broken driver gets near it


def specs(n: int = 3) -> list[RunSpec]:
    return [RunSpec(**FAST, seed=i) for i in range(n)]


def ok(bpb: float = 1.0) -> dict:
    return {"status": "ok", **{k: bpb for k in OK_METRICS}}


class Gated:
    """An executor that signals `started` when it is given tasks, then holds them until `go` is set;
    `fail` makes every task fail instead. Counts the runs it trained."""

    def __init__(self, fail: bool = False):
        self.started, self.go, self.fail, self.trained = threading.Event(), threading.Event(), fail, []

    def run(self, tasks, **kwargs):
        self.started.set()
        assert self.go.wait(WAIT), "never released"
        for t in tasks:
            if self.fail:
                yield t, RuntimeError("boom")
            else:
                self.trained += t.specs
                yield t, [ok() for _ in t.specs]


class Driver(threading.Thread):
    """`fill` in a thread; its report (or exception) kept."""

    def __init__(self, cache, runs, executor, **kw):
        super().__init__(daemon=True)
        self.args, self.kw = (cache, runs, executor), kw
        self.report = self.error = None

    def run(self):
        try:
            self.report = fill(*self.args, progress=False, wait_poll_s=0.05, **self.kw)
        except BaseException as e:  # noqa: BLE001 - shown by the test
            self.error = e

    def result(self):
        self.join(WAIT)
        assert not self.is_alive(), "driver did not finish"
        if self.error:
            raise self.error
        return self.report


@pytest.fixture(autouse=True)
def no_preflight(request, monkeypatch):
    # the fast tests' runs never train: their data need not be tokenised
    if not request.node.get_closest_marker("slow"):
        monkeypatch.setattr("engine.train.preflight", lambda specs, data_dir=None: None)


@pytest.fixture
def refused(monkeypatch):
    """Set when some driver finds a claim it may not take (another live driver holds it)."""
    event = threading.Event()
    take = Claims.take

    def watched(self, spec):
        got = take(self, spec)
        if not got:
            event.set()
        return got

    monkeypatch.setattr(Claims, "take", watched)
    return event


def no_claims_left(cache) -> bool:
    return not list(cache.root.glob(f"[0-9a-f][0-9a-f]/*/{CLAIM}"))


# --- two drivers ---------------------------------------------------------------------------------


def test_a_second_driver_waits_for_the_runs_the_first_is_training(tmp_path, refused):
    cache = ResultsCache(tmp_path / "cache")
    runs = specs()
    first, second = Gated(), Gated()
    a = Driver(cache, runs, first)
    a.start()
    assert first.started.wait(WAIT)  # a holds the claims of every run and trains them
    b = Driver(cache, runs, second)
    b.start()
    assert refused.wait(WAIT)  # b found a's live claims
    first.go.set()
    second.go.set()
    ra, rb = a.result(), b.result()
    assert (ra.trained, len(first.trained)) == (3, 3)
    assert (rb.trained, rb.waited, rb.duplicates, rb.failed, second.trained) == (0, 3, 0, [], [])  # nothing twice
    assert not second.started.is_set()  # b dispatched nothing
    assert not cache.missing(runs) and no_claims_left(cache)


def test_a_run_whose_driver_failed_is_trained_by_the_driver_waiting_for_it(tmp_path, refused):
    cache = ResultsCache(tmp_path / "cache")
    runs = specs(2)
    first, second = Gated(fail=True), Gated()
    second.go.set()
    a = Driver(cache, runs, first)
    a.start()
    assert first.started.wait(WAIT)
    b = Driver(cache, runs, second)
    b.start()
    assert refused.wait(WAIT)
    first.go.set()  # a's tasks fail: a releases its claims, b takes them and trains
    assert len(a.result().failed) == 2
    assert b.result().trained == 2 and len(second.trained) == 2
    assert not cache.missing(runs) and no_claims_left(cache)


# --- a driver and a process that trains a run itself (`engine train`: ResultsCache.ensure) --------------


def test_engine_train_waits_for_a_run_a_driver_has_claimed(tmp_path, monkeypatch):
    import engine.cache

    cache = ResultsCache(tmp_path / "cache")
    [s] = specs(1)
    looked = threading.Event()
    claimed = engine.cache.claimed_by_driver

    def watched(*args):
        busy = claimed(*args)
        if busy:
            looked.set()
        return busy

    monkeypatch.setattr(engine.cache, "claimed_by_driver", watched)
    trained = []
    with Claims(cache.run_dir, cache.root / DRIVERS_SUBDIR) as driver:
        assert driver.take(s)
        done = {}
        t = threading.Thread(target=lambda: done.update(r=cache.ensure([s], lambda x: trained.append(x) or ok(),
                                                                        poll_s=0.02)), daemon=True)
        t.start()
        assert looked.wait(WAIT)  # it found the driver's live claim, and did not train
        cache.put(s, ok(2.0))  # the driver's record
        driver.release(s)
    t.join(WAIT)
    assert not t.is_alive() and trained == [] and done["r"][0]["result"]["val_bpb"] == 2.0


def test_a_driver_waits_for_a_run_that_engine_train_is_training(tmp_path, refused):
    cache = ResultsCache(tmp_path / "cache")
    [s] = specs(1)
    ex = Gated()
    ex.go.set()
    lock = cache.lock(s)
    lock.acquire()  # what ResultsCache.ensure holds while it trains the run
    try:
        d = Driver(cache, [s], ex)
        d.start()
        assert refused.wait(WAIT)
        cache.put(s, ok(2.0))
    finally:
        lock.release()
    report = d.result()
    assert (report.trained, report.waited, ex.trained) == (0, 1, [])


# --- stale claims --------------------------------------------------------------------------------


def dead_pid() -> int:
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                       check=True)
    return int(p.stdout)


def foreign_claim(cache, spec, *, pid: int, heartbeat: float | None, same_machine: bool = True) -> None:
    """Another driver's claim on `spec`, and its heartbeat file (None: that driver has ended)."""
    import json
    import socket

    owner = {"token": "someoneelse", "pid": pid, "host": socket.gethostname() if same_machine else "elsewhere",
             "boot_id": boot_id() if same_machine else "another-boot", "started": time.time() - 900}
    where = cache.run_dir(spec)
    where.mkdir(parents=True, exist_ok=True)
    (where / CLAIM).write_text(json.dumps({**owner, "claimed": time.time() - 900}))
    if heartbeat is not None:
        (cache.root / DRIVERS_SUBDIR).mkdir(exist_ok=True)
        (cache.root / DRIVERS_SUBDIR / "someoneelse.json").write_text(json.dumps({**owner, "heartbeat": heartbeat}))


@pytest.mark.parametrize("how", ["dead driver", "no heartbeat", "driver ended"])
def test_a_stale_claim_is_taken_over_and_the_run_trained(tmp_path, how):
    cache = ResultsCache(tmp_path / "cache")
    [s] = specs(1)
    if how == "dead driver":  # same machine, fresh heartbeat, but its pid is gone: no need to wait out the timeout
        if boot_id() is None:
            pytest.skip("no /proc boot id: a pid cannot be told dead across machines")
        foreign_claim(cache, s, pid=dead_pid(), heartbeat=time.time())
    elif how == "no heartbeat":  # a live pid elsewhere, but no heartbeat for 10 minutes
        foreign_claim(cache, s, pid=1, heartbeat=time.time() - 600, same_machine=False)
    else:  # elsewhere, and its heartbeat file is gone: it ended without releasing the claim
        foreign_claim(cache, s, pid=1, heartbeat=None, same_machine=False)
    ex = Gated()
    ex.go.set()
    report = fill(cache, [s], ex, progress=False)
    assert (report.trained, report.waited, len(ex.trained)) == (1, 0, 1)
    assert no_claims_left(cache)


def test_which_claims_are_stale():
    now = time.time()
    claim = {"token": "t", "pid": 1, "host": "elsewhere", "boot_id": "another-boot"}
    beat = {"heartbeat": now}
    assert stale_reason(claim, beat, now) is None  # another machine, fresh: live
    assert "for 600 s" in stale_reason(claim, {"heartbeat": now - 600}, now)
    assert "has ended" in stale_reason(claim, None, now)
    assert stale_reason({}, beat, now) == "unreadable claim"
    # another machine's pid says nothing here: only the heartbeat can make it stale
    assert stale_reason({**claim, "pid": dead_pid()}, beat, now) is None


def test_a_live_claim_is_refused_and_the_heartbeat_keeps_it_fresh(tmp_path):
    cache = ResultsCache(tmp_path / "cache")
    [s] = specs(1)
    drivers = cache.root / DRIVERS_SUBDIR
    with Claims(cache.run_dir, drivers, heartbeat_s=0.05) as mine, Claims(cache.run_dir, drivers) as theirs:
        assert mine.take(s) and mine.take(s)  # taking one's own claim again is fine
        assert not theirs.take(s) and theirs.holder(s)["token"] == mine.owner["token"]
        claim = read_claim(cache.run_dir(s))
        assert {k: claim[k] for k in ("host", "pid", "started")} == {k: mine.owner[k] for k in ("host", "pid", "started")}
        first = json.loads(mine.heartbeat_file.read_text())["heartbeat"]
        deadline = time.monotonic() + WAIT
        while json.loads(mine.heartbeat_file.read_text())["heartbeat"] == first:  # the thread beats
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.01)
    assert not (cache.run_dir(s) / CLAIM).exists() and not list(drivers.iterdir())  # released and ended on exit


def test_claims_are_released_when_the_driver_stops(tmp_path):
    cache = ResultsCache(tmp_path / "cache")
    runs = specs(2)

    class Interrupted:
        def run(self, tasks, **kwargs):
            assert all((cache.run_dir(s) / CLAIM).exists() for s in runs)  # claimed before dispatch
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fill(cache, runs, Interrupted(), progress=False)
    assert no_claims_left(cache)


# --- two real sweeps ------------------------------------------------------------------------------


class Counting:
    """Counts the runs its executor's workers trained (every result that reaches the driver)."""

    def __init__(self, inner):
        self.inner, self.trained = inner, 0

    def check(self):
        self.inner.check()

    def environment(self, precision):
        from engine.executors import environment

        return environment(self.inner, precision)

    def run(self, tasks, **kwargs):
        for task, out in self.inner.run(tasks, **kwargs):
            if not isinstance(out, BaseException):
                self.trained += len(task.specs)
            yield task, out


@pytest.mark.slow
def test_two_sweeps_at_once_train_every_run_exactly_once(tmp_path):
    from engine.train import preflight

    runs = [RunSpec(**FAST, seed=s, bits=b) for s in (0, 1) for b in (16, 6)]
    cache = ResultsCache(tmp_path / "cache")
    preflight(runs, cache.data_dir)  # the data is ready: both drivers start training at once
    start = threading.Barrier(2)
    executors = [Counting(make_executor("local", workers=1, threads=1)) for _ in range(2)]

    class Sweep(Driver):
        def run(self):
            start.wait(WAIT)
            super().run()

    drivers = [Sweep(cache, runs, ex) for ex in executors]
    for d in drivers:
        d.start()
    reports = [d.result() for d in drivers]
    assert sum(ex.trained for ex in executors) == len(runs)  # each run computed once in total
    assert sum(r.trained for r in reports) == len(runs) and not any(r.duplicates or r.failed for r in reports)
    for r in reports:  # every run of the sweep accounted for in each driver
        assert r.trained + r.waited + r.cached == len(runs)
    assert not cache.missing(runs) and no_claims_left(cache)

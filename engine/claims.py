"""Claims: which driver is computing a run, so that two sweeps (or suites) on one cache train it once.

A driver (engine.executors.fill) claims a run before it dispatches it: `claim.json` in the run's
directory, beside its `.lock`, names the driver (a token, host, boot id, pid, when it started, when
it claimed the run). The driver's heartbeat is one file, `<cache>/_drivers/<token>.json`, that a
background thread refreshes every HEARTBEAT_S while the driver lives: one write per beat however
many runs it holds (a sweep of thousands of runs on a cluster file system would otherwise spend
its heartbeat rewriting thousands of claims). Another driver that finds a live claim does not
dispatch the run: it waits for the record. A claim is stale, and is taken over, when its driver's
heartbeat is older than STALE_S (its driver hung, its host died or its clock is off), when its
driver has ended (no heartbeat file), or, on the same machine (same boot), at once when its pid is
gone (a killed driver). The driver releases a claim when the run's record is written or its task
failed, and every claim it holds on any exit (`Claims` is a context manager, which also removes its
heartbeat file); a SIGKILLed driver's claims go stale.

Taking, taking over and releasing read and write the claim under a short-lived file lock
(`.claim.lock`, filelock: atomic between processes and threads; held for one small file operation,
never while training). Claim and heartbeat files are replaced by rename, so a reader never sees half
of one; they are not fsync'ed: after a crash of the machine their driver is gone too. Why files with
a heartbeat rather than an OS lock held for the whole run: the driver holds its claims while remote
workers (Ray, Slurm) train, and the files say who is training what, for people
(`cat <run dir>/claim.json`).

A process that trains a run itself (`engine train`, engine.cache.ResultsCache.ensure) holds the
run's lock instead; the two meet both ways: a claim is only taken while that lock is free (taken for
the moment the claim is written), and `ensure` leaves a run alone while a live claim is on it
(`claimed_by_driver`), waiting for its record as it waits for a locked run.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from functools import lru_cache
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

CLAIM = "claim.json"
CLAIM_LOCK = ".claim.lock"
RUN_LOCK = ".lock"  # engine.cache's per-run lock: held by a process training the run itself (`engine train`)
DRIVERS_SUBDIR = "_drivers"  # <cache>/_drivers/<token>.json: each live driver's heartbeat
HEARTBEAT_S = 30.0  # how often a live driver refreshes its heartbeat
STALE_S = 300.0  # a driver whose heartbeat is older than this has lost its claims (10 missed beats)
LOCK_WAIT_S = 60.0  # the claim lock is held for one small file operation; longer means a hung file system


@lru_cache(maxsize=1)
def boot_id() -> str | None:
    """This machine's boot (Linux); a pid is only meaningful on the same boot of the same machine."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def same_machine(claim: dict) -> bool:
    """Whether the claim was taken on this machine in this boot (hostnames alone repeat: `vm`, containers)."""
    mine = boot_id()
    return mine is not None and claim.get("boot_id") == mine and claim.get("host") == socket.gethostname()


def _read_json(path: Path) -> dict | None:
    """The JSON object at `path`, {} if it cannot be read, None if there is no file."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _replace_json(path: Path, payload: dict) -> None:
    """Write `payload` to a temp file beside `path` and rename it over `path` (whole or absent; no fsync)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_claim(run_dir: Path) -> dict | None:
    """The claim of the run in `run_dir`, {} if it cannot be read, None if there is none."""
    return _read_json(Path(run_dir) / CLAIM)


def read_heartbeat(drivers_dir: Path, claim: dict) -> dict | None:
    """The heartbeat file of the driver that made `claim` (None: that driver has ended)."""
    token = claim.get("token")
    if not isinstance(token, str) or not token.isalnum():
        return None
    return _read_json(Path(drivers_dir) / f"{token}.json")


def stale_reason(claim, heartbeat, now: float, stale_s: float = STALE_S) -> str | None:
    """Why a claim no longer holds its run (None: its driver is alive as far as can be told).
    `heartbeat` is its driver's heartbeat file (`read_heartbeat`)."""
    if not isinstance(claim, dict) or not isinstance(claim.get("token"), str):
        return "unreadable claim"
    who = f"driver pid {claim.get('pid')} on {claim.get('host')}"
    if heartbeat is None:
        return f"its {who} has ended"
    beat = heartbeat.get("heartbeat")
    if not isinstance(beat, (int, float)):
        return f"its {who} has an unreadable heartbeat"
    if now - beat > stale_s:
        return f"no heartbeat from its {who} for {now - beat:.0f} s"
    if same_machine(claim) and isinstance(claim.get("pid"), int) and not pid_alive(claim["pid"]):
        return f"its driver (pid {claim['pid']}) is gone"
    return None


def claimed_by_driver(run_dir: Path, drivers_dir: Path) -> bool:
    """Whether a live driver has claimed the run in `run_dir` (engine.cache.ResultsCache.ensure waits then)."""
    claim = read_claim(run_dir)
    if claim is None:
        return False
    return stale_reason(claim, read_heartbeat(drivers_dir, claim), time.time()) is None


class Claims:
    """The claims one driver holds, and its heartbeat (a background thread); on exit every claim is
    released and the heartbeat file removed.

    `run_dir(spec)` says where a run lives (engine.cache.ResultsCache.run_dir), `drivers_dir` where
    drivers keep their heartbeats (<cache>/_drivers). Thread-safe: the driver and the heartbeat
    thread share it.
    """

    def __init__(self, run_dir, drivers_dir: Path, *, heartbeat_s: float = HEARTBEAT_S, stale_s: float = STALE_S):
        self.run_dir, self.drivers_dir = run_dir, Path(drivers_dir)
        self.heartbeat_s, self.stale_s = heartbeat_s, stale_s
        self.owner = {"token": uuid.uuid4().hex, "pid": os.getpid(), "host": socket.gethostname(),
                      "boot_id": boot_id(), "started": time.time(),
                      "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.heartbeat_file = self.drivers_dir / f"{self.owner['token']}.json"
        self.held: dict[str, Path] = {}  # run id -> run dir
        self._mu = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the context: a heartbeat while open, everything released on exit ----------------------
    def __enter__(self) -> Claims:
        self.drivers_dir.mkdir(parents=True, exist_ok=True)
        self._beat_once()  # before any claim: a claim without its driver's heartbeat reads as stale
        self._thread = threading.Thread(target=self._beat, name="claims-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._mu:
            held = list(self.held)
        for rid in held:
            self.release(rid)
        self.heartbeat_file.unlink(missing_ok=True)

    def _beat_once(self) -> None:
        now = time.time()
        _replace_json(self.heartbeat_file, {**self.owner, "heartbeat": now, "runs": len(self.held),
                                            "heartbeat_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self._beat_once()
            except OSError as e:  # a full or slow disk must not stop the driver; its claims go stale if it lasts
                log.warning("driver heartbeat %s not written (%s)", self.heartbeat_file, e)

    # --- one run -----------------------------------------------------------------------------
    def _lock(self, where: Path) -> FileLock:
        where.mkdir(parents=True, exist_ok=True)
        return FileLock(where / CLAIM_LOCK)

    def take(self, spec) -> bool:
        """Claim `spec`'s run for this driver: True if it was free, stale (taken over) or already ours;
        False if a live driver holds it or a process is training it itself (its run lock is held)."""
        where = Path(self.run_dir(spec))
        try:
            with self._lock(where).acquire(timeout=LOCK_WAIT_S):
                claim = read_claim(where)
                if claim is not None and claim.get("token") == self.owner["token"]:
                    return True
                if claim is not None:
                    why = stale_reason(claim, read_heartbeat(self.drivers_dir, claim), time.time(), self.stale_s)
                    if why is None:
                        return False
                    log.warning("run %s: taking over a stale claim (%s)", spec.run_id[:16], why)
                run_lock = FileLock(where / RUN_LOCK)
                try:  # a process training the run itself holds it: wait for its record instead
                    run_lock.acquire(timeout=0)
                except Timeout:
                    return False
                try:  # written while that lock is held: `ensure` takes the lock, then sees this claim
                    _replace_json(where / CLAIM, {**self.owner, "claimed": time.time()})
                finally:
                    run_lock.release()
        except Timeout:
            return False  # another process holds the claim lock for long: try again at the next poll
        with self._mu:
            self.held[spec.run_id] = where
        return True

    def release(self, spec_or_id) -> None:
        """Give up a claim (its record is written, or its task failed); someone else's claim is left alone."""
        rid = spec_or_id if isinstance(spec_or_id, str) else spec_or_id.run_id
        with self._mu:
            where = self.held.pop(rid, None)
        if where is None:
            return
        try:
            with self._lock(where).acquire(timeout=LOCK_WAIT_S):
                claim = read_claim(where)
                if claim is not None and claim.get("token") == self.owner["token"]:
                    (where / CLAIM).unlink(missing_ok=True)
        except (OSError, Timeout) as e:  # left to go stale: taken over once this driver has ended
            log.warning("run %s: claim not released (%s)", rid[:16], e)

    def holder(self, spec) -> dict | None:
        """The live claim another driver holds on `spec`'s run, if any (for messages and tests)."""
        claim = read_claim(Path(self.run_dir(spec)))
        if not claim or claim.get("token") == self.owner["token"]:
            return None
        live = stale_reason(claim, read_heartbeat(self.drivers_dir, claim), time.time(), self.stale_s) is None
        return claim if live else None

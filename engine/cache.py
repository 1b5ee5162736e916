"""The results cache: one record per finished run, keyed by the spec's hash.

Layout (readable by a person; `ls cache/ab/` shows runs):

    cache/<first 2 hex of run id>/<run id>/record.json   spec + result + provenance
    cache/<..>/<run id>/.lock                            per-run lock (fcntl: dies with its owner)
    cache/<..>/<run id>/owner.json                       who holds/held the lock (pid, host, time)
    cache/<..>/<run id>/claim.json                       the driver training the run (engine.claims)
    cache/_drivers/<token>.json                          each live driver's heartbeat (engine.claims)
    cache/_quarantine/<run id>.<time>.<tag>.json         corrupt records moved aside on request
    cache/_superseded/<run id>.<time>.<tag>.json         records replaced by a retrain in another identity
    cache/_data/                                         tokenised corpora and tokenizers (engine.paths)

Writes are atomic (`engine.atomic`): a unique temp file in the same directory, flush + fsync,
`os.replace`, fsync of the directory. A reader therefore sees either no record or a whole one; only a
finished run (ok or diverged) is ever written. The lock is an OS file lock (filelock's
fcntl backend), so a killed owner releases it: there is no stale lock to break on a
local file system; `owner.json` says who held it, for people.

A record is trusted only if its shape is whole (`record_problem`: a finished status, finite
metrics of an ok run, ...); otherwise it is corrupt like a truncated file. Training starts only
with room on the disk (`check_space`), and a result whose final write still fails is kept in the
temp directory and named in the error, to be put back with `restore` without retraining.

A record is served to a request only if it was made in the request's identity (`missing` and
`ensure` with `expect`; engine.identity): the same data (resolved source, file digests) and numeric
environment (device, CPU threads, precision). One made in another is an error naming the
difference, or is retrained on request (`on_mismatch="retrain"`), the new record replacing the old
atomically and the old one kept under `_superseded/`. Records from before identities were recorded
are served unchecked, with one warning per cache.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
from filelock import FileLock, Timeout

from engine.atomic import TMP_SUFFIX, atomic_write, atomic_write_json, fsync_dir
from engine.claims import DRIVERS_SUBDIR, RUN_LOCK, claimed_by_driver
from engine.identity import ON_MISMATCH_CHOICES, IdentityMismatchError, differences, mismatch_message
from engine.paths import QUARANTINE_SUBDIR, default_cache_dir
from engine.paths import data_dir as data_dir_of
from engine.spec import RESULT_FORMAT_VERSION, RunSpec, SpecError, renamed_fields, with_added_fields

log = logging.getLogger(__name__)

RECORD = "record.json"
CACHE_WRITE_FAULT = "cache_write"  # engine.faults point: temp file durable, not yet renamed
RUN_ID_PREFIX = re.compile(r"[0-9a-f]{4,64}")
FINISHED = ("ok", "diverged")
# Fields every finished record's result holds, and what the claim layer reads as numbers.
OK_METRICS = ("val_bpb", "val_bpb_q", "val_bpb_int8")
# Free space a cache needs before training starts: records, owner files, token caches; plus
# room for one run's resume checkpoint (weights + two Adam moments, fp32) when checkpointing.
MIN_FREE_BYTES = 64 * 2**20
CHECKPOINT_BYTES_PER_PARAM = 16
SUPERSEDED_SUBDIR = "_superseded"


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds `path` (or would hold it: its nearest existing ancestor)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def record_problem(record) -> str | None:
    """What is wrong with a record's shape (None if it is a whole finished run record).

    Valid JSON is not enough: a record is only trusted if its parts have the types the
    readers use (the results table, the deciders, `engine show`).
    """
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    if not isinstance(record.get("spec"), dict):
        return "no 'spec' object"
    if not isinstance(record.get("run_id"), str):
        return "no 'run_id' string"
    result = record.get("result")
    if not isinstance(result, dict):
        return "no 'result' object"
    status = result.get("status")
    if status not in FINISHED:
        return f"result status {status!r} is not a finished run ({' or '.join(FINISHED)})"
    if status == "ok":
        bad = [k for k in OK_METRICS if not (_is_number(result.get(k)) and math.isfinite(result[k]))]
        if bad:
            return f"an ok result without finite numbers for {bad}"
    elif not (result.get("diverged_step") is None or _is_number(result.get("diverged_step"))):
        return f"diverged_step {result.get('diverged_step')!r} is not a step"
    return None


class CorruptRecordError(RuntimeError):
    """A record on disk cannot be trusted; the message names the file and the fix."""


class MissingRunsError(RuntimeError):
    """Runs are needed that are not in the cache and training was not allowed."""

    def __init__(self, missing: list[RunSpec], hint: str):
        self.missing = missing
        super().__init__(f"{len(missing)} run(s) missing from the cache and training is off. {hint}")


def _fix(path: Path) -> str:
    return (
        f"Delete {path.parent} to retrain the run, or pass --on-corrupt quarantine "
        "(pytest: --qat-on-corrupt quarantine) to move bad records aside and retrain them."
    )


class ResultsCache:
    def __init__(self, root: Path | str | None = None, on_corrupt: str = "error"):
        if on_corrupt not in ("error", "quarantine"):
            raise ValueError(f"on_corrupt={on_corrupt!r}; allowed: 'error', 'quarantine'")
        self.root = Path(root) if root is not None else default_cache_dir()
        self.on_corrupt = on_corrupt
        self._warned_unchecked = False  # records without an identity: warned about once per cache
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"cache {self.root} is not a directory: give --cache-dir (pytest: --qat-cache-dir) "
                             "a directory; it is created if missing")

    # --- paths ----------------------------------------------------------------------
    def run_dir(self, spec_or_id: RunSpec | str) -> Path:
        rid = spec_or_id if isinstance(spec_or_id, str) else spec_or_id.run_id
        return self.root / rid[:2] / rid

    def record_path(self, spec: RunSpec | str) -> Path:
        return self.run_dir(spec) / RECORD

    @property
    def data_dir(self) -> Path:
        """Where this cache's tokenised corpora and tokenizers live (`engine.paths.data_dir`)."""
        return data_dir_of(self.root)

    def checkpoint_dir(self, spec: RunSpec) -> Path:
        """Where a run's resume checkpoints live until its record is written."""
        return self.run_dir(spec) / "ckpt"

    # --- reading --------------------------------------------------------------------
    def get(self, spec: RunSpec) -> dict | None:
        path = self.record_path(spec)
        if not path.exists():
            return None
        try:
            record = self._read(path)
            if with_added_fields(record["spec"]) != spec.to_dict() or record["run_id"] != spec.run_id:
                raise CorruptRecordError(f"{path}: its spec does not match the run id it is stored under. {_fix(path)}")
            return record
        except CorruptRecordError:
            if self.on_corrupt == "quarantine":
                self.quarantine(path)
                return None
            raise

    def has(self, spec: RunSpec) -> bool:
        return self.get(spec) is not None

    def _read(self, path: Path) -> dict:
        fix = _fix(path)
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CorruptRecordError(f"{path}: unreadable or truncated record ({e}). {fix}") from None
        if not isinstance(record, dict) or "result" not in record or "spec" not in record:
            raise CorruptRecordError(f"{path}: not a run record (no 'spec'/'result'). {fix}")
        if record.get("result_format") != RESULT_FORMAT_VERSION:
            raise CorruptRecordError(
                f"{path}: result format {record.get('result_format')!r}, this engine reads "
                f"{RESULT_FORMAT_VERSION}. {fix}"
            )
        problem = record_problem(record)
        if problem:
            raise CorruptRecordError(f"{path}: broken run record ({problem}). {fix}")
        try:  # a record written before a field was renamed (`wd` -> `warmdown`) is read under the new name
            record["spec"] = renamed_fields(record["spec"])
        except SpecError as e:
            raise CorruptRecordError(f"{path}: broken run record ({e}). {fix}") from None
        return record

    def quarantine(self, path: Path) -> Path | None:
        """Move a corrupt record to `_quarantine/` (the run directory stays: its lock is shared).

        Safe when several processes quarantine the same record at once: the record file is
        renamed (atomic) to a name no other process picks; the ones that lose the race find it
        gone and return None. Only the record moves, never the directory, so a process that is
        already retraining the run (holding the lock inside it) is not disturbed.
        """
        dest = self.root / QUARANTINE_SUBDIR / f"{path.parent.name}.{int(time.time())}.{uuid.uuid4().hex[:8]}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(path, dest)
        except FileNotFoundError:
            return None  # another process moved it first
        fsync_dir(path.parent)
        log.warning("quarantined corrupt record %s -> %s", path, dest)
        return dest

    def supersede(self, spec: RunSpec) -> Path | None:
        """Copy `spec`'s record to `_superseded/` before a retrain replaces it (call under the run's lock).

        A copy, not a move: the old record stays served until the new one is renamed over it, so a
        retrain that dies leaves the old record in place.
        """
        path = self.record_path(spec)
        dest = self.root / SUPERSEDED_SUBDIR / f"{spec.run_id}.{int(time.time())}.{uuid.uuid4().hex[:8]}.json"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dest, data)
        log.warning("run %s: the record made in another identity is kept in %s; the retrained one replaces it",
                    spec.short_id, dest)
        return dest

    def iter_records(self) -> Iterable[dict]:
        for path in sorted(self.root.glob(f"[0-9a-f][0-9a-f]/*/{RECORD}")):
            try:
                yield self._read(path)
            except CorruptRecordError:
                if self.on_corrupt == "quarantine":
                    self.quarantine(path)
                    continue
                raise

    def find(self, prefix: str) -> dict:
        if not RUN_ID_PREFIX.fullmatch(prefix):
            raise ValueError(f"run id {prefix!r} is not a run id prefix: give 4 to 64 lowercase hex characters "
                             "(as `engine show` and the results table print them)")
        hits = [p for p in self.root.glob(f"{prefix[:2]}/{prefix}*/{RECORD}")]
        if not hits:
            raise KeyError(f"no run with id starting {prefix!r} in {self.root}")
        if len(hits) > 1:
            raise KeyError(f"run id prefix {prefix!r} is ambiguous: {[h.parent.name[:16] for h in hits]}")
        return self._read(hits[0])

    # --- writing --------------------------------------------------------------------
    def put(self, spec: RunSpec, result: dict) -> dict:
        if result.get("status") not in ("ok", "diverged"):
            raise ValueError(f"only finished runs are cached; status={result.get('status')!r}")
        record = {
            "result_format": RESULT_FORMAT_VERSION,
            "run_id": spec.run_id,
            "spec": spec.to_dict(),
            "result": result,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        run_dir = self.run_dir(spec)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(run_dir / RECORD, record, fault=CACHE_WRITE_FAULT)
        except OSError as e:
            raise OSError(e.errno, f"cannot write {run_dir / RECORD} ({e.strerror or e}); "
                                   f"{self._rescue(record)}") from None
        return record

    def _rescue(self, record: dict) -> str:
        """Keep a finished result that the cache could not take (full disk): where it went, and how to restore it."""
        name = f"qat-record-{record['run_id'][:16]}.json"
        for where in (Path(tempfile.gettempdir()), Path.home()):
            try:
                atomic_write_json(where / name, record)
            except OSError:
                continue
            return (f"the finished result is kept in {where / name}: free space, then restore it with "
                    f"`python -c \"from engine.cache import ResultsCache; ResultsCache('{self.root}').restore('{where / name}')\"`"
                    " (no retraining)")
        return "the result could not be kept anywhere else either; it must be retrained"

    def restore(self, rescued: Path | str) -> dict:
        """Put a record kept by a failed write (`_rescue`) into this cache; it is checked like any record."""
        rescued = Path(rescued)
        record = self._read(rescued)
        spec = RunSpec.from_dict(record["spec"])
        if spec.run_id != record["run_id"]:
            raise CorruptRecordError(f"{rescued}: its spec does not match its run id; it cannot be restored")
        self.run_dir(spec).mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.record_path(spec), record)
        return record

    def check_space(self, specs: list[RunSpec], checkpoint_every: int = 0) -> None:
        """Refuse to start training on a nearly full disk or an unwritable cache (before any lock or file)."""
        if not specs:
            return
        p = self.root.absolute()
        while not p.exists() and p != p.parent:
            p = p.parent
        if not (p.is_dir() and os.access(p, os.W_OK | os.X_OK)):
            raise OSError(f"cache {self.root} cannot be written (no write permission in {p}); "
                          "give --cache-dir (pytest: --qat-cache-dir) a writable directory")
        need = MIN_FREE_BYTES
        if checkpoint_every:
            from engine.ladder import count_params, get_config

            need += max(CHECKPOINT_BYTES_PER_PARAM * count_params(get_config(s.size), 1024) for s in specs)
        free = free_bytes(self.root)
        if free < need:
            raise OSError(f"only {free / 2**20:.1f} MiB free on the disk of cache {self.root}, training needs at "
                          f"least {need / 2**20:.0f} MiB free (records, token caches, checkpoints); free space or "
                          "give --cache-dir (pytest: --qat-cache-dir) a directory on another disk")

    def lock(self, spec: RunSpec) -> FileLock:
        run_dir = self.run_dir(spec)
        run_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(run_dir / RUN_LOCK)

    def _claim(self, spec: RunSpec, timeout: float) -> FileLock | None:
        lock = self.lock(spec)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            return None
        atomic_write_json(
            self.run_dir(spec) / "owner.json",
            {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()},
            fault=CACHE_WRITE_FAULT,
        )
        return lock

    def _remove_debris(self, spec: RunSpec) -> None:
        """Temp files a killed writer left behind (never read as results; we hold the lock)."""
        for tmp in self.run_dir(spec).glob(f".*{TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)

    # --- the run queue ----------------------------------------------------------------
    def ensure(
        self,
        specs: list[RunSpec],
        train_fn: Callable[[RunSpec], dict] | None,
        *,
        missing_hint: str = "",
        poll_s: float = 0.5,
        on_trained: Callable[[RunSpec, dict], None] | None = None,
        pack: tuple[int, Callable[[RunSpec], tuple], Callable[[list[RunSpec]], list[dict]]] | None = None,
        before_training: Callable[[list[RunSpec]], None] | None = None,
        expect: Callable[[RunSpec], dict] | None = None,
        on_mismatch: str = "error",
    ) -> list[dict]:
        """Return the record of every spec, training the missing ones with `train_fn`.

        Safe across processes (xdist workers, sweep workers): a run is trained by the
        process that takes its lock; a process that finds a run locked works on its
        other missing runs first, then waits for the lock's owner to finish. If the owner
        dies, its OS lock goes with it and the next process trains the run.
        `train_fn=None` means training is not allowed: missing runs raise MissingRunsError.
        `pack=(k, key, train_many)`: up to k missing runs with the same `key` are claimed
        together and trained in one call of `train_many` (seed packing).
        `before_training(missing)` runs once, before any lock is taken (input checks).
        `expect(spec) -> identity`: a record made in another identity is not served (`missing`).
        """
        records = {s.run_id: self.get(s) for s in specs}
        if expect is not None:
            for s in self.missing([s for s in specs if records[s.run_id]], expect, on_mismatch, who="this run"):
                records[s.run_id] = None  # retrained (on_mismatch="retrain"); "error" raised above
        pending = [s for s in {s.run_id: s for s in specs}.values() if records[s.run_id] is None]
        if pending and train_fn is None:
            raise MissingRunsError(pending, missing_hint)
        if pending and before_training:
            before_training(pending)
        if pending:
            self.check_space(pending)  # before any lock: a full disk must not cost a whole training
        k, key, train_many = pack if pack else (1, None, None)
        while pending:
            progressed = False
            for spec in list(pending):
                if spec not in pending:
                    continue  # trained in an earlier pack of this pass
                mates = [s for s in pending if s is spec or (k > 1 and key(s) == key(spec))]
                claimed = self._claim_group(mates, k, pending, expect, on_mismatch)
                if not claimed:
                    continue
                group = [s for s, _ in claimed]
                try:
                    for s in group:
                        self._remove_debris(s)
                    results = [train_fn(group[0])] if len(group) == 1 else train_many(group)
                    for s, result in zip(group, results, strict=True):
                        if self.record_path(s).exists():  # made in another identity: kept, then replaced
                            self.supersede(s)
                        records[s.run_id] = self.put(s, result)
                        shutil.rmtree(self.checkpoint_dir(s), ignore_errors=True)
                        if on_trained:
                            on_trained(s, result)
                finally:
                    for _, lock in claimed:
                        lock.release()
                for s in group:
                    pending.remove(s)
                progressed = True
            if pending and not progressed:
                time.sleep(poll_s)
        # Runs another process finished while we waited are read now, once.
        return [records[s.run_id] or self.get(s) for s in specs]

    def _claim_group(self, candidates: list[RunSpec], k: int, pending: list[RunSpec], expect=None,
                     on_mismatch: str = "error") -> list[tuple[RunSpec, FileLock]]:
        """Take the locks of up to k still-missing candidates; drop from `pending` what others finished."""
        claimed = []
        for s in candidates:
            if len(claimed) == k:
                break
            drivers = self.root / DRIVERS_SUBDIR
            if claimed_by_driver(self.run_dir(s), drivers):  # a sweep's driver is training it: wait for its record
                continue
            lock = self._claim(s, timeout=0)
            if lock is None:
                continue
            if self._serves(s, expect, on_mismatch):  # finished by another process since we looked
                lock.release()
                pending.remove(s)
                continue
            if claimed_by_driver(self.run_dir(s), drivers):  # claimed while we took the lock
                lock.release()
                continue
            claimed.append((s, lock))
        return claimed

    def missing(self, specs: list[RunSpec], expect: Callable[[RunSpec], dict] | None = None,
                on_mismatch: str = "error", who: str = "this sweep") -> list[RunSpec]:
        """The specs (once each) that no record serves: none is cached, or, given `expect(spec) ->
        identity` (engine.identity), the cached one was made in another identity. Those raise
        IdentityMismatchError, one line naming the difference and the fixes (`on_mismatch="error"`,
        before anything trains), or are listed to be retrained (`"retrain"`). Records without an
        identity are served unchecked (one warning per cache).
        """
        if on_mismatch not in ON_MISMATCH_CHOICES:
            raise ValueError(f"on_mismatch={on_mismatch!r}; allowed: {', '.join(map(repr, ON_MISMATCH_CHOICES))}")
        out, mismatched, unchecked = [], [], 0
        for s in {s.run_id: s for s in specs}.values():
            record = self.get(s)
            if record is None:
                out.append(s)
                continue
            if expect is None:
                continue
            diffs = differences(record["result"].get("identity"), expect(s))
            if diffs is None:
                unchecked += 1
            elif diffs:
                mismatched.append((s, diffs))
                out.append(s)
        if unchecked and not self._warned_unchecked:
            self._warned_unchecked = True
            log.warning("%d cached run(s) in %s were written before records carried an identity: their data and "
                        "numeric environment cannot be checked; they are served as they are", unchecked, self.root)
        if mismatched and on_mismatch == "error":
            raise IdentityMismatchError(mismatch_message(mismatched, str(self.root / SUPERSEDED_SUBDIR), who),
                                        mismatched)
        return out

    def _serves(self, spec: RunSpec, expect=None, on_mismatch: str = "error") -> bool:
        """Whether a record of `spec` is there that serves the request (one to be retrained does not)."""
        record = self.get(spec)
        if record is None:
            return False
        return expect is None or on_mismatch != "retrain" or not differences(record["result"].get("identity"),
                                                                              expect(spec))

    # --- tables -----------------------------------------------------------------------
    def table(self, specs: list[RunSpec] | None = None) -> pd.DataFrame:
        """One row per run: every spec field, then every scalar result field."""
        records = self.iter_records() if specs is None else [r for r in (self.get(s) for s in specs) if r]
        return records_to_table(records)


def records_to_table(records: Iterable[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        row = {"run_id": r["run_id"], **with_added_fields(r["spec"])}
        row["probe_fracs"] = tuple(row["probe_fracs"])
        for k, v in r["result"].items():
            if k != "run_id" and (v is None or isinstance(v, (int, float, str, bool))):
                row[k] = v
        rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        for col in ("diverged_step", "grid_dist_int6_prewd", "grid_dist_own_prewd"):
            if col in df:
                df[col] = pd.to_numeric(df[col], errors="coerce")
    return df

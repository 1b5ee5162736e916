"""The results cache: one record per finished run, keyed by the spec's hash.

Layout (readable by a person; `ls cache/ab/` shows runs):

    cache/<first 2 hex of run id>/<run id>/record.json   spec + result + provenance
    cache/<..>/<run id>/.lock                            per-run lock (fcntl: dies with its owner)
    cache/<..>/<run id>/owner.json                       who holds/held the lock (pid, host, time)
    cache/_quarantine/                                   corrupt records moved aside on request
    cache/_data/                                         tokenised corpora and tokenizers (engine.paths)

Writes are atomic (`engine.atomic`): a unique temp file in the same directory, flush + fsync,
`os.replace`, fsync of the directory. A reader therefore sees either no record or a whole one; only a
finished run (ok or diverged) is ever written. The lock is an OS file lock (filelock's
fcntl backend), so a killed owner releases it: there is no stale lock to break on a
local file system; `owner.json` says who held it, for people.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
from filelock import FileLock, Timeout

from engine.atomic import TMP_SUFFIX, atomic_write_json
from engine.paths import QUARANTINE_SUBDIR, default_cache_dir
from engine.paths import data_dir as data_dir_of
from engine.spec import RESULT_FORMAT_VERSION, RunSpec

log = logging.getLogger(__name__)

RECORD = "record.json"
CACHE_WRITE_FAULT = "cache_write"  # engine.faults point: temp file durable, not yet renamed


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
            if record["spec"] != spec.to_dict() or record["run_id"] != spec.run_id:
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
        return record

    def quarantine(self, path: Path) -> Path:
        dest = self.root / QUARANTINE_SUBDIR / f"{path.parent.name}.{int(time.time())}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path.parent), dest)
        log.warning("quarantined corrupt record %s -> %s", path, dest)
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
        if len(prefix) < 4:
            raise ValueError(f"run id prefix {prefix!r} is too short: give at least 4 hex characters")
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
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / RECORD, record, fault=CACHE_WRITE_FAULT)
        return record

    def lock(self, spec: RunSpec) -> FileLock:
        run_dir = self.run_dir(spec)
        run_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(run_dir / ".lock")

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
        """
        records = {s.run_id: self.get(s) for s in specs}
        pending = [s for s in {s.run_id: s for s in specs}.values() if records[s.run_id] is None]
        if pending and train_fn is None:
            raise MissingRunsError(pending, missing_hint)
        if pending and before_training:
            before_training(pending)
        k, key, train_many = pack if pack else (1, None, None)
        while pending:
            progressed = False
            for spec in list(pending):
                if spec not in pending:
                    continue  # trained in an earlier pack of this pass
                mates = [s for s in pending if s is spec or (k > 1 and key(s) == key(spec))]
                claimed = self._claim_group(mates, k, pending)
                if not claimed:
                    continue
                group = [s for s, _ in claimed]
                try:
                    for s in group:
                        self._remove_debris(s)
                    results = [train_fn(group[0])] if len(group) == 1 else train_many(group)
                    for s, result in zip(group, results, strict=True):
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

    def _claim_group(self, candidates: list[RunSpec], k: int, pending: list[RunSpec]) -> list[tuple[RunSpec, FileLock]]:
        """Take the locks of up to k still-missing candidates; drop from `pending` what others finished."""
        claimed = []
        for s in candidates:
            if len(claimed) == k:
                break
            lock = self._claim(s, timeout=0)
            if lock is None:
                continue
            if self.has(s):  # finished by another process since we looked
                lock.release()
                pending.remove(s)
                continue
            claimed.append((s, lock))
        return claimed

    def missing(self, specs: list[RunSpec]) -> list[RunSpec]:
        return [s for s in {s.run_id: s for s in specs}.values() if not self.has(s)]

    # --- tables -----------------------------------------------------------------------
    def table(self, specs: list[RunSpec] | None = None) -> pd.DataFrame:
        """One row per run: every spec field, then every scalar result field."""
        records = self.iter_records() if specs is None else [r for r in (self.get(s) for s in specs) if r]
        return records_to_table(records)


def records_to_table(records: Iterable[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        row = {"run_id": r["run_id"], **r["spec"]}
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

"""Executors: one run queue, trained by local processes, a Ray cluster or Slurm (submitit).

One interface: `executor.run(tasks, **train_kwargs)` yields `(task, records)` as tasks finish,
or `(task, exception)` for a task that failed for good. Workers call `train_task`, which
trains and *returns* the result records; they never open the cache. `fill` is the driver:
it checks the input and prepares the data before anything is dispatched, submits each missing
run once (longest first, `engine.scheduling`), and writes every returned record itself with
the cache's atomic put, under the run's lock, ignoring a duplicate. So only one process writes
the cache, and a shared file system never has to make `flock` work across nodes.

- `LocalExecutor`: one worker process per device (each GPU, or N CPU workers sharing the
  cores); each worker binds one device for its life and takes the next task when it is free
  (a free-device queue: never task index modulo GPU count). A worker killed mid-run (OOM,
  SIGKILL) breaks the pool: the pool is rebuilt and the unfinished tasks are resubmitted, up
  to `retries` times each.
- `RayExecutor`: Ray Core tasks (`num_gpus` per run on GPU clusters), joining a cluster by
  address or starting a local one; a dead worker is retried by Ray (`max_retries`).
- `SlurmExecutor`: submitit job arrays (one GPU per task via gres, arrays chunked under the
  site's MaxArraySize, partition / time / account); a job that dies is resubmitted by the
  driver up to `retries` times. `cluster="local"` runs the same arrays as local processes
  (how CI tests it).

With a shared `checkpoint_dir`, a single run checkpoints every `checkpoint_every` steps and a
retried run resumes from its last checkpoint (packs do not checkpoint).
"""

from __future__ import annotations

import functools
import logging
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from engine.scheduling import Task, make_tasks
from engine.spec import RunSpec

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray", "slurm")


# --- the worker side ------------------------------------------------------------------


def train_task(spec_dicts: list[dict], *, device: str | None = None, data_dir: str | None = None,
               threads: int | None = None, checkpoint_dir: str | None = None, checkpoint_every: int = 0,
               precision: str | None = None) -> list[dict]:
    """Train one task (a run or a pack) and return its result records, in order. Never writes the cache."""
    from engine.packed import train_packed
    from engine.runtime import set_threads
    from engine.train import train

    specs = [RunSpec.from_dict(d) for d in spec_dicts]
    set_threads(threads)
    data = Path(data_dir) if data_dir else None
    if len(specs) == 1:
        spec = specs[0]
        ckpt = Path(checkpoint_dir) / spec.run_id if checkpoint_dir and checkpoint_every else None
        return [train(spec, device=device, data_dir=data, checkpoint_dir=ckpt,
                      checkpoint_every=checkpoint_every if ckpt else 0)]
    return train_packed(specs, device=device, data_dir=data)


def _payload(task: Task) -> list[dict]:
    return [s.to_dict() for s in task.specs]


# --- local processes ------------------------------------------------------------------

_DEVICE: str | None = None  # the device this worker process owns


def _bind_device(devices) -> None:
    global _DEVICE
    _DEVICE = devices.get()


def _local_task(spec_dicts: list[dict], threads: int | None, kwargs: dict) -> list[dict]:
    return train_task(spec_dicts, device=_DEVICE, threads=threads, **kwargs)


@dataclass
class LocalExecutor:
    """One worker per device; each worker takes the next task when it is free."""

    workers: int | None = None  # default: one per visible GPU, else one per core
    device: str | None = None  # 'cpu', 'cuda' (all GPUs) or None (GPUs if any)
    threads: int | None = None  # CPU threads per worker (default: the cores shared out)
    retries: int = 1  # resubmissions of a task whose worker died

    def devices(self) -> list[str]:
        import torch

        n_gpu = torch.cuda.device_count() if self.device in (None, "cuda") else 0
        if n_gpu:
            return [f"cuda:{i % n_gpu}" for i in range(self.workers or n_gpu)]
        n = self.workers or (os.cpu_count() or 1)
        return [self.device if self.device and self.device.startswith("cuda:") else "cpu"] * n

    def run(self, tasks: list[Task], **kwargs) -> Iterator[tuple[Task, list[dict] | BaseException]]:
        from engine.runtime import cpu_threads

        devices = self.devices()
        threads = self.threads or (cpu_threads(len(devices)) if devices[0] == "cpu" else None)
        tries = {t.key: 0 for t in tasks}
        left = list(tasks)
        ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
        while left:
            queue = ctx.Queue()
            for d in devices:
                queue.put(d)
            pool = ProcessPoolExecutor(len(devices), mp_context=ctx, initializer=_bind_device, initargs=(queue,))
            broken = clean = False
            try:
                futures = {pool.submit(_local_task, _payload(t), threads, kwargs): t for t in left}
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        task = futures[f]
                        try:
                            out = f.result()
                        except BrokenProcessPool as e:
                            log.warning("worker pool broken: %s", e)
                            broken = True
                            continue
                        except Exception as e:  # the task itself failed: reported, the sweep goes on
                            left.remove(task)
                            yield task, e
                            continue
                        left.remove(task)
                        yield task, out
                    if broken:
                        break
                clean = not broken
            finally:
                procs = list((getattr(pool, "_processes", None) or {}).values())
                if not clean:  # a broken pool, Ctrl-C/SIGTERM or an abandoned sweep: no worker goes on training
                    for p in procs:
                        if p.is_alive():
                            p.kill()
                pool.shutdown(wait=clean, cancel_futures=True)
            if broken:
                for task in list(left):
                    tries[task.key] += 1
                    if tries[task.key] > self.retries:
                        left.remove(task)
                        yield task, RuntimeError(f"a worker died {tries[task.key]} times while training {task}")
                log.warning("a worker process died; restarting the pool for %d unfinished task(s)", len(left))


# --- Ray ------------------------------------------------------------------------------


@dataclass
class RayExecutor:
    """Ray Core tasks; `address` joins a cluster ('auto' or 'ray://host:10001'), None starts a local one."""

    address: str | None = None
    gpus_per_task: float | None = None  # default: 1 if the cluster has GPUs, else 0
    cpus_per_task: float = 1
    retries: int = 2  # Ray's max_retries: a task whose worker process died is re-run
    local_cpus: int | None = None  # CPUs of a local cluster started here

    def run(self, tasks: list[Task], **kwargs) -> Iterator[tuple[Task, list[dict] | BaseException]]:
        import ray

        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address, num_cpus=None if self.address else self.local_cpus,
                     include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        try:
            gpus = self.gpus_per_task
            if gpus is None:
                gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
            remote = ray.remote(train_task).options(num_gpus=gpus, num_cpus=self.cpus_per_task,
                                                     max_retries=self.retries, retry_exceptions=False)
            device = "cuda" if gpus else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES: the task's GPU is cuda
            threads = max(1, int(self.cpus_per_task))
            refs = {remote.remote(_payload(t), device=device, threads=threads, **kwargs): t for t in tasks}
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                for ref in done:
                    task = refs.pop(ref)
                    try:
                        yield task, ray.get(ref)
                    except Exception as e:  # RayTaskError (the task raised) or a worker lost after its retries
                        yield task, e
        finally:
            if started:
                ray.shutdown()


# --- Slurm (submitit) -----------------------------------------------------------------


@dataclass
class SlurmExecutor:
    """submitit job arrays, one task per array element and one GPU per task."""

    folder: str = "slurm_logs"
    partition: str | None = None
    time_min: int = 60
    account: str | None = None
    gpus_per_task: int = 1
    cpus_per_task: int = 8
    max_array: int = 1000  # the site's MaxArraySize (scontrol show config): arrays are chunked under it
    parallel: int | None = None  # slurm_array_parallelism: at most this many tasks at once
    retries: int = 1  # resubmissions of a task whose job died (node failure, pre-emption, OOM kill)
    cluster: str | None = None  # None: Slurm if available; "local": submitit's local executor (tests)
    extra: dict = field(default_factory=dict)  # more submitit parameters, e.g. {"slurm_qos": "high"}
    poll_s: float = 2.0

    def executor(self):
        import submitit

        ex = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        params = dict(timeout_min=self.time_min, cpus_per_task=self.cpus_per_task, tasks_per_node=1, nodes=1)
        if self.cluster != "local":
            params.update(gpus_per_node=self.gpus_per_task, slurm_partition=self.partition,
                          slurm_account=self.account, slurm_array_parallelism=self.parallel or self.max_array)
        params.update(self.extra)
        ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
        return ex

    def run(self, tasks: list[Task], **kwargs) -> Iterator[tuple[Task, list[dict] | BaseException]]:
        ex = self.executor()
        device = "cuda" if self.gpus_per_task and self.cluster != "local" else "cpu"
        threads = None if device == "cuda" else max(1, self.cpus_per_task)
        fn = functools.partial(train_task, device=device, threads=threads, **kwargs)
        tries = {t.key: 0 for t in tasks}
        left = list(tasks)
        while left:
            jobs = []
            for i in range(0, len(left), self.max_array):
                chunk = left[i:i + self.max_array]
                jobs += list(zip(ex.map_array(fn, [_payload(t) for t in chunk]), chunk))
            left = []
            pending = dict(jobs)
            while pending:
                for job, task in list(pending.items()):
                    if not job.done():
                        continue
                    del pending[job]
                    try:
                        yield task, job.result()
                    except Exception as e:
                        died = type(e).__name__ in ("UncompletedJobError",) or "killed" in str(e).lower()
                        tries[task.key] += 1
                        if died and tries[task.key] <= self.retries:
                            log.warning("job %s for %s died (%s); resubmitting", job.job_id, task, e)
                            left.append(task)
                        else:
                            yield task, e
                if pending:
                    time.sleep(self.poll_s)


def make_executor(kind: str, **settings):
    """The executor named `kind` ('local', 'ray', 'slurm') with its settings (unknown ones are an error)."""
    classes = {"local": LocalExecutor, "ray": RayExecutor, "slurm": SlurmExecutor}
    if kind not in classes:
        raise ValueError(f"executor {kind!r} is not known; choose one of {EXECUTORS}")
    cls = classes[kind]
    known = set(cls.__dataclass_fields__)
    unknown = set(settings) - known
    if unknown:
        raise ValueError(f"executor {kind!r} has no setting(s) {sorted(unknown)}; it has {sorted(known)}")
    return cls(**settings)


# --- the driver -----------------------------------------------------------------------


@dataclass
class FillReport:
    trained: int = 0
    duplicates: int = 0  # results for runs another process had already written (ignored)
    diverged: int = 0
    failed: list[tuple[Task, str]] = field(default_factory=list)
    cached: int = 0


def fill(cache, specs: list[RunSpec], executor, *, pack: int = 1, progress: bool = True,
         checkpoint_dir: str | Path | None = None, checkpoint_every: int = 0, desc: str = "sweep",
         lock_timeout: float = 3600.0) -> FillReport:
    """Train every missing spec through `executor`; the driver alone writes the records."""
    from filelock import Timeout
    from tqdm import tqdm

    from engine.train import preflight

    unique = list({s.run_id: s for s in specs}.values())
    todo = cache.missing(unique)
    report = FillReport(cached=len(unique) - len(todo))
    if not todo:
        return report
    cache.check_space(todo, checkpoint_every=checkpoint_every)
    preflight(todo, cache.data_dir)  # data and tokenizers ready and checked before any job starts
    tasks = make_tasks(todo, pack)
    kwargs = dict(data_dir=str(cache.data_dir), checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
                  checkpoint_every=checkpoint_every)
    bar = tqdm(total=len(todo), desc=desc, unit="run", disable=not progress)
    try:
        for task, out in executor.run(tasks, **kwargs):
            if isinstance(out, BaseException):
                report.failed.append((task, f"{type(out).__name__}: {out}"))
                bar.update(len(task.specs))
                continue
            for spec, result in zip(task.specs, out, strict=True):
                lock = cache.lock(spec)
                try:
                    lock.acquire(timeout=lock_timeout)
                except Timeout:
                    report.failed.append((Task((spec,)), f"its lock {lock.lock_file} stayed held {lock_timeout:g} s"))
                    continue
                try:
                    if cache.has(spec):
                        report.duplicates += 1
                    else:
                        cache.put(spec, result)
                        report.trained += 1
                        report.diverged += result.get("status") == "diverged"
                finally:
                    lock.release()
                if checkpoint_dir:  # the run is finished: its resume checkpoints are debris now
                    shutil.rmtree(Path(checkpoint_dir) / spec.run_id, ignore_errors=True)
            bar.update(len(task.specs))
    finally:
        bar.close()
    return report

"""Executors: one run queue, trained by local processes, a Ray cluster or Slurm (submitit).

One interface: `executor.run(tasks, **train_kwargs)` yields `(task, records)` as tasks finish,
or `(task, exception)` for a task that failed for good. Workers call `train_task`, which
trains and *returns* the result records; they never open the cache. `fill` is the driver:
it checks the input and prepares the data before anything is dispatched, submits each missing
run once (longest first, `engine.scheduling`), and writes every returned record itself with
the cache's atomic put, under the run's lock, ignoring a duplicate. So only one process writes
the cache, and a shared file system never has to make `flock` work across nodes.

- `LocalExecutor`: one worker process per device (each GPU, or N CPU workers sharing the
  cores); each worker binds one device for its life (a GPU worker sees only its GPU:
  `worker_device`) and takes the next task when it is free
  (a free-device queue: never task index modulo GPU count). A worker killed mid-run (OOM,
  SIGKILL) breaks the pool: the pool is rebuilt and the unfinished tasks are resubmitted, up
  to `retries` times each.
- `RayExecutor`: Ray Core tasks (`num_gpus` per run on GPU clusters), joining a cluster by
  address or starting a local one; a dead worker is retried by Ray (`max_retries`).
- `SlurmExecutor`: submitit job arrays (one GPU per task via gres, arrays chunked under the
  site's MaxArraySize, partition / time / account). A task is a submitit `Checkpointable`, so
  a job pre-empted or out of time is requeued by submitit and resumes from its checkpoints; a
  job that dies otherwise (node failure, OOM kill) is resubmitted by the driver at once, up to
  `retries` times. `cluster="local"` runs the same arrays as local processes (how CI tests it).

Abandoning a sweep (Ctrl-C, SIGTERM, an exception in the driver) stops what it dispatched:
local workers are killed, Ray tasks cancelled, Slurm jobs cancelled, so no run goes on
training for a driver that will never write its record. A driver killed outright (SIGKILL, the
OOM killer) cannot do that: its local workers die with it (PR_SET_PDEATHSIG, set as each
starts), submitit's local jobs end when they see it gone, and Ray's local cluster shares its
fate by Ray's own mechanism.

With a shared `checkpoint_dir`, a single run checkpoints every `checkpoint_every` steps and a
retried run resumes from its last checkpoint (packs do not checkpoint).

The driver serves a cached record only if it was made in the identity this sweep would train in
(engine.identity: the data's fingerprint, and `environment(executor)`: device, CPU threads,
precision); otherwise it stops before training, or retrains by request (`on_mismatch`). And it
trains each run once across drivers: a run is claimed before dispatch (engine.claims); another
driver's live claim makes this one wait for the record instead of training it again.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from submitit.core.utils import UncompletedJobError
from submitit.helpers import Checkpointable

from engine.options import EXECUTOR_CHOICES
from engine.scheduling import Task, make_tasks
from engine.spec import RunSpec

log = logging.getLogger(__name__)

EXECUTORS = EXECUTOR_CHOICES


# --- the worker side ------------------------------------------------------------------


def train_task(spec_dicts: list[dict], *, device: str | None = None, data_dir: str | None = None,
               threads: int | None = None, checkpoint_dir: str | None = None, checkpoint_every: int = 0,
               progress: bool = False, precision: str | None = None, compile: bool | None = None) -> list[dict]:
    """Train one task (a run or a pack) and return its result records, in order. Never writes the cache.

    `progress` shows the run's own progress bar on the worker's stderr (a local worker's is the terminal).
    `precision` / `compile` (None: the worker's device default) are resolved here, on the worker,
    against the device it trains on.
    """
    from engine.packed import train_packed
    from engine.precision import resolve_precision
    from engine.runtime import pick_device, set_threads
    from engine.train import train

    specs = [RunSpec.from_dict(d) for d in spec_dicts]
    set_threads(threads)
    data = Path(data_dir) if data_dir else None
    prec = resolve_precision(pick_device(device), precision, compile)
    if len(specs) == 1:
        spec = specs[0]
        ckpt = Path(checkpoint_dir) / spec.run_id if checkpoint_dir and checkpoint_every else None
        return [train(spec, device=device, data_dir=data, checkpoint_dir=ckpt, progress=progress,
                      checkpoint_every=checkpoint_every if ckpt else 0, precision=prec)]
    return train_packed(specs, device=device, data_dir=data, progress=progress, precision=prec)


def _payload(task: Task) -> list[dict]:
    return [s.to_dict() for s in task.specs]


# --- local processes ------------------------------------------------------------------

_DEVICE: str | None = None  # the device this worker process owns


def worker_device(assigned: str, visible: str | None) -> tuple[str, dict[str, str]]:
    """The device a local worker bound to `assigned` trains on, and the environment it sets first.

    A worker bound to `cuda:k` sees only that GPU (CUDA_VISIBLE_DEVICES, set before CUDA starts
    in the fresh spawned process), so inside it the GPU is `cuda:0`: DeepSpeed, which places the
    model on the device of LOCAL_RANK (0 in a world of one), torch's current device, the
    batches and the optimiser state all land on the worker's own GPU. Measured before this (a
    DeepSpeed accelerator patched to record its calls): every worker called set_device(0), so
    workers 1-7 of an 8-GPU box put their models on GPU 0. `visible` is the parent's
    CUDA_VISIBLE_DEVICES: `cuda:k` is its k-th entry.
    """
    kind, _, index = assigned.partition(":")
    if kind != "cuda" or not index:
        return assigned, {}
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    physical = ids[int(index)] if ids else index
    return "cuda:0", {"CUDA_VISIBLE_DEVICES": physical}


def _bind_device(devices, driver: int) -> None:
    """A local worker's initializer: it dies with its driver (`driver`, the pid that started it) and
    takes one device for its life."""
    global _DEVICE
    from engine.runtime import die_with_parent

    # SIGKILLed (or dead of an unhandled signal), the driver cannot stop its workers: the kernel does
    die_with_parent(driver)
    _DEVICE, env = worker_device(devices.get(), os.environ.get("CUDA_VISIBLE_DEVICES"))
    os.environ.update(env)
    if _DEVICE == "cpu":
        import torch

        if not torch.cuda.is_available():
            # DeepSpeed would detect the CPU anyway, but warns on every worker's terminal line, across the sweep's bar
            os.environ.setdefault("DS_ACCELERATOR", "cpu")


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
        """The device of each worker: every GPU once (or `workers` of them, round robin), one named
        GPU (`workers` of them, default one), or `workers` CPU workers (default one per core)."""
        import torch

        if self.device and self.device.startswith("cuda:"):
            return [self.device] * (self.workers or 1)
        n_gpu = torch.cuda.device_count() if self.device in (None, "cuda") else 0
        if n_gpu:
            return [f"cuda:{i % n_gpu}" for i in range(self.workers or n_gpu)]
        return ["cpu"] * (self.workers or os.cpu_count() or 1)

    def check(self) -> None:
        """A device that cannot be had is refused before anything trains (engine.runtime.pick_device)."""
        from engine.runtime import pick_device

        if self.device:
            pick_device(self.device)

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
            pool = ProcessPoolExecutor(len(devices), mp_context=ctx, initializer=_bind_device,
                                       initargs=(queue, os.getpid()))
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
                manager = getattr(pool, "_executor_manager_thread", None)  # shutdown() forgets it
                pool.shutdown(wait=clean, cancel_futures=True)
                if not clean:
                    # Reaped: gone when run() returns, its device free for the retry. The pool's manager
                    # thread reaps the killed workers too, and multiprocessing's Popen.poll is not
                    # thread-safe (the loser of two waitpid calls reads "still running"), so that
                    # thread is let finish first; measured under load, 3 of 12 abandoned sweeps
                    # otherwise reported a killed worker as alive.
                    if manager is not None:
                        manager.join(timeout=10)
                    for p in procs:
                        p.join(timeout=10)
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

    def check(self) -> None:
        import importlib

        try:
            importlib.import_module("ray")
        except ImportError as e:
            raise ValueError(f"executor 'ray': Ray cannot be imported ({e}); pip install -e . installs the pinned ray") from None

    @staticmethod
    @contextlib.contextmanager
    def _keeping_sigterm():
        """The caller's SIGTERM handler survives ray.init.

        ray.init installs its own twice: a Python one (sys.exit) and, when its core worker
        starts, a C++ failure handler that prints a stack dump and aborts (exit 134), so the
        sweep's SIGTERM-as-Ctrl-C (engine.cli) never ran and nothing was cancelled. Setting the
        handler again from Python replaces both.
        """
        import signal
        import threading

        main = threading.current_thread() is threading.main_thread()
        before = signal.getsignal(signal.SIGTERM) if main else None
        try:
            yield
        finally:
            if before is not None:
                signal.signal(signal.SIGTERM, before)

    def run(self, tasks: list[Task], **kwargs) -> Iterator[tuple[Task, list[dict] | BaseException]]:
        import ray

        started = not ray.is_initialized()
        if started:
            with self._keeping_sigterm():
                ray.init(address=self.address, num_cpus=None if self.address else self.local_cpus,
                         include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        refs: dict = {}
        try:
            gpus = self.gpus_per_task
            if gpus is None:
                gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
            remote = ray.remote(train_task).options(num_gpus=gpus, num_cpus=self.cpus_per_task,
                                                     max_retries=self.retries, retry_exceptions=False)
            device = "cuda" if gpus else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES: the task's GPU is cuda
            # threads = the CPUs reserved: os.cpu_count() would be the whole node's, shared by its tasks
            threads = max(1, int(self.cpus_per_task))
            refs = {remote.remote(_payload(t), device=device, threads=threads, **kwargs): t for t in tasks}
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                for ref in done:
                    task = refs.pop(ref)
                    try:
                        out = ray.get(ref)
                    except Exception as e:  # RayTaskError (the task raised) or a worker lost after its retries
                        out = e
                    yield task, out
        finally:
            for ref in refs:  # abandoned (Ctrl-C, an error in the driver): nothing goes on training
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            if started:
                ray.shutdown()


# --- Slurm (submitit) -----------------------------------------------------------------


class SlurmTask(Checkpointable):
    """`train_task` as a submitit job: pre-empted or out of time, submitit requeues it with the
    same arguments (`Checkpointable.checkpoint`), and the run resumes from its checkpoints
    when a shared checkpoint directory is set (otherwise it starts again).

    `driver` (local jobs only, `cluster="local"`): the pid of the driver on this machine; the task
    ends when that process does. submitit's local jobs are meant to outlive the Python session,
    so a SIGKILLed driver left them training with parent PID 1, and no signal can reach them
    through their controller. A Slurm job is left alone: its lifetime is the cluster's.
    """

    _WATCH_S = 1.0  # how often a local job looks for its driver

    def __init__(self, driver: int | None = None, **kwargs):
        self.kwargs = kwargs
        self.driver = driver

    def __call__(self, spec_dicts: list[dict]) -> list[dict]:
        if getattr(self, "driver", None) is not None:
            self._end_with_driver()
        return train_task(spec_dicts, **self.kwargs)

    def _end_with_driver(self) -> None:
        import signal
        import threading

        import psutil

        try:
            driver = psutil.Process(self.driver)  # its start time too: a reused pid is not the driver
        except psutil.NoSuchProcess:
            os.kill(os.getpid(), signal.SIGKILL)
            return

        def alive() -> bool:
            try:  # a zombie is dead: only its parent has not reaped it yet
                return driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return False

        def watch():
            while alive():
                time.sleep(self._WATCH_S)
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=watch, name="driver-watch", daemon=True).start()


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
    retries: int = 1  # resubmissions of a task whose job died (node failure, OOM kill)
    cluster: str = "slurm"  # "local": submitit's local executor, the same arrays as local processes (tests)
    extra: dict = field(default_factory=dict)  # more submitit parameters, e.g. {"slurm_qos": "high"}
    poll_s: float = 10.0  # how often job states are read (submitit's own sacct polling is rate-limited too)

    def check(self) -> None:
        """Slurm must be reachable from here: without sbatch, submitit would quietly run every job on
        this machine instead."""
        if self.cluster != "local" and shutil.which("sbatch") is None:
            raise ValueError("executor 'slurm': no `sbatch` on PATH (not a Slurm login node?); run the sweep where "
                             "sbatch works, or add --slurm-local for a dry run of the same arrays on this machine")
        Path(self.folder).mkdir(parents=True, exist_ok=True)

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

    def _watch(self, job):
        if self.cluster == "local":
            # submitit waits 15 s for a missing result file (NFS lag on a cluster); a local job
            # that died wrote none and never will, so its retry need not wait
            job._results_timeout_s = 0.5
        return job

    def run(self, tasks: list[Task], **kwargs) -> Iterator[tuple[Task, list[dict] | BaseException]]:
        ex = self.executor()
        device = "cuda" if self.gpus_per_task and self.cluster != "local" else "cpu"
        fn = SlurmTask(device=device, threads=max(1, self.cpus_per_task),
                       driver=os.getpid() if self.cluster == "local" else None, **kwargs)
        tries = {t.key: 0 for t in tasks}
        pending: dict = {}  # job -> task: at most one live job per task
        try:
            for i in range(0, len(tasks), self.max_array):
                chunk = tasks[i:i + self.max_array]
                jobs = ex.map_array(fn, [_payload(t) for t in chunk])
                pending.update((self._watch(j), t) for j, t in zip(jobs, chunk, strict=True))
            while pending:
                for job, task in list(pending.items()):
                    if not job.done():
                        continue
                    del pending[job]
                    try:
                        out = job.result()
                    except UncompletedJobError as e:  # no result: the job died (node failure, OOM kill, scancel)
                        tries[task.key] += 1
                        if tries[task.key] <= self.retries:
                            log.warning("job %s for %s died (%s); resubmitting", job.job_id, task,
                                        str(e).splitlines()[0])
                            pending[self._watch(ex.submit(fn, _payload(task)))] = task
                            continue
                        out = e
                    except Exception as e:  # FailedJobError: the task itself raised; reported, the sweep goes on
                        out = e
                    yield task, out
                if pending:
                    time.sleep(self.poll_s)
        finally:
            for job in pending:  # abandoned: no job goes on training (or waits in the queue)
                with contextlib.suppress(Exception):
                    self._cancel(job)

    def _cancel(self, job) -> None:
        """Cancel `job`; a local one (`cluster="local"`) is killed with its tasks, quietly.

        submitit cancels a local job by SIGINT to its controller process, which shares the
        driver's terminal: each printed a KeyboardInterrupt traceback there as the sweep stopped.
        The tasks go first: a controller killed first would leave them training.
        """
        proc = getattr(job, "_process", None) if self.cluster == "local" else None
        if proc is None:
            job.cancel(check=False)
            return
        import psutil

        if proc.poll() is not None:
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            controller = psutil.Process(proc.pid)
            for p in [*controller.children(recursive=True), controller]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
        with contextlib.suppress(Exception):
            proc.wait(timeout=30)  # our child: reaped, not left a zombie


CLASSES = {"local": LocalExecutor, "ray": RayExecutor, "slurm": SlurmExecutor}


def make_executor(kind: str, **settings):
    """The executor named `kind` ('local', 'ray', 'slurm') with its settings (unknown ones are an error)."""
    if kind not in CLASSES:
        raise ValueError(f"executor {kind!r} is not known; choose one of {EXECUTORS}")
    cls = CLASSES[kind]
    known = set(cls.__dataclass_fields__)
    unknown = set(settings) - known
    if unknown:
        raise ValueError(f"executor {kind!r} has no setting(s) {sorted(unknown)}; it has {sorted(known)}")
    return cls(**settings)


def executor_from_options(opts: Mapping[str, Any], device: str | None = None):
    """The executor that `engine.options.EXECUTOR_OPTIONS` describe (`sweep`'s flags, the plugin's
    `--qat-*` ones): `opts` maps each option's dest to its value; `threads` (--threads, the CPU threads of
    each local worker) may be among them."""
    kind = opts.get("executor") or "local"
    retries = opts.get("retries", 1)
    if kind == "local":
        return make_executor("local", workers=opts.get("jobs"), device=device, retries=retries,
                             threads=opts.get("threads"))
    if kind == "ray":
        return make_executor("ray", address=opts.get("ray_address"), retries=retries,
                             cpus_per_task=opts.get("ray_cpus_per_task") or 1, local_cpus=opts.get("jobs"))
    settings = dict(folder=str(opts.get("slurm_folder") or "slurm_logs"), partition=opts.get("slurm_partition"),
                    time_min=opts.get("slurm_time") or 60, account=opts.get("slurm_account"),
                    cpus_per_task=opts.get("slurm_cpus_per_task") or 8, max_array=opts.get("slurm_max_array") or 1000,
                    retries=retries, parallel=opts.get("jobs"))
    if opts.get("slurm_local"):  # submitit's local executor starts every array task at once: one thread each
        settings.update(cluster="local", cpus_per_task=1, poll_s=1.0)
    return make_executor("slurm", **settings)


def resume_dir(opts: Mapping[str, Any], cache_root: Path, checkpoint_every: int) -> Path | None:
    """Where single runs keep resume checkpoints: --checkpoint-dir if given; else, for local
    workers, <cache>/_checkpoints (the driver's own disk); else none: a cluster node may not
    see the driver's cache, and a run must not fail for want of a checkpoint directory."""
    if not checkpoint_every:
        return None
    if opts.get("checkpoint_dir"):
        return Path(opts["checkpoint_dir"])
    return Path(cache_root) / "_checkpoints" if (opts.get("executor") or "local") == "local" else None


# --- the driver: what it did ---------------------------------------------------------


@dataclass
class FillReport:
    """What a fill did: runs trained (diverged ones included), found cached, duplicates ignored, failures."""

    trained: int = 0
    duplicates: int = 0  # results for runs another process had already written (ignored)
    diverged: int = 0
    failed: list[tuple[Task, str]] = field(default_factory=list)
    cached: int = 0
    waited: int = 0  # runs another driver trained while this one waited for their records (engine.claims)
    superseded: int = 0  # records made in another identity replaced by a retrain (--on-mismatch retrain)

    def add(self, spec: RunSpec, outcome: str, diverged: bool = False) -> None:
        if outcome == "duplicate":
            self.duplicates += 1
        elif outcome in ("trained", "diverged", "superseded"):
            self.trained += 1
            self.diverged += outcome == "diverged" or diverged
            self.superseded += outcome == "superseded"
        else:
            self.failed.append((Task((spec,)), outcome))


# --- identity: what a sweep would train with -----------------------------------------------


def environment(executor, precision: str | None = None) -> dict | None:
    """The numeric environment (engine.identity.numeric_identity) `executor`'s workers train in, or
    None where it cannot be known before dispatch (a Ray cluster joined by address picks GPUs if it
    has them; an executor of unknown kind). Derived as each executor's `run` sets its workers up:
    local CPU workers take `threads` or the cores shared out (engine.runtime.cpu_threads), Ray and
    Slurm tasks as many threads as CPUs reserved. `precision` None: the device's default."""
    from engine.identity import numeric_identity
    from engine.runtime import cpu_threads

    if hasattr(executor, "environment"):  # an executor that says its own (wrappers, tests)
        return executor.environment(precision)
    if isinstance(executor, LocalExecutor):
        devices = executor.devices()
        device = devices[0].partition(":")[0]
        threads = executor.threads or cpu_threads(len(devices))
    elif isinstance(executor, RayExecutor):
        gpus = executor.gpus_per_task
        if gpus is None:
            if executor.address:
                return None
            import torch

            gpus = 1 if torch.cuda.is_available() else 0  # a local cluster has this machine's devices
        device, threads = ("cuda" if gpus else "cpu"), max(1, int(executor.cpus_per_task))
    elif isinstance(executor, SlurmExecutor):
        device = "cuda" if executor.gpus_per_task and executor.cluster != "local" else "cpu"
        threads = max(1, executor.cpus_per_task)
    else:
        return None
    if precision is None:
        precision = "bf16" if device == "cuda" else "fp32"  # engine.precision.default_precision's
    return numeric_identity(device, threads, precision)


def expected_identity(executor, data_dir: Path, precision: str | None = None):
    """`spec -> identity` that a run trained through `executor` would record (engine.identity). Data
    that cannot be fingerprinted here (not on this machine: a cache filled elsewhere) is not checked;
    if such a run has to train, `preflight` reports the missing data."""
    from functools import lru_cache

    from engine.data import data_fingerprint

    numeric = environment(executor, precision)

    @lru_cache(maxsize=None)
    def data(source: str, tokenizer: str) -> dict | None:
        try:
            return data_fingerprint(source, tokenizer, data_dir)
        except (ValueError, OSError) as e:
            log.warning("data %r (tokenizer %r) cannot be fingerprinted here (%s): cached runs on it are "
                        "served without checking their data", source, tokenizer, e)
            return None

    return lambda spec: {"data": data(spec.data, spec.tokenizer), "numeric": numeric}


def runs_to_train(cache, specs: list[RunSpec], executor, *, precision: str | None = None,
                  on_mismatch: str = "error", who: str = "this sweep") -> list[RunSpec]:
    """What `fill` would train: the missing specs, and those whose cached record was made in another
    identity than `executor` would train in (IdentityMismatchError, one line, under on_mismatch='error')."""
    return cache.missing(specs, expected_identity(executor, cache.data_dir, precision), on_mismatch, who=who)


# --- the driver -----------------------------------------------------------------------

WAIT_POLL_S = 5.0  # how often a driver looks for the records of runs another driver is training


def fill(cache, specs: list[RunSpec], executor, *, pack: int = 1, progress: bool = True,
         checkpoint_dir: str | Path | None = None, checkpoint_every: int = 0, desc: str = "sweep",
         run_progress: bool = False, lock_timeout: float = 3600.0, precision: str | None = None,
         compile: bool | None = None, on_mismatch: str = "error", wait_poll_s: float = WAIT_POLL_S,
         heartbeat_s: float | None = None, claim_stale_s: float | None = None) -> FillReport:
    """Train every missing spec through `executor`; the driver alone writes the records.

    Returns when every run has a record (trained here, or by another driver) or failed for good
    (`report.failed`); a failure never stops the others. One progress bar counts runs over the
    whole sweep (`progress`); `run_progress` adds each run's own bar, from its worker.
    `precision` / `compile` go to every worker (None: each worker's device default; engine.precision).

    A cached record made in another identity than this sweep's (data, CPU threads, device,
    precision: engine.identity) stops the fill before anything trains (`on_mismatch="error"`) or
    is retrained, the new record replacing the old (`"retrain"`; the old one is kept).

    One computation per run across drivers (engine.claims): each run is claimed before it is
    dispatched; a run another live driver has claimed is not dispatched but waited for (its
    record is looked for each time a task of this driver returns, and every `wait_poll_s` once
    this driver has nothing of its own left); a claim gone stale is taken over and the run
    trained here. Claims are released as records are written or tasks fail, and on every exit.
    """
    from tqdm import tqdm

    from engine import claims as claims_mod
    from engine.precision import Precision
    from engine.train import preflight

    if precision is not None:
        Precision(precision)  # a bad name is refused here (ValueError), before anything is dispatched

    unique = list({s.run_id: s for s in specs}.values())
    expect = expected_identity(executor, cache.data_dir, precision)
    todo = cache.missing(unique, expect, on_mismatch)  # IdentityMismatchError before any compute
    report = FillReport(cached=len(unique) - len(todo))
    if not todo:
        return report
    if hasattr(executor, "check"):
        executor.check()  # the executor can be had (devices, Ray, sbatch) before any compute
    cache.check_space(todo, checkpoint_every=checkpoint_every)
    preflight(todo, cache.data_dir)  # data and tokenizers ready and checked before any job starts
    if _workers_share_this_machine(executor):
        from engine.runtime import prepare_ops

        prepare_ops()  # DeepSpeed's ops built once, here, before any worker would build them at once
    kwargs = dict(data_dir=str(cache.data_dir), checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
                  checkpoint_every=checkpoint_every, progress=run_progress, precision=precision, compile=compile)
    bar = tqdm(total=len(todo), desc=desc, unit="run", disable=not progress)
    claims = claims_mod.Claims(cache.run_dir, cache.root / claims_mod.DRIVERS_SUBDIR,
                               heartbeat_s=heartbeat_s or claims_mod.HEARTBEAT_S,
                               stale_s=claim_stale_s or claims_mod.STALE_S)

    def settled(spec: RunSpec) -> bool:
        """Whether another driver has finished `spec` (counted, and shown on the bar)."""
        outcome = _finished_elsewhere(cache, spec, expect, on_mismatch)
        if outcome is None:
            return False
        if outcome == "served":
            report.waited += 1
        else:
            report.failed.append((Task((spec,)), outcome))
        bar.update(1)
        return True

    def show(waiting: list) -> None:
        bar.set_postfix_str(", ".join(
            ([f"{len(waiting)} waiting on another driver"] if waiting else [])
            + ([f"failed={len(report.failed)}"] if report.failed else [])), refresh=False)

    with bar, claims:
        waiting = list(todo)
        while waiting:
            mine, still = [], []
            for spec in waiting:  # claim what no live driver is training; a run done since is not trained again
                if claims.take(spec):
                    if settled(spec):
                        claims.release(spec)
                    else:
                        mine.append(spec)
                elif not settled(spec):
                    still.append(spec)
            waiting = still
            show(waiting)
            if not mine:
                if waiting:
                    time.sleep(wait_poll_s)
                continue
            # closing(): an exception here (Ctrl-C included) closes the executor's generator at once, and
            # its `finally` stops what it dispatched; the claims' context then releases every claim
            with contextlib.closing(executor.run(make_tasks(mine, pack), **kwargs)) as results:
                for task, out in results:
                    bar.update(len(task.specs))
                    if isinstance(out, BaseException):
                        log.warning("task %s failed: %s", task, out)
                        report.failed.append((task, error_line(out)))
                    else:
                        for spec, result in zip(task.specs, out, strict=True):
                            report.add(spec, _write(cache, spec, result, lock_timeout, expect, on_mismatch),
                                       diverged=result.get("status") == "diverged")
                            if checkpoint_dir:  # the run is finished: its resume checkpoints are debris now
                                shutil.rmtree(Path(checkpoint_dir) / spec.run_id, ignore_errors=True)
                    for spec in task.specs:
                        claims.release(spec)
                    waiting = [s for s in waiting if not settled(s)]
                    show(waiting)
    return report


def _finished_elsewhere(cache, spec: RunSpec, expect, on_mismatch: str) -> str | None:
    """'served' if a record of `spec` now serves this fill; an error line if one was written in another
    identity and this fill does not retrain (`on_mismatch="error"`); None if the run still needs training."""
    from engine.identity import differences, mismatch_message

    record = cache.get(spec)
    if record is None:
        return None
    diffs = differences(record["result"].get("identity"), expect(spec))
    if not diffs:
        return "served"
    if on_mismatch == "retrain":
        return None
    return "another driver trained it in another identity: " + mismatch_message([(spec, diffs)], "_superseded")


def _write(cache, spec: RunSpec, result: dict, lock_timeout: float, expect=None, on_mismatch: str = "error") -> str:
    """Store one returned record (the driver's atomic put, under the run's lock): 'trained',
    'diverged', 'superseded' (it replaced a record made in another identity, kept under
    `_superseded/`), 'duplicate' (someone stored one that serves first; ignored) or an error line."""
    from filelock import Timeout

    from engine.identity import differences

    lock = cache.lock(spec)
    try:
        lock.acquire(timeout=lock_timeout)
    except Timeout:
        return f"its lock {lock.lock_file} stayed held {lock_timeout:g} s; the result was dropped (run the sweep again)"
    try:
        wanted = expect(spec) if expect else None
        existing = cache.get(spec)
        replaced = existing is not None and on_mismatch == "retrain" and bool(
            differences(existing["result"].get("identity"), wanted))
        if existing is not None and not replaced:
            return "duplicate"
        if differences(result.get("identity"), wanted):  # the executor's workers did not train as expected
            log.warning("run %s was trained in %s, not in the %s this sweep expected: the next sweep will find it "
                        "mismatched", spec.short_id, result["identity"], wanted)
        if replaced:
            cache.supersede(spec)
        cache.put(spec, result)
        if replaced:
            return "superseded"
        return "diverged" if result.get("status") == "diverged" else "trained"
    finally:
        lock.release()


def _workers_share_this_machine(executor) -> bool:
    """Local workers, a Ray cluster started here, submitit's local arrays: their op builds are this
    machine's (a cluster node builds its own, under the same stale-lock protection)."""
    if isinstance(executor, LocalExecutor):
        return True
    if isinstance(executor, RayExecutor):
        return executor.address is None
    return isinstance(executor, SlurmExecutor) and executor.cluster == "local"


def error_line(e: BaseException) -> str:
    """One line for a failed task: the last line of a remote traceback (Ray, submitit carry the
    worker's whole traceback in the message), else the exception's own."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not set(ln.strip()) <= set("-=")]
    last = next((ln for ln in reversed(lines) if "Error" in ln or "Exception" in ln), lines[-1] if lines else "")
    return last if last.split(":")[0].endswith(("Error", "Exception")) else f"{type(e).__name__}: {last}"

"""Command line: `python -m engine {train,show,sweep,plan,bench,data,runs,export}`.

Deciding claims and the report belong to the claim layer: `python -m hypotheses report`.

Every command exits 2 with one `error: ...` line naming the bad value and the fix on bad input
(flags, spec files, profiles, devices, a cache that is a file or on a full disk, data too short
for the run), and checks all of it before any lock is taken or any record written. A stopped
sweep (Ctrl-C, SIGTERM) stops its workers too.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path

from engine.options import add_shared, non_negative_int, positive_int
from engine.spec import RunSpec, SpecError, bits_label

log = logging.getLogger("engine")


# --- helpers ------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse with the house's error format: one `error: ...` line on stderr, exit 2 (no usage dump)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _parse_value(kind: str, text: str):
    if kind == "bool":
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")
    try:
        if kind == "int":
            return int(text)
        if kind in ("float", "float | None"):
            return None if text.lower() == "none" else float(text)
        if kind.startswith("tuple"):
            return tuple(float(x) for x in text.split(",") if x)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind == 'int' else 'a number'}") from None
    return text


# The command line spells the warmdown fields out, like RunSpec; the short flags stay as aliases so
# old commands still work.
SPEC_FLAGS = {"warmdown": ("--warmdown", "--wd"), "warmdown_shape": ("--warmdown-shape", "--wd-shape")}
SPEC_HELP = {
    "warmdown": "warmdown: the fraction of all steps over which the LR decays to its floor (RunSpec.warmdown)",
    "warmdown_shape": "shape of the warmdown decay: linear, cosine, 1-sqrt or step (RunSpec.warmdown_shape)",
}


def add_spec_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run spec (any RunSpec field; defaults: engine/spec.py, parameter-golf's base "
                             "learning rates, betas and momentum, the engine's own export grid and data order)")
    for f in fields(RunSpec):
        flags = SPEC_FLAGS.get(f.name, (f"--{f.name.replace('_', '-')}",))
        g.add_argument(*flags, dest=f"spec_{f.name}", metavar=f.type.upper().split()[0], help=SPEC_HELP.get(f.name),
                       type=lambda t, k=f.type: _parse_value(k, t), default=None)
    g.add_argument("--spec", type=Path, help="JSON file with RunSpec fields (flags override it)")


def spec_from_args(args) -> RunSpec:
    d = {}
    if args.spec:
        try:
            d = json.loads(args.spec.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SpecError(f"--spec {args.spec}: cannot read a JSON object ({e})") from None
        if not isinstance(d, dict):
            raise SpecError(f"--spec {args.spec}: cannot read a JSON object of RunSpec fields; the file holds {d!r}")
    for f in fields(RunSpec):
        v = getattr(args, f"spec_{f.name}")
        if v is not None:
            d[f.name] = v
    return RunSpec.from_dict(d)


def _num(value, fmt: str) -> str:
    """`value` formatted as a number; anything else as it is stored (`'abc'`, `None`), never an exception:
    a record with a string where a number belongs once made `engine show` print only
    `error: Cannot specify ',' with 's'.`"""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, fmt)
    return repr(value)


def _bits(bits) -> str:
    return bits_label(bits) if isinstance(bits, int) and not isinstance(bits, bool) else repr(bits)


def summary(record: dict) -> str:
    """A stored run for people; every field read with a fallback, so an odd record still prints."""
    s, r = record.get("spec") or {}, record.get("result") or {}
    v = r.get("versions") if isinstance(r.get("versions"), dict) else {}
    lines = [
        f"run {str(record.get('run_id'))[:12]}  {s.get('size')} ({_num(r.get('n_params'), ',')} params)  "
        f"{_bits(s.get('bits'))}  warmdown {s.get('warmdown')} {s.get('warmdown_shape')}  lr x{s.get('lr_mult')}  "
        f"{s.get('optimizer')}  seed {s.get('seed')}"
        + (f"  QAT from {_num(s.get('qat_start'), 'g')}, LR restarted there" if s.get("qat_lr_restart") else ""),
        f"  status      {r.get('status')}"
        + (f" at step {r.get('diverged_step')}" if r.get("status") == "diverged" else ""),
    ]
    if r.get("status") == "ok":
        lines += [
            f"  val_bpb     {_num(r.get('val_bpb'), '.4f')} (training precision)",
            f"  val_bpb_q   {_num(r.get('val_bpb_q'), '.4f')} (after {_bits(s.get('bits'))} export round trip; "
            f"penalty {_num(r.get('quant_penalty'), '+.4f')})",
            f"  val_bpb_int8 {_num(r.get('val_bpb_int8'), '.4f')} (int8 export; "
            f"penalty {_num(r.get('int8_penalty'), '+.4f')})",
            f"  grid dist   int6 {_num(r.get('grid_dist_int6_prewd'), '.4f')}, own "
            f"{_num(r.get('grid_dist_own_prewd'), '.4f')} (before the warmdown)",
            f"  tokens      {_num(r.get('tokens_seen'), ',')} in {_num(r.get('train_time_s'), '.1f')} s "
            f"({_num(r.get('tokens_per_s'), ',.0f')} tok/s) on {r.get('device')}",
        ]
    lines.append(f"  engine {v.get('engine')}  torch {v.get('torch')}  "
                 f"deepspeed {v.get('deepspeed')}  commit {str(r.get('git_commit'))[:10]}")
    return "\n".join(lines)


# --- commands -----------------------------------------------------------------------


def cmd_train(args) -> int:
    from engine.cache import ResultsCache
    from engine.compilation import check_compiler
    from engine.runtime import pick_device, prepare_ops, set_threads
    from engine.train import preflight, train

    # Every input check first: nothing below takes a lock or writes a file until all pass.
    spec = spec_from_args(args)
    precision = precision_from_args(args, pick_device(args.device))
    check_compiler(pick_device(args.device).type, precision.compile)
    threads = set_threads(args.threads)
    cache = ResultsCache(args.cache_dir, on_corrupt=args.on_corrupt)
    expect = identity_here(cache, pick_device(args.device).type, threads, precision.name)
    if not args.force:  # a record made in another identity: one error line here, before any lock
        cache.missing([spec], expect, args.on_mismatch, who="this run")
    if not cache.has(spec):
        cache.check_space([spec], checkpoint_every=args.checkpoint_every)
    preflight([spec], cache.data_dir)
    if args.force or not cache.has(spec):
        prepare_ops()  # DeepSpeed's op build (or a wait for one) happens here, not under the run's lock

    def train_fn(s):
        return train(s, device=args.device, data_dir=cache.data_dir, progress=not args.quiet, precision=precision,
                     checkpoint_dir=cache.checkpoint_dir(s), checkpoint_every=args.checkpoint_every)

    trained = []
    if args.force and cache.has(spec):  # the old record stays until the new one replaces it
        record, trained = retrain(cache, spec, train_fn), [spec]
    else:
        [record] = cache.ensure([spec], train_fn, on_trained=lambda s, r: trained.append(s), expect=expect,
                                on_mismatch=args.on_mismatch)
    print(("trained and stored" if trained else "from cache") + f": {cache.record_path(spec)}")
    print(summary(record))
    return 0


def retrain(cache, spec: RunSpec, train_fn) -> dict:
    """`train --force`: train `spec` again under its lock, keeping the old record until the new one replaces it.

    The old record stays in place (served to every other reader) while the run retrains, so a
    retrain that dies leaves it as it was; the new record is renamed over it (atomic) and the old
    one is kept in `_superseded/`, logged as superseded. A good record is never quarantined as corrupt.
    """
    import shutil
    import time
    import uuid

    from engine.atomic import atomic_write
    from engine.cache import SUPERSEDED_SUBDIR

    old = cache.record_path(spec)
    with cache.lock(spec):  # another process training the run: wait for it
        result = train_fn(spec)
        stamp = f"{int(time.time())}.{uuid.uuid4().hex[:8]}"
        kept: Path | None = cache.root / SUPERSEDED_SUBDIR / f"{spec.run_id}.{stamp}.json"
        try:
            atomic_write(kept, old.read_bytes())
        except FileNotFoundError:  # removed meanwhile: nothing to keep
            kept = None
        try:
            record = cache.put(spec, result)
        except OSError:  # the new record was not written: the old one is still in place, so no copy is kept
            if kept is not None:
                kept.unlink(missing_ok=True)
            raise
        shutil.rmtree(cache.checkpoint_dir(spec), ignore_errors=True)
    if kept is not None:
        log.warning("superseded record %s -> %s (retrained with --force)", old, kept)
    return record


def identity_here(cache, device: str, threads: int, precision: str):
    """`spec -> identity` of a run trained in this process (engine.identity), for the cache to check."""
    from engine.data import data_fingerprint
    from engine.identity import numeric_identity

    numeric = numeric_identity(device, threads, precision)
    return lambda s: {"data": data_fingerprint(s.data, s.tokenizer, cache.data_dir), "numeric": numeric}


def cmd_show(args) -> int:
    from engine.cache import ResultsCache

    cache = ResultsCache(args.cache_dir)
    record = cache.find(args.run_id)
    check_stored_spec(record, args.run_id, cache)
    print(json.dumps(record, indent=1) if args.json else summary(record))
    return 0


def check_stored_spec(record: dict, prefix: str, cache) -> None:
    """A record is shown only if its spec is the run it is stored under (`ResultsCache.get` serves no
    other); else CorruptRecordError, one line naming the directory and the fix."""
    from engine.cache import RECORD, CorruptRecordError
    from engine.spec import with_added_fields

    where = next(cache.root.glob(f"{prefix[:2]}/{prefix}*/{RECORD}"), None)
    where = where.parent if where is not None else f"{cache.root}/{prefix[:2]}/{prefix}*"
    try:
        spec = RunSpec.from_dict(record["spec"])
        same = (spec.run_id == record["run_id"] and record["run_id"].startswith(prefix)
                and with_added_fields(record["spec"]) == spec.to_dict())
        problem = "its spec does not match the run id it is stored under"
    except (SpecError, TypeError, ValueError) as e:
        same, problem = False, f"its spec is not a valid run ({e})"
    if not same:
        raise CorruptRecordError(f"{where}: {problem}, so it is not shown (edited or copied by hand?). Delete "
                                 f"{where} to retrain the run")


def _stop_on_sigterm() -> None:
    """SIGTERM stops a sweep like Ctrl-C does: the executor then kills its workers (no run is left training).

    A plain SIGTERM ends the parent only; its worker processes would go on training for minutes.
    """
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)


def executor_from_args(args):
    """The executor `sweep` trains with, from --executor and its settings (engine.options.EXECUTOR_OPTIONS)."""
    from engine.executors import executor_from_options
    from engine.options import EXECUTOR_OPTIONS

    opts = {k: getattr(args, k) for k in EXECUTOR_OPTIONS}
    return executor_from_options({**opts, "threads": getattr(args, "threads", None)}, device=args.device)


def cmd_sweep(args) -> int:
    from engine.cache import ResultsCache
    from engine.design import load_profile
    from engine.executors import fill, resume_dir, runs_to_train
    from engine.runtime import pick_device

    profile = load_profile(args.profile)
    designs = args.design or list(profile.designs)
    specs = list({s.run_id: s for d in designs for s in profile.design(d).specs}.values())
    if args.device:
        pick_device(args.device)
    if args.dry_run:
        return dry_run(args, profile, specs)
    cache = ResultsCache(args.cache_dir, on_corrupt=args.on_corrupt)
    executor = executor_from_args(args)
    # a cached run made in another identity (data, threads, device, precision): one error line, before training
    todo = runs_to_train(cache, specs, executor, precision=args.precision, on_mismatch=args.on_mismatch)
    every = args.checkpoint_every if args.checkpoint_every is not None else profile.checkpoint_every
    print(f"profile {profile.name}: {len(specs)} runs in {designs}, {len(specs) - len(todo)} cached, {len(todo)} to train")
    if not todo:
        return 0
    if args.executor == "local":  # --compile on a CPU without a C++ compiler: one line, before any worker starts
        from engine.compilation import check_compiler

        check_compiler(args.device, args.compile)
    pack = args.pack if args.pack is not None else profile.pack
    ckpt = resume_dir(vars(args), cache.root, every)
    _stop_on_sigterm()
    try:
        report = fill(cache, todo, executor, pack=pack, checkpoint_dir=ckpt, checkpoint_every=every,
                      desc=f"sweep {profile.name}", precision=args.precision, compile=args.compile,
                      on_mismatch=args.on_mismatch)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the executor's workers are stopped as it unwinds
        print("error: sweep stopped; its workers were stopped too. Finished runs are cached; run the same "
              "command again to resume", file=sys.stderr)
        return 130
    print(f"done: {report.trained} trained, {report.cached + report.duplicates} found cached, "
          + (f"{report.waited} trained by another driver, " if report.waited else "")
          + (f"{report.superseded} retrained (old records in {cache.root}/_superseded), " if report.superseded else "")
          + f"{report.diverged} diverged, {len(report.failed)} failed")
    for task, err in report.failed:
        print(f"  FAILED {task}: {err}", file=sys.stderr)
    return 1 if report.failed else 0


def dry_run(args, profile, specs) -> int:
    """`sweep --dry-run`: every distinct configuration a few steps, on the sweep's executor; nothing cached."""
    from engine.dryrun import dry_configs, format_results, run_dry
    from engine.dryrun import failed as dry_failed
    from engine.memplan import device_memory_bytes
    from engine.paths import data_dir

    gpu = device_memory_bytes(args.gpu_memory)
    on_gpu = executor_from_args(args).__class__.__name__ != "LocalExecutor" or _has_gpu(args.device)
    micro_steps = args.micro_steps if args.micro_steps is not None else (None if on_gpu else 1)
    sizes = set(args.sizes.split(",")) if args.sizes else None
    unknown = sizes - {s.size for s in specs} if sizes else set()
    if unknown:
        raise ValueError(f"--sizes {','.join(sorted(unknown))}: not a size of profile {profile.name!r} "
                         f"({', '.join(sorted({s.size for s in specs}))})")
    precision = args.precision or ("bf16" if on_gpu else "fp32")
    configs = dry_configs(specs, steps=args.steps, gpu_memory=gpu, precision=precision, micro_steps=micro_steps,
                          sizes=sizes, data=args.data, tokenizer=args.tokenizer)
    subs = [f"{k} {v}" for k, v in (("data", args.data), ("tokenizer", args.tokenizer)) if v]
    print(f"dry run of profile {profile.name}: {len(configs)} configurations of {len(specs)} runs, {args.steps} steps "
          f"each, micro-batches planned for a {gpu / 2**30:.0f} GiB device, "
          f"{'every' if micro_steps is None else micro_steps} micro-batch(es) a step"
          + (f"; substituted: {', '.join(subs)}" if subs else "") + "; nothing is cached")
    from engine.train import preflight

    preflight([c.spec for c in configs], data_dir(args.cache_dir))
    from engine.runtime import prepare_ops

    prepare_ops()  # once, before the workers start (engine.runtime)
    _stop_on_sigterm()
    results = run_dry(configs, executor_from_args(args), precision=args.precision, compile=args.compile,
                      data_dir=data_dir(args.cache_dir))
    print(format_results(results))
    failed = sum(dry_failed(r) for _, r in results)
    print(f"dry run: {len(results) - failed} ok, {failed} failed")
    return 1 if failed else 0


def _has_gpu(device: str | None) -> bool:
    import torch

    return (device or "cuda").startswith("cuda") and torch.cuda.is_available()


def cmd_plan(args) -> int:
    from engine.cache import ResultsCache
    from engine.design import estimate_flops, load_profile, sweep_command
    from engine.ladder import LADDER, count_params

    if args.ladder:
        print(f"{'size':>6} {'layers':>6} {'dim':>5} {'heads':>5} {'kv':>3} {'params':>12} {'vs name':>8}")
        for name, c in LADDER.items():
            n = count_params(c, c.ref_vocab)
            print(f"{name:>6} {c.n_layers:>6} {c.dim:>5} {c.n_heads:>5} {c.n_kv_heads:>3} {n:>12,} "
                  f"{n / c.nominal_params - 1:>+8.1%}")
        return 0
    profile = load_profile(args.profile)
    cache = ResultsCache(args.cache_dir)
    print(f"profile {profile.name}: {profile.description}")
    print(f"{'design':<16} {'runs':>6} {'cached':>7} {'sizes':<34} {'tokens':>10} {'PFLOP':>9}")
    total_runs = total_tokens = total_flops = 0
    incomplete = []
    for name, d in profile.designs.items():
        tokens = sum(s.tokens for s in d.specs)
        flops = sum(estimate_flops(s) for s in d.specs)
        cached = len(d.specs) - len(cache.missing(list(d.specs)))
        if cached < len(d.specs):
            incomplete.append(name)
        total_runs += len(d.specs)
        total_tokens += tokens
        total_flops += flops
        print(f"{name:<16} {len(d.specs):>6} {cached:>7} {','.join(d.sizes):<34} {tokens:>10.3g} {flops / 1e15:>9.3g}")
    unique = len(profile.all_specs())
    print(f"{'total':<16} {total_runs:>6} {'':>7} {f'({unique} distinct runs)':<34} {total_tokens:>10.3g} "
          f"{total_flops / 1e15:>9.3g}")
    if incomplete:
        print(f"fill the cache with: {sweep_command(profile, incomplete, cache.root)}")
    if args.workers:
        _print_schedules(profile, args.workers)
    print_memory_plan(profile, args.gpu_memory)
    # Seeds for power are the claim layer's business (the engine never judges): point to it.
    print(f"seeds each claim needs for 80 % power: python -m hypotheses plan --profile {args.profile}")
    return 0


def print_memory_plan(profile, gpu_memory: float | None) -> None:
    """Per configuration: micro-batch, accumulation, checkpointing, estimated peak (engine.memplan)."""
    from engine.memplan import device_memory_bytes, format_plan, plan_profile

    rows = plan_profile(profile.all_specs(), device_memory_bytes(gpu_memory), precision="bf16")
    print("memory plan on a GPU (bf16, eager estimate; a CPU trains the whole batch at once):")
    print(format_plan(rows))


def _print_schedules(profile, workers: list[int]) -> None:
    from engine.scheduling import by_groups, lpt, make_tasks

    tasks = make_tasks(profile.all_specs(), profile.pack)
    seen: set[str] = set()
    per_design = []  # each design's runs on one worker, as training split by test cell did
    for d in profile.designs.values():
        own = [s for s in d.specs if s.run_id not in seen]
        seen.update(s.run_id for s in own)
        if own:
            per_design.append(make_tasks(own, profile.pack))
    print(f"schedule of {len(tasks)} tasks (pack {profile.pack}), cost = estimated FLOPs:")
    print(f"{'workers':>8} {'LPT makespan/ideal':>19} {'one worker per design':>22}")
    for w in workers:
        print(f"{w:>8} {lpt(tasks, w).ratio:>19.3f} {by_groups(per_design, w).ratio:>22.3f}")


def cmd_bench(args) -> int:
    from engine.bench import main as bench_main

    return bench_main(args)


# --- parser -------------------------------------------------------------------------


def precision_from_args(args, dev):
    from engine.precision import resolve_precision

    return resolve_precision(dev, args.precision, args.compile)


def add_executor_flags(p) -> None:
    """--executor and its settings: the same options as the plugin's --qat-executor, ... (engine.options)."""
    from engine.options import EXECUTOR_OPTIONS

    add_shared(p.add_argument_group("where runs train (engine.executors)"), *EXECUTOR_OPTIONS)


def add_gpu_memory(p) -> None:
    p.add_argument("--gpu-memory", type=float, default=None, metavar="GIB",
                   help="plan micro-batches for a GPU of this many GiB (default: the visible GPU's, else 80)")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m engine", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        add_shared(sp, "cache_dir", "on_corrupt")  # the same options as the plugin's --qat-cache-dir/--qat-on-corrupt

    t = sub.add_parser("train", help="train one run (or load it from the cache) and print its summary")
    add_spec_flags(t)
    common(t)
    add_shared(t, "device", "threads", "precision", "compile", "on_mismatch")
    t.add_argument("--force", action="store_true",
                   help="retrain even if cached (the old record is kept until the new one replaces it, then moved "
                        "to the cache's _superseded/)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--checkpoint-every", type=non_negative_int, default=0,
                   help="save a resume checkpoint every N steps (0 = never); a killed run resumes from it")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("show", help="print a stored run (id or unique prefix)")
    s.add_argument("run_id")
    s.add_argument("--json", action="store_true")
    common(s)
    s.set_defaults(func=cmd_show)

    w = sub.add_parser("sweep", help="train every missing run of a profile (or of some designs), in parallel")
    w.add_argument("--profile", required=True)
    w.add_argument("--design", action="append", help="only this design (repeatable)")
    add_shared(w, "device", "threads", "pack", "precision", "compile", "on_mismatch")
    w.add_argument("--checkpoint-every", type=non_negative_int, default=None,
                   help="resume checkpoints every N steps (default: the profile's checkpoint_every)")
    add_executor_flags(w)
    d = w.add_argument_group("dry run (engine.dryrun): every configuration a few steps, nothing cached")
    d.add_argument("--dry-run", action="store_true", help="train each distinct configuration of the profile for "
                   "--steps steps and print ok, peak memory and step time; writes nothing to the cache")
    d.add_argument("--steps", type=positive_int, default=2, help="steps per configuration (default 2)")
    d.add_argument("--sizes", help="only these sizes, comma-separated (e.g. 3M,5M,8M)")
    d.add_argument("--data", help="train on this data source instead of the profile's (e.g. kjv where FineWeb is absent)")
    d.add_argument("--tokenizer", help="with --data: this tokenizer (e.g. sp1024, the paper's vocabulary size)")
    d.add_argument("--micro-steps", type=positive_int, default=None,
                   help="micro-batches per step (default: all on a GPU, 1 on a CPU)")
    add_gpu_memory(d)
    common(w)
    w.set_defaults(func=cmd_sweep)

    pl = sub.add_parser("plan", help="run counts, tokens and FLOPs per design of a profile")
    pl.add_argument("--profile", default="paper")
    pl.add_argument("--ladder", action="store_true", help="print the size ladder instead")
    add_gpu_memory(pl)
    pl.add_argument("--workers", type=positive_int, nargs="+", metavar="W",
                    help="also simulate the sweep's schedule on W workers (longest task first over the whole "
                         "sweep, from the FLOP cost model): makespan / ideal, against one worker per design")
    common(pl)
    pl.set_defaults(func=cmd_plan)

    b = sub.add_parser("bench", help="engine vs plain PyTorch step time, tokens/s, MFU, QAT overhead")
    b.add_argument("--sizes", default="t20k,t60k,t130k")
    b.add_argument("--steps", type=int, default=20, help="steps per timed repeat")
    b.add_argument("--repeats", type=int, default=5, help="interleaved repeats (median reported)")
    add_shared(b, "threads", "device", "precision", "compile")
    b.add_argument("--pack", type=positive_int, default=None,
                   help="seeds per pack for the packed rows (default: the tiny profile's pack)")
    b.add_argument("--quick", action="store_true", help="the overhead and packed rows only (no QAT/optimiser rows)")
    b.add_argument("--out", type=Path, default=Path("reports/bench"))
    b.set_defaults(func=cmd_bench)

    from engine.fineweb import add_data_parser

    add_data_parser(sub)
    from engine.runs import add_runs_parser

    add_runs_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # bad flags: argparse printed one `error:` line (Parser.error)
        return e.code if isinstance(e.code, int) else 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from engine.cache import CorruptRecordError
    from engine.design import ProfileError

    try:
        return args.func(args)
    except (SpecError, ProfileError, CorruptRecordError, KeyError, ValueError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 2

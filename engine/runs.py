"""`python -m engine runs` and `python -m engine export`: the cached runs, listed and handed over.

Owns: choosing records from a results cache by profile/design, size, bit-width and status
(`select_records`), the listing (a text table or `--json`), and the exports: the results table
(`engine.cache.records_to_table`) as CSV or Parquet, and each run's curves with its spec as
hyperparameters as TensorBoard event files, one folder per run, for `tensorboard --logdir DIR`:
the training loss (`loss_curve`, up to 1,000 points; records made before: 64), the validation
evaluations (`val_curve`; the loops evaluate once, after the last step) and the grid-distance
probes made during the run (`grid_probes`).

Nothing here trains or writes to the cache. pyarrow (Parquet) and tensorboard (event files) are
optional (`pip install -e '.[export]'`) and imported only by the export that needs them.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Iterable

from engine.options import add_shared
from engine.spec import FULL_PRECISION_BITS, bits_label

STATUSES = ("ok", "diverged")
RUN_ID_SHOWN = 12  # as `engine show` and the results table print run ids
LOSS_TAG = "train/loss"  # the TensorBoard scalar tag of a record's loss curve
VAL_TAG = "val/bpb"  # ... of its validation evaluations (val_curve)
PROBE_TAGS = {"int6_mean": "probe/grid_dist_int6", "own_mean": "probe/grid_dist_own"}  # ... of its grid probes
METRIC_TAGS = ("val_bpb", "val_bpb_q", "val_bpb_int8", "quant_penalty")  # final numbers, hparams-plugin metrics


# --- choosing records ---------------------------------------------------------------


def bits_value(text: str) -> int:
    """A bit-width as the table and the paper write it: 6, int6, INT6; 16 or fp16 (full precision)."""
    t = text.strip().lower()
    if t in ("fp16", "bf16", "fp"):
        return FULL_PRECISION_BITS
    t = t.removeprefix("int")
    try:
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a bit-width: give e.g. 6, int6 or fp16") from None


def _split(values: list[str] | None) -> list[str]:
    """Repeatable, comma-separated flag values as one list (`--size t10k,t20k --size t60k`)."""
    return [v.strip() for vs in values or [] for v in vs.split(",") if v.strip()]


def profile_run_ids(profile: str, designs: list[str] | None = None) -> set[str]:
    """Run ids of a profile's designs (all designs when none are named); ProfileError on unknown names."""
    from engine.design import load_profile

    p = load_profile(profile)
    chosen = [p.design(d) for d in designs] if designs else list(p.designs.values())
    return {s.run_id for d in chosen for s in d.specs}


def select_records(records: Iterable[dict], run_ids: set[str] | None = None, sizes: list[str] | None = None,
                   bits: list[int] | None = None, statuses: list[str] | None = None) -> list[dict]:
    """The records that pass every filter given (None or empty: no filter), in the order read."""
    keep = []
    for r in records:
        s, res = r["spec"], r["result"]
        if run_ids is not None and r["run_id"] not in run_ids:
            continue
        if sizes and s.get("size") not in sizes:
            continue
        if bits and s.get("bits") not in bits:
            continue
        if statuses and res.get("status") not in statuses:
            continue
        keep.append(r)
    return keep


def records_from_args(args) -> list[dict]:
    """The cache's records chosen by the shared filter flags (`add_filter_flags`)."""
    from engine.cache import ResultsCache

    if args.design and not args.profile:
        raise ValueError("--design needs --profile (a design is a part of a profile), e.g. --profile tiny "
                         f"--design {args.design[0]}")
    designs = _split(args.design)
    run_ids = profile_run_ids(args.profile, designs) if args.profile else None
    cache = ResultsCache(args.cache_dir, on_corrupt=args.on_corrupt)
    return select_records(cache.iter_records(), run_ids, _split(args.size), args.bits, args.status)


# --- the listing ----------------------------------------------------------------------


def _fmt(value, spec: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec)
    return "-" if value is None else str(value)


def run_row(record: dict) -> dict:
    """One listing row: the spec fields that tell runs apart and the result's headline numbers."""
    s, r = record["spec"], record["result"]
    return {"run_id": record["run_id"], "size": s.get("size"), "bits": s.get("bits"), "warmdown": s.get("warmdown"),
            "shape": s.get("warmdown_shape"), "optimizer": s.get("optimizer"), "seed": s.get("seed"),
            "steps": s.get("steps"), "status": r.get("status"), "val_bpb": r.get("val_bpb"),
            "val_bpb_q": r.get("val_bpb_q"), "diverged_step": r.get("diverged_step"),
            "finished_at": record.get("finished_at")}


COLUMNS = (  # header, row key, how a number prints
    ("run", "run_id", None), ("size", "size", None), ("bits", "bits", None), ("warmdown", "warmdown", "g"),
    ("shape", "shape", None), ("optim", "optimizer", None), ("seed", "seed", "d"), ("steps", "steps", "d"),
    ("status", "status", None), ("val_bpb", "val_bpb", ".4f"), ("val_bpb_q", "val_bpb_q", ".4f"),
    ("finished", "finished_at", None),
)


def format_table(rows: list[dict]) -> str:
    """Rows as an aligned text table (run ids shortened, bit-widths as FP16/INT6)."""
    cells = []
    for row in rows:
        line = []
        for _, key, spec in COLUMNS:
            v = row[key]
            if key == "run_id":
                line.append(str(v)[:RUN_ID_SHOWN])
            elif key == "bits":
                line.append(bits_label(v) if isinstance(v, int) else _fmt(v, ""))
            elif key == "status" and v == "diverged" and row["diverged_step"] is not None:
                line.append(f"diverged@{row['diverged_step']}")
            else:
                line.append(_fmt(v, spec) if spec else _fmt(v, ""))
        cells.append(line)
    heads = [h for h, _, _ in COLUMNS]
    widths = [max(len(c) for c in col) for col in zip(heads, *cells)]
    numeric = {i for i, (_, _, spec) in enumerate(COLUMNS) if spec}
    fmt = lambda line: "  ".join(c.rjust(w) if i in numeric else c.ljust(w)  # noqa: E731
                                 for i, (c, w) in enumerate(zip(line, widths))).rstrip()
    return "\n".join([fmt(heads)] + [fmt(line) for line in cells])


def cmd_runs(args) -> int:
    records = records_from_args(args)
    rows = sorted((run_row(r) for r in records),
                  key=lambda r: (str(r["size"]), -(r["bits"] or 0), r["warmdown"] or 0, r["seed"] or 0, r["run_id"]))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no cached runs match", file=sys.stderr)
        return 0
    print(format_table(rows))
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    print(f"{len(rows)} run(s): {counts['ok']} ok, {counts['diverged']} diverged")
    return 0


# --- exports --------------------------------------------------------------------------


def export_table(records: list[dict]):
    """The results table of `records` with tuple cells (probe_fracs) as comma-joined text, so CSV
    and Parquet hold the same plain values."""
    from engine.cache import records_to_table

    df = records_to_table(records)
    for col in df.columns:
        if df[col].map(lambda v: isinstance(v, tuple)).any():
            df[col] = df[col].map(lambda v: ",".join(f"{x:g}" for x in v) if isinstance(v, tuple) else v)
    return df


def write_parquet(df, out: Path) -> None:
    try:
        import pyarrow  # noqa: F401  (pandas' Parquet engine)
    except ImportError:
        raise ValueError("--format parquet needs pyarrow: pip install pyarrow "
                         "(or pip install -e '.[export]')") from None
    df.to_parquet(out, index=False)


def _hparam(value):
    """A spec value as TensorBoard's hparams plugin takes it: numbers, strings and bools; the rest as text."""
    if isinstance(value, (int, float, str, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)  # None -> "None": still shown, unlike a skipped key


def run_folder_name(record: dict) -> str:
    """A run's TensorBoard folder: readable in the run list, unique by its run id prefix."""
    s = record["spec"]
    bits = bits_label(s["bits"]) if isinstance(s.get("bits"), int) else s.get("bits")
    return f"{record['run_id'][:RUN_ID_SHOWN]}-{s.get('size')}-{bits}-wd{s.get('warmdown')}-seed{s.get('seed')}"


def val_points(record: dict) -> list[tuple[int, float]]:
    """A record's validation evaluations as (step, val_bpb): its `val_curve`, or for a record made
    before runs kept one, the final `val_bpb` at the last step (none if it has no finite number)."""
    result = record["result"]
    if "val_curve" in result:
        return [(int(step), float(v)) for step, v in result["val_curve"] or []]
    v = result.get("val_bpb")
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return [(int(record["spec"].get("steps") or 0), float(v))]
    return []


def probe_points(record: dict) -> dict[str, list[tuple[int, float]]]:
    """A record's grid-distance probes (measured during the run) as (step, value) series by TensorBoard tag."""
    series: dict[str, list[tuple[int, float]]] = {}
    for probe in sorted(record["result"].get("grid_probes") or [], key=lambda p: p.get("step", 0)):
        for key, tag in PROBE_TAGS.items():
            v = probe.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                series.setdefault(tag, []).append((int(probe["step"]), float(v)))
    return series


def write_tensorboard(records: list[dict], logdir: Path) -> list[Path]:
    """One event-file folder per run under `logdir`: its loss curve as the scalar `train/loss`, its
    validation evaluations as `val/bpb` (`val_points`), its grid probes as `probe/*`, and its spec as
    hyperparameters with the final metrics (TensorBoard's HPARAMS tab). A run's folder is rewritten
    whole, so exporting again does not double its curve. Returns the folders."""
    try:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams
    except ImportError:
        raise ValueError("--tensorboard needs the tensorboard package: pip install tensorboard "
                         "(or pip install -e '.[export]')") from None
    folders = []
    for record in records:
        folder = Path(logdir) / run_folder_name(record)
        shutil.rmtree(folder, ignore_errors=True)
        result = record["result"]
        metrics = {f"final/{k}": float(result[k]) for k in METRIC_TAGS if isinstance(result.get(k), (int, float))}
        hp = {k: _hparam(v) for k, v in record["spec"].items()}
        hp.update(run_id=record["run_id"], status=str(result.get("status")))
        with SummaryWriter(log_dir=str(folder)) as w:
            for step, loss in result.get("loss_curve") or []:
                w.add_scalar(LOSS_TAG, float(loss), int(step))
            for step, bpb in val_points(record):
                w.add_scalar(VAL_TAG, bpb, step)
            for tag, points in probe_points(record).items():
                for step, v in points:
                    w.add_scalar(tag, v, step)
            for tag, v in metrics.items():
                w.add_scalar(tag, v, int(record["spec"].get("steps") or 0))
            # the hparams summaries written into this run's own file (SummaryWriter.add_hparams would
            # open a second, timestamped sub-folder per run)
            for summary in hparams(hp, metrics):
                w.file_writer.add_summary(summary)
        folders.append(folder)
    return folders


def cmd_export(args) -> int:
    if not args.format and not args.tensorboard:
        raise ValueError("nothing to export: give --format csv|parquet (the results table) and/or "
                         "--tensorboard DIR (the loss curves)")
    if args.format == "parquet" and args.out is None:
        raise ValueError("--format parquet writes a binary file: give --out FILE.parquet")
    records = records_from_args(args)
    if not records:
        print("no cached runs match; nothing exported", file=sys.stderr)
        return 0
    if args.format:
        df = export_table(records)
        if args.format == "parquet":
            write_parquet(df, args.out)
        elif args.out is None:
            df.to_csv(sys.stdout, index=False)
        else:
            df.to_csv(args.out, index=False)
        if args.out is not None:
            print(f"{len(df)} run(s) -> {args.out}", file=sys.stderr)
    if args.tensorboard:
        folders = write_tensorboard(records, args.tensorboard)
        print(f"{len(folders)} run(s) -> {args.tensorboard} (view: tensorboard --logdir {args.tensorboard})",
              file=sys.stderr)
    return 0


# --- registration ---------------------------------------------------------------------


def add_filter_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("which runs (every filter given must match)")
    g.add_argument("--profile", help="only runs of this profile (tiny, small, paper, or a .toml path)")
    g.add_argument("--design", action="append", metavar="D",
                   help="with --profile: only runs of this design (repeatable, or comma-separated)")
    g.add_argument("--size", action="append", metavar="S", help="only this model size, e.g. t20k (repeatable, or "
                   "comma-separated)")
    g.add_argument("--bits", action="append", type=bits_value, metavar="B",
                   help="only this bit-width: 16/fp16, 8/int8, 6/int6, ... (repeatable)")
    g.add_argument("--status", action="append", choices=STATUSES, help="only runs that finished so (repeatable)")
    add_shared(p, "cache_dir", "on_corrupt")


def add_runs_parser(subparsers) -> None:
    """Register `runs` and `export` on the engine's subcommands (engine.cli.build_parser's `sub`)."""
    r = subparsers.add_parser("runs", help="list cached runs (filter by profile/design, size, bits, status)",
                              description="List the runs in the results cache as a table: run id prefix, "
                                          "size, bits, warmdown, seed, steps, status, val_bpb, val_bpb_q.")
    add_filter_flags(r)
    r.add_argument("--json", action="store_true", help="print the rows as JSON (full run ids) instead of a table")
    r.set_defaults(func=cmd_runs)

    e = subparsers.add_parser("export", help="write the results table (CSV, Parquet) or loss curves (TensorBoard)",
                              description="Export cached runs: the results table (one row per run, the spec and "
                                          "the scalar results) as CSV or Parquet, and/or each run's curves "
                                          "(training loss, validation, grid probes) and hyperparameters as "
                                          "TensorBoard event files.")
    e.add_argument("--format", choices=("csv", "parquet"), help="results table format (parquet needs pyarrow)")
    e.add_argument("--out", type=Path, default=None, help="file to write (default for csv: standard output)")
    e.add_argument("--tensorboard", type=Path, metavar="DIR",
                   help="write one folder of event files per run under DIR (needs tensorboard); "
                        "view with `tensorboard --logdir DIR`")
    add_filter_flags(e)
    e.set_defaults(func=cmd_export)

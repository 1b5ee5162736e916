"""The quantisation penalty of a cache, per (steps, size, warmdown, bit-width): how the tiny
profile's bit-widths were chosen (issue 22 item 2; docs/profiles.md).

    python -m engine sweep --profile fixtures/measure/tiny_penalty.toml --cache-dir cache-penalty
    python scripts/penalty_table.py --profile fixtures/measure/tiny_penalty.toml --cache-dir cache-penalty

Penalty = val_bpb_q(INTb) - val_bpb_q(FP16) of runs paired on (size, steps, warmdown, lr_mult, seed)
by the deciders' ``ArmTable``: the premise statistic of C2-C6 (hypotheses/schedule.py, scaling.py), with the same one-sided
lower bound (hypotheses.intervals.lower_bound). A script, not a suite command: it measures a
design choice, it decides no claim.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from engine.cache import ResultsCache
from engine.design import load_profile
from engine.ladder import count_params, get_config
from engine.spec import field_names
from hypotheses.intervals import lower_bound
from hypotheses.verdict import ARM_KEY, ArmTable

def penalty_rows(table: pd.DataFrame, alpha: float, delta: float) -> list[dict]:
    """One row per (steps, size, warmdown, lr_mult, bit-width) with >= 2 paired seeds: the INTb - FP16
    penalty paired by seed through the deciders' own pairing (``ArmTable.matched``)."""
    metric = pd.to_numeric(table["val_bpb_q"], errors="coerce")
    t = table.assign(val_bpb_q=metric, finite=(table["status"] == "ok") & np.isfinite(metric))
    # a slice is every run factor but the arm's and the seed; the factors that vary besides steps and
    # size (optimiser, schedule, shape, ... in a study profile) are named in the row's "slice"
    factors = [c for c in field_names() if c in t.columns and c not in (*ARM_KEY, "seed")]
    varying = [c for c in factors if c not in ("steps", "size") and t[c].astype(str).nunique() > 1]
    usual = {c: t[c].astype(str).mode().iloc[0] for c in varying}  # a slice names where it departs from these
    rows = []
    for key, g in t.groupby(factors, sort=False, dropna=False):
        at = dict(zip(factors, key))
        steps, size = at["steps"], at["size"]
        arms = ArmTable(g, "val_bpb_q", what=f"penalty table at {size}, {steps} steps")
        n = count_params(get_config(size), 256)
        tokens = int(g["batch_tokens"].iloc[0]) * int(steps)
        for bits in sorted({k[0] for k in arms if k[0] != 16}, reverse=True):
            for pair in arms.matched("bits", bits, 16):
                if len(pair.seeds) < 2:
                    continue
                ci = lower_bound(pair.d, alpha)
                rows.append({"slice": " ".join(f"{c}={at[c]}" for c in varying if str(at[c]) != usual[c]) or "-", "steps": int(steps), "size": size, "params": n, "tokens/param": tokens / n,
                             "warmdown": pair.key["warmdown"], "lr_mult": pair.key["lr_mult"], "bits": int(bits),
                             "pairs": len(pair.seeds), "penalty": ci.mean, "lower95": ci.low,
                             "premise": "met" if ci.low > delta else "absent"})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", required=True, help="profile name or .toml path whose runs to read")
    p.add_argument("--cache-dir", required=True, help="the results cache the sweep filled")
    p.add_argument("--delta", type=float, default=0.025, help="the premise threshold (tiny: 0.025 bpb)")
    p.add_argument("--alpha", type=float, default=0.05, help="one-sided level of the lower bound")
    args = p.parse_args(argv)
    profile = load_profile(args.profile)
    table = ResultsCache(args.cache_dir).table(profile.all_specs())
    if table.empty:
        print(f"no cached runs of {args.profile} in {args.cache_dir}: run the sweep first", file=sys.stderr)
        return 2
    rows = penalty_rows(table, args.alpha, args.delta)
    df = pd.DataFrame(rows).sort_values(["slice", "steps", "warmdown", "size", "bits"], key=lambda c: c if c.name != "size"
                                        else c.map(lambda z: count_params(get_config(z), 256)))
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

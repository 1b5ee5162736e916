"""The quantisation penalty of a cache, per (steps, size, warmdown, bit-width): how the tiny
profile's bit-widths were chosen (issue 22 item 2; docs/profiles.md).

    python -m engine sweep --profile fixtures/measure/tiny_penalty.toml --cache-dir cache-penalty
    python scripts/penalty_table.py --profile fixtures/measure/tiny_penalty.toml --cache-dir cache-penalty

Penalty = val_bpb_q(INTb) - val_bpb_q(FP16) of runs paired on (size, steps, wd, lr_mult, seed):
the premise statistic of C2-C6 (hypotheses/schedule.py, scaling.py), with the same one-sided
lower bound (hypotheses.intervals.lower_bound). A script, not a suite command: it measures a
design choice, it decides no claim.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from engine.cache import ResultsCache
from engine.design import load_profile
from engine.ladder import count_params, get_config
from hypotheses.intervals import lower_bound

KEY = ["size", "steps", "wd", "lr_mult", "seed"]


def penalty_rows(table: pd.DataFrame, alpha: float, delta: float) -> list[dict]:
    ok = table[table["status"] == "ok"] if "status" in table else table
    ref = ok[ok["bits"] == 16].set_index(KEY)["val_bpb_q"]
    rows = []
    for (steps, size, wd, bits), arm in ok[ok["bits"] != 16].groupby(["steps", "size", "wd", "bits"]):
        q = arm.set_index(KEY)["val_bpb_q"]
        common = q.index.intersection(ref.index)
        if len(common) < 2:
            continue
        ci = lower_bound((q.loc[common] - ref.loc[common]).to_numpy(dtype=float), alpha)
        cfg = get_config(size)
        n = count_params(cfg, 256)
        tokens = int(arm["batch_tokens"].iloc[0]) * int(steps)
        rows.append({"steps": int(steps), "size": size, "params": n, "tokens/param": tokens / n, "wd": wd,
                     "bits": int(bits), "pairs": len(common), "penalty": ci.mean, "lower95": ci.low,
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
    df = pd.DataFrame(rows).sort_values(["steps", "wd", "size", "bits"], key=lambda c: c if c.name != "size"
                                        else c.map(lambda z: count_params(get_config(z), 256)))
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

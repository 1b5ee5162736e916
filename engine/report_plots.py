"""The report's figures: one matplotlib PNG per question, each titled with its one message.

Owns the drawing only: every function takes results tables (or records) and writes one PNG,
returning a `Plot` that says where it is, what it shows and how to read it, or why it was
skipped (design absent, no finished runs). Figures are built on `matplotlib.figure.Figure`
with the Agg canvas, never pyplot, so making a report changes no global backend state.

Every number a figure summarises is computed the way the claim layer decides it (best LR
per warmdown, penalties matched on size/wd/lr/seed, ...) so a figure never tells a
different story from the verdict next to it; the thresholds (bits, warmdowns, PI level,
band) are read from `fixtures/claims.toml` by the design they apply to.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from engine.design import Profile
from engine.report import fmt_count
from engine.spec import RunSpec

log = logging.getLogger(__name__)

DPI = 110
METRIC = "val_bpb_q"
WD_DESIGNS = {  # design -> what its wd figure is called in titles
    "phase2": "Phase 2",
    "phase5_adamw": "Phase 5, AdamW arm",
    "phase5_cosine": "Phase 5, cosine-warmdown arm",
    "phase5_long": "Phase 5, long-training arm",
}
PENALTY_DESIGNS = ("phase2", "phase5_sizes")  # fit sizes, held-out sizes
INT4_DESIGN = "phase5_int4"
PROBE_DESIGN = "mechanism_probe"
CURVE_DESIGN = "phase2"
# Factors besides (size, bits, wd, lr_mult, seed) that must match inside a pair.
PAIR_EXTRA = ("optimizer", "wd_shape", "steps", "schedule")

BITS_STYLE = {  # bits -> (label, colour, marker): one look per precision across figures
    16: ("FP16", "#1f77b4", "o"),
    8: ("INT8", "#2ca02c", "s"),
    6: ("INT6", "#d62728", "^"),
    5: ("INT5", "#ff7f0e", "v"),
    4: ("INT4", "#9467bd", "D"),
}


@dataclass(frozen=True)
class Plot:
    name: str  # plots/<name>.png; HTML anchor plot-<name>
    heading: str  # what the figure is
    title: str  # its message (the figure's suptitle); empty when skipped
    caption: str  # how to read it
    path: Path | None = None  # None when skipped
    skipped: str = ""  # why it was skipped


def plot_for_design(design: str) -> str | None:
    """Name of the figure that shows a claim's design ('a+b' for several designs)."""
    if design in WD_DESIGNS:
        return f"wd_{design}"
    return {
        "+".join(PENALTY_DESIGNS): "int6_penalty_vs_size",
        INT4_DESIGN: "int4_wd_difference",
        PROBE_DESIGN: "grid_distance_prewd",
    }.get(design)


def bits_label(bits: int) -> str:
    return BITS_STYLE.get(int(bits), (f"INT{int(bits)}",))[0]


def _style(bits: int) -> tuple[str, str, str]:
    return BITS_STYLE.get(int(bits), (f"INT{int(bits)}", "#7f7f7f", "x"))


def _figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _suptitle(fig: Figure, title: str, note: str) -> None:
    # The note (e.g. "partial: 5/18 runs") sits in the PNG itself: a figure copied out of
    # the report must not pass for the complete design.
    fig.suptitle(title + (f"\n({note})" if note else ""), fontsize=11, wrap=True)


def _save(fig: Figure, out_dir: Path, name: str) -> Path:
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=DPI)
    return path


def _finite(table: pd.DataFrame, metric: str = METRIC) -> pd.DataFrame:
    """Finished, non-diverged runs with a finite metric (the shared diverged-run rule)."""
    if table.empty or metric not in table:  # an empty cache has no columns at all
        return pd.DataFrame(columns=["run_id", "size", "bits", "wd", "lr_mult", "seed", "status", "n_params",
                                     *PAIR_EXTRA, metric])
    vals = pd.to_numeric(table[metric], errors="coerce")
    t = table[(table["status"] == "ok") & np.isfinite(vals)].copy()
    t[metric] = vals[t.index].astype(float)
    t["wd"] = t["wd"].astype(float).round(6)
    return t


def _threshold(claims: dict, design: str, key: str, default):
    """A decision parameter from claims.toml, found by the design it applies to."""
    for c in claims.values():
        if isinstance(c, dict) and c.get("design") == design and key in c.get("thresholds", {}):
            return c["thresholds"][key]
    return default


def _pairs(t: pd.DataFrame, col: str, a, b, value: str = METRIC) -> pd.DataFrame:
    """Rows of `t` with col == a joined to those with col == b on every other run factor."""
    keys = [k for k in ("size", "bits", "wd", "lr_mult", "seed", *PAIR_EXTRA) if k in t and k != col]
    left = t[t[col] == a].set_index(keys)
    right = t[t[col] == b].set_index(keys)
    out = pd.DataFrame({"a": left[value], "b": right[value]}).dropna()
    out["n_params"] = left["n_params"].reindex(out.index)
    return out.reset_index()


# --- final val_bpb_q vs warmdown ------------------------------------------------------


def wd_figure(table: pd.DataFrame, design: str, params: dict[str, int], out_dir: Path, note: str = "") -> Plot:
    label = WD_DESIGNS.get(design, design)
    name = f"wd_{design}"
    heading = f"{label}: final val_bpb_q vs warmdown fraction"
    caption = ("Mean ± std over seeds of val_bpb_q (after the export round trip at the run's own "
               "bit-width); one panel per size, one line per bit-width; each warmdown at its best "
               "lr_mult (lowest mean, as the claims rank them); ★ marks each line's lowest mean; a hollow "
               "marker is the value of a single finite seed. "
               "Diverged runs are excluded and counted in the panel title. Lines are nudged "
               "sideways so error bars do not overlap.")
    t = _finite(table)
    if t.empty:
        return Plot(name, heading, "", caption, skipped=f"design {design} has no finished runs in the cache")
    panel_keys = ["size"] + [k for k in ("steps", "optimizer", "wd_shape") if t[k].nunique() > 1]
    arms = t.groupby(panel_keys + ["bits", "wd", "lr_mult"])[METRIC].agg(["mean", "std", "count"]).reset_index()
    # Best LR per warmdown; an arm with < 2 finite seeds ranks after every arm with 2+.
    arms["thin"] = arms["count"] < 2
    best = (arms.sort_values(["thin", "mean"]).groupby(panel_keys + ["bits", "wd"], as_index=False).first())
    panels = sorted(best.groupby(panel_keys).groups, key=lambda k: (params.get(k if isinstance(k, str) else k[0], 0), k))
    ncols = min(len(panels), 3)
    nrows = math.ceil(len(panels) / ncols)
    fig = _figure(max(6.0, 4.4 * ncols), 3.5 * nrows + 0.9)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    wds = sorted(t["wd"].unique())
    nudge = 0.012 * (max(wds) - min(wds) or 1.0)
    argmins, same_per_panel = [], []
    for ax, key in zip(axes, panels):
        key = key if isinstance(key, tuple) else (key,)
        sel = (best[panel_keys] == pd.Series(key, index=panel_keys)).all(axis=1)
        p = best[sel]
        bits_here = sorted(p["bits"].unique(), reverse=True)
        mins = []
        for i, bits in enumerate(bits_here):
            line = p[p["bits"] == bits].sort_values("wd")
            lab, colour, marker = _style(bits)
            x = line["wd"].to_numpy() + (i - (len(bits_here) - 1) / 2) * nudge
            ax.errorbar(x, line["mean"], yerr=line["std"].fillna(0.0), color=colour, marker=marker, ms=5,
                        capsize=3, lw=1.5, label=lab)
            thin = line["thin"].to_numpy()
            if thin.any():  # a mean of one seed has no error bar: draw it hollow so it does not pass for one
                ax.plot(x[thin], line["mean"][thin], ls="none", marker=marker, ms=6, mfc="white", mec=colour,
                        zorder=4)
            if len(line) < 2:
                continue  # one warmdown so far: nothing to rank, no optimum to mark
            # As the shared diverged-run rule: a warmdown with < 2 finite seeds ranks last.
            j = int(np.argmin(np.where(thin & ~thin.all(), np.inf, line["mean"].to_numpy())))
            ax.plot(x[j], line["mean"].iloc[j], marker="*", ms=15, color=colour, mec="black", mew=0.6, zorder=5)
            mins.append(float(line["wd"].iloc[j]))
        argmins += mins
        if len(mins) > 1:  # "same optimum for every bit-width" needs two bit-widths to compare
            same_per_panel.append(len(set(mins)) == 1)
        in_panel = (table[panel_keys[0]] == key[0])
        for k, v in zip(panel_keys[1:], key[1:]):
            in_panel &= table[k] == v
        n_div = int((table.loc[in_panel, "status"] == "diverged").sum())
        seeds = t.loc[(t[panel_keys] == pd.Series(key, index=panel_keys)).all(axis=1), "seed"].nunique()
        sub = f"{key[0]} ({fmt_count(params.get(key[0]))} params)" + "".join(
            f", {k} {v}" for k, v in zip(panel_keys[1:], key[1:]))
        sub += f"\n{seeds} seeds" + (f", {n_div} diverged (excluded)" if n_div else "")
        ax.set_title(sub, fontsize=10)
        ax.set_xticks(wds)
        ax.set_xlabel("warmdown fraction (share of steps)")
        ax.set_ylabel("final val_bpb_q (bits/byte)")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8, title="bit-width", title_fontsize=8)
    if not argmins:
        return Plot(name, heading, "", caption, skipped=f"design {design} has finished runs at one warmdown only")
    mode = max(set(argmins), key=argmins.count)
    k = argmins.count(mode)
    if same_per_panel:
        same = (f"the optimum is the same for every bit-width in {sum(same_per_panel)}/{len(same_per_panel)} "
                "panels")
    else:
        same = "only one bit-width has finished runs, so none to compare"
    title = f"{label}: lowest val_bpb_q at warmdown {mode:g} in {k}/{len(argmins)} (bit-width, size) lines; {same}"
    _suptitle(fig, title, note)
    return Plot(name, heading, title, caption, _save(fig, out_dir, name))


# --- INT6 penalty vs size ---------------------------------------------------------------


def penalty_figure(fit_table: pd.DataFrame, held_table: pd.DataFrame, claims: dict, out_dir: Path,
                   note: str = "") -> Plot:
    import scipy.stats as sps
    import statsmodels.api as sm

    design = "+".join(PENALTY_DESIGNS)
    q_bits = int(_threshold(claims, design, "quant_bits", 6))
    r_bits = int(_threshold(claims, design, "ref_bits", 16))
    level = float(_threshold(claims, design, "pi_level", 0.95))
    min_fit = int(_threshold(claims, design, "min_fit_sizes", 3))
    name = "int6_penalty_vs_size"
    heading = f"{bits_label(q_bits)} penalty vs model size (log-linear law, held-out sizes)"
    caption = (f"Penalty = val_bpb_q({bits_label(q_bits)}) − val_bpb_q({bits_label(r_bits)}) per run pair matched "
               f"on size, warmdown, lr_mult and seed, at the (wd, lr_mult) settings every held-out size shares "
               f"with the fit. Line: OLS penalty ~ ln(n_params) on the per-run penalties of the {PENALTY_DESIGNS[0]} "
               f"sizes; shaded: its {level:.0%} prediction interval for one new run. Held-out sizes "
               f"({PENALTY_DESIGNS[1]}): black bars are the {level:.0%} prediction interval for the mean of their "
               f"k runs (the interval the claim is decided on), diamonds the observed means.")
    fit = _pairs(_finite(fit_table)[lambda d: d["bits"].isin([q_bits, r_bits])], "bits", q_bits, r_bits)
    held = _pairs(_finite(held_table)[lambda d: d["bits"].isin([q_bits, r_bits])], "bits", q_bits, r_bits)
    if fit.empty:
        return Plot(name, heading, "", caption,
                    skipped=f"no matched {bits_label(q_bits)}/{bits_label(r_bits)} pairs in design {PENALTY_DESIGNS[0]}")
    for d in (fit, held):
        d["penalty"] = d["a"] - d["b"]
    if not held.empty:
        shared = set.intersection(*(set(zip(g["wd"], g["lr_mult"])) for _, g in held.groupby("size")))
        shared &= set(zip(fit["wd"], fit["lr_mult"]))
        if shared:
            keep = lambda d: d[[s in shared for s in zip(d["wd"], d["lr_mult"])]]  # noqa: E731
            fit, held = keep(fit), keep(held)
    fig = _figure(10.5, 5.2)
    ax = fig.subplots()
    ax.set_xscale("log")
    fmeans = fit.groupby("size").agg(n=("n_params", "first"), m=("penalty", "mean"))
    ax.scatter(fit["n_params"], fit["penalty"], s=14, color="#1f77b4", alpha=0.45, label="fit sizes: one run pair")
    ax.scatter(fmeans["n"], fmeans["m"], s=50, color="#1f77b4", edgecolor="black", zorder=4, label="fit sizes: mean")
    all_n = pd.concat([fit["n_params"], held["n_params"]]).astype(float)
    n_inside = n_held = 0
    if fmeans["n"].nunique() >= min_fit:
        ols = sm.OLS(fit["penalty"].to_numpy(float), sm.add_constant(np.log(fit["n_params"].to_numpy(float)))).fit()
        xs = np.geomspace(all_n.min() / 1.3, all_n.max() * 1.3, 200)
        frame = ols.get_prediction(sm.add_constant(np.log(xs), has_constant="add")).summary_frame(alpha=1 - level)
        a, b = ols.params
        ax.plot(xs, frame["mean"], color="black", lw=1.5, label=f"OLS fit: {a:.3f} {'+' if b >= 0 else '−'} {abs(b):.4f}·ln(n_params)")
        ax.fill_between(xs, frame["obs_ci_lower"], frame["obs_ci_upper"], color="#1f77b4", alpha=0.15,
                        label=f"{level:.0%} prediction interval, one new run")
        t_crit = float(sps.t.ppf(1 - (1 - level) / 2, ols.df_resid))
        for size, g in held.groupby("size"):
            n0, k = float(g["n_params"].iloc[0]), len(g)
            pred = ols.get_prediction(np.array([[1.0, math.log(n0)]]))
            mu, se_mean = float(pred.predicted_mean[0]), float(pred.se_mean[0])
            half = t_crit * math.sqrt(se_mean**2 + ols.scale / k)
            ax.errorbar([n0], [mu], yerr=[[half], [half]], color="black", capsize=7, lw=1.8, fmt="none",
                        label=f"{level:.0%} PI for a held-out mean of k runs" if n_held == 0 else None)
            n_held += 1
            n_inside += bool(mu - half <= g["penalty"].mean() <= mu + half)
        fit_note = f"a log-linear fit on {len(fmeans)} sizes puts {n_inside}/{n_held} held-out sizes inside their {level:.0%} PI"
    else:
        fit_note = f"only {len(fmeans)} fit size(s): too few for a fit (needs {min_fit})"
    if not held.empty:
        hmeans = held.groupby("size").agg(n=("n_params", "first"), m=("penalty", "mean"))
        ax.scatter(held["n_params"], held["penalty"], s=22, marker="^", facecolor="none", edgecolor="#d62728",
                   label="held-out sizes: one run pair")
        ax.scatter(hmeans["n"], hmeans["m"], s=70, marker="D", color="#d62728", edgecolor="black", zorder=5,
                   label="held-out sizes: mean")
    else:
        fit_note += " (no held-out size has runs yet)"
        hmeans = fmeans.iloc[0:0]
    for size, row in pd.concat([fmeans, hmeans]).iterrows():
        ax.annotate(size, (row["n"], row["m"]), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.axhline(0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("parameters (count, log scale)")
    ax.set_ylabel(f"{bits_label(q_bits)} penalty: Δ val_bpb_q vs {bits_label(r_bits)} (bits/byte)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the band fills the axes
    title = f"{bits_label(q_bits)} penalty vs size: {fit_note}"
    _suptitle(fig, title, note)
    return Plot(name, heading, title, caption, _save(fig, out_dir, name))


# --- INT4 paired differences ---------------------------------------------------------------


def int4_figure(table: pd.DataFrame, profile: Profile, params: dict[str, int], claims: dict, out_dir: Path,
                note: str = "") -> Plot:
    import scipy.stats as sps

    bits = int(_threshold(claims, INT4_DESIGN, "bits", 4))
    short = float(_threshold(claims, INT4_DESIGN, "wd_short", 0.10))
    long_ = float(_threshold(claims, INT4_DESIGN, "wd_long", 0.33))
    level = float(_threshold(claims, INT4_DESIGN, "ci_level", 0.95))
    name = "int4_wd_difference"
    heading = f"{bits_label(bits)}: paired difference wd {short:g} − wd {long_:g} per size"
    caption = (f"d = val_bpb_q(wd {short:g}) − val_bpb_q(wd {long_:g}) per seed, paired on seed and lr_mult "
               f"({bits_label(bits)} runs of design {INT4_DESIGN}); small dots: one seed each; diamond and bar: "
               f"mean and {level:.0%} t-interval. Above zero: wd {long_:g} is better. Pairs with a diverged run are "
               "dropped.")
    t = _finite(table)
    t = t[t["bits"] == bits] if not t.empty else t
    d = _pairs(t, "wd", round(short, 6), round(long_, 6)) if not t.empty else pd.DataFrame()
    if d.empty:
        return Plot(name, heading, "", caption,
                    skipped=f"design {INT4_DESIGN} has no finished {bits_label(bits)} pairs (wd {short:g} and {long_:g})")
    d["d"] = d["a"] - d["b"]
    sizes = sorted(d["size"].unique(), key=lambda s: params.get(s, 0))
    fig = _figure(max(5.5, 1.5 * len(sizes) + 2.5), 4.8)
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # fixed jitter: the same cache gives the same picture
    verdicts: dict[str, list[str]] = {"above": [], "below": [], "straddles": []}
    for i, size in enumerate(sizes):
        v = d.loc[d["size"] == size, "d"].to_numpy(float)
        ax.scatter(i - 0.12 + rng.uniform(-0.08, 0.08, len(v)), v, s=16, color="#9467bd", alpha=0.6,
                   label="one seed" if i == 0 else None)
        m = float(v.mean())
        half = float(sps.t.ppf(1 - (1 - level) / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan
        ax.errorbar([i + 0.15], [m], yerr=[[half], [half]] if math.isfinite(half) else None, fmt="D", color="black",
                    ms=7, capsize=6, lw=1.6, label=f"mean ± {level:.0%} t-interval" if i == 0 else None)
        if math.isfinite(half) and m - half > 0:
            verdicts["above"].append(size)
        elif math.isfinite(half) and m + half < 0:
            verdicts["below"].append(size)
        else:
            verdicts["straddles"].append(size)
    ax.axhline(0, color="black", lw=1)
    role_of = {s: r.removeprefix("int4_") for r, ss in profile.roles.items() for s in ss if r.startswith("int4_")}
    n_seeds = d.groupby("size").size()
    ax.set_xticks(range(len(sizes)))
    ax.set_xticklabels([f"{s}\n{fmt_count(params.get(s))} params\n{n_seeds[s]} seeds" + (f", {role_of[s]}" if s in role_of else "")
                        for s in sizes], fontsize=8)
    ax.set_xlabel("model size")
    ax.set_ylabel(f"d = val_bpb_q(wd {short:g}) − val_bpb_q(wd {long_:g})\n(bits/byte; > 0: wd {long_:g} better)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    parts = []
    if verdicts["above"]:
        parts.append(f"wd {long_:g} better at {', '.join(verdicts['above'])}")
    if verdicts["below"]:
        parts.append(f"wd {short:g} better at {', '.join(verdicts['below'])}")
    if verdicts["straddles"]:
        parts.append(f"no clear preference at {', '.join(verdicts['straddles'])}")
    title = f"{bits_label(bits)} warmdown {short:g} vs {long_:g} ({level:.0%} CI vs 0): " + "; ".join(parts)
    _suptitle(fig, title, note)
    return Plot(name, heading, title, caption, _save(fig, out_dir, name))


# --- grid distances (mechanism probe) -------------------------------------------------------


def grid_figure(records: list[dict], claims: dict, out_dir: Path, note: str = "") -> Plot:
    q_bits = int(_threshold(claims, PROBE_DESIGN, "quant_bits", 6))
    r_bits = int(_threshold(claims, PROBE_DESIGN, "ref_bits", 16))
    low = float(_threshold(claims, PROBE_DESIGN, "band_low", 0.90))
    high = float(_threshold(claims, PROBE_DESIGN, "band_high", 1.15))
    name = "grid_distance_prewd"
    heading = f"Distance to the INT6 grid before the warmdown: {bits_label(r_bits)} vs {bits_label(q_bits)}-QAT"
    caption = ("Per-matrix mean distance |w/s − round(w/s)| to the INT6 grid (s = the per-row INT6 scale) at the "
               "pre_warmdown probe, pooled over the matrices and seeds of runs paired on size, warmdown, lr_mult "
               "and seed (design mechanism_probe). 0 = on the grid, 0.25 = uniform within a grid cell. Dashed: "
               f"mean per bit-width; R = ratio of the means (the claim's band is [{low:g}, {high:g}]).")
    by_bits: dict[int, dict[tuple, list[float]]] = {q_bits: {}, r_bits: {}}
    for rec in records:
        s, r = rec["spec"], rec["result"]
        if r.get("status") != "ok" or s["bits"] not in by_bits:
            continue
        pre = next((p for p in r.get("grid_probes") or [] if p.get("label") == "pre_warmdown"), None)
        if pre and pre.get("per_matrix"):
            key = tuple(s[k] for k in ("size", "wd", "lr_mult", "seed", *PAIR_EXTRA))
            by_bits[s["bits"]][key] = [float(v["int6"]) for v in pre["per_matrix"].values()]
    paired = sorted(set(by_bits[q_bits]) & set(by_bits[r_bits]))
    if not paired:
        return Plot(name, heading, "", caption,
                    skipped=f"design {PROBE_DESIGN} has no finished {bits_label(q_bits)}/{bits_label(r_bits)} run pairs "
                            "with a pre_warmdown probe")
    vals = {b: np.concatenate([by_bits[b][k] for k in paired]) for b in (r_bits, q_bits)}
    # The claim's ratio is of run means (each run's mean over its matrices), matched pairs.
    run_mean = {b: float(np.mean([np.mean(by_bits[b][k]) for k in paired])) for b in (r_bits, q_bits)}
    ratio = run_mean[q_bits] / run_mean[r_bits] if run_mean[r_bits] > 0 else math.nan
    fig = _figure(7.5, 4.6)
    ax = fig.subplots()
    lo = min(v.min() for v in vals.values())
    hi = max(v.max() for v in vals.values())
    bins = np.linspace(min(lo, 0.25) - 0.005, max(hi, 0.25) + 0.005, 31)
    for b in (r_bits, q_bits):
        lab, colour, _ = _style(b)
        qat = "-QAT" if b != 16 else ""
        ax.hist(vals[b], bins=bins, color=colour, alpha=0.45, edgecolor=colour,
                label=f"{lab}{qat}: {len(vals[b])} matrices, mean {vals[b].mean():.4f}")
        ax.axvline(vals[b].mean(), color=colour, ls="--", lw=1.6)
    ax.axvline(0.25, color="grey", ls=":", lw=1.2, label="0.25 = uniform within a grid cell")
    ax.set_xlabel("distance to the INT6 grid (grid steps)")
    ax.set_ylabel("matrices (count)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    lab_q = bits_label(q_bits)
    if ratio < low:
        msg = f"{lab_q}-QAT weights sit closer to the grid (snapping)"
    elif ratio > high:
        msg = f"{lab_q}-QAT weights sit further from the grid"
    else:
        msg = f"{lab_q}-QAT weights are about as far from the grid as {bits_label(r_bits)}: no snapping"
    title = f"Before the warmdown, R = {lab_q}/{bits_label(r_bits)} mean grid distance = {ratio:.3f} over {len(paired)} pairs: {msg}"
    _suptitle(fig, title, note)
    return Plot(name, heading, title, caption, _save(fig, out_dir, name))


# --- loss curves ---------------------------------------------------------------------


def loss_figure(records: list[dict], params: dict[str, int], out_dir: Path, note: str = "") -> Plot:
    name = f"loss_curves_{CURVE_DESIGN}"
    heading = "Training-loss curves of a few Phase 2 cells"
    caption = ("Training loss (one batch per point) of the smallest Phase 2 size, first seed, lr_mult closest to 1, "
               "one line per warmdown fraction; the dashed line of the same colour is the step its warmdown starts. "
               "Top: the loss, zoomed on the last 80 % of training. Runs of one seed see the same batches, so "
               "their curves coincide until the earliest warmdown starts; the bottom row subtracts the curve of "
               "the shortest warmdown, which removes that shared batch noise and shows what each schedule buys.")
    ok = [r for r in records if r["result"].get("loss_curve")]
    if not ok:
        return Plot(name, heading, "", caption, skipped=f"design {CURVE_DESIGN} has no runs with a loss curve")
    size = min({r["spec"]["size"] for r in ok}, key=lambda s: (params.get(s, 0), s))
    ok = [r for r in ok if r["spec"]["size"] == size]
    seed = min(r["spec"]["seed"] for r in ok)
    lr = min({r["spec"]["lr_mult"] for r in ok}, key=lambda v: abs(math.log(v)))
    ok = [r for r in ok if r["spec"]["seed"] == seed and r["spec"]["lr_mult"] == lr]
    present = sorted({r["spec"]["bits"] for r in ok}, reverse=True)
    bits_shown = [b for b in (16, 6) if b in present] or present[:: max(1, len(present) - 1)][:2]
    fig = _figure(5.2 * len(bits_shown) + 0.8, 6.6)
    axes = fig.subplots(2, len(bits_shown), squeeze=False, sharex=True, sharey="row", height_ratios=[3, 2])
    wds = sorted({r["spec"]["wd"] for r in ok})
    colours = dict(zip(wds, (f"C{i}" for i in range(10))))
    tail = []
    unit = "nats/byte" if ok[0]["spec"].get("tokenizer") == "byte" else "nats/token"
    for col, bits in enumerate(bits_shown):
        top, bottom = axes[0, col], axes[1, col]
        runs = sorted((r for r in ok if r["spec"]["bits"] == bits), key=lambda r: r["spec"]["wd"])
        ref_wd = runs[0]["spec"]["wd"]
        ref = {int(s): v for s, v in runs[0]["result"]["loss_curve"]}
        for rec in runs:
            spec = RunSpec.from_dict(rec["spec"])
            curve = np.asarray(rec["result"]["loss_curve"], dtype=float)
            div = rec["result"].get("status") == "diverged"
            colour = colours[spec.wd]
            top.plot(curve[:, 0], curve[:, 1], color=colour, lw=1.2,
                     label=f"wd {spec.wd:g}" + (" (diverged)" if div else ""))
            diff = np.array([[s, v - ref[int(s)]] for s, v in curve if int(s) in ref])
            if len(diff):
                bottom.plot(diff[:, 0], diff[:, 1], color=colour, lw=1.2)
            for ax in (top, bottom):
                ax.axvline(spec.warmdown_start, color=colour, ls="--", lw=1.0)
            late = curve[curve[:, 0] >= 0.2 * spec.steps, 1]
            tail += list(late[np.isfinite(late)])
        top.set_title(f"{bits_label(bits)}", fontsize=10)
        bottom.axhline(0, color="black", lw=0.8)
        bottom.set_xlabel("training step")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
        if col == 0:
            top.set_ylabel(f"training loss ({unit})")
            bottom.set_ylabel(f"loss − loss(wd {ref_wd:g})\n({unit}; < 0: lower)")
    if tail:
        pad = 0.05 * (max(tail) - min(tail) or 1.0)
        axes[0, 0].set_ylim(min(tail) - pad, max(tail) + pad)
    axes[0, 0].legend(fontsize=8, title="warmdown (dashed: its start)", title_fontsize=8)
    title = (f"Training loss of {size} ({fmt_count(params.get(size))} params), seed {seed}, lr ×{lr:g}, per warmdown "
             "fraction: curves split where each warmdown starts (dashed)")
    _suptitle(fig, title, note)
    return Plot(name, heading, title, caption, _save(fig, out_dir, name))


# --- all figures -------------------------------------------------------------------------


def draw_all(designs: dict, profile: Profile, params: dict[str, int], claims: dict, out_dir: Path) -> list[Plot]:
    """Every figure of the report, in page order; a figure that fails is reported, not fatal."""
    out_dir.mkdir(parents=True, exist_ok=True)
    empty = pd.DataFrame()

    def table(d):
        return designs[d].table if d in designs else empty

    def records(d):
        return list(designs[d].records.values()) if d in designs else []

    def note(*ds):
        parts = [f"partial: {len(designs[d].records)}/{len(designs[d].design.specs)} runs of {d}"
                 for d in ds if d in designs and designs[d].missing]
        return "; ".join(parts)

    p_fit, p_held = PENALTY_DESIGNS
    jobs: list[tuple[str, str, Callable[[], Plot]]] = [
        (f"wd_{d}", d, (lambda d=d: wd_figure(table(d), d, params, out_dir, note(d)))) for d in WD_DESIGNS
    ]
    jobs += [
        ("int6_penalty_vs_size", p_fit,
         lambda: penalty_figure(table(p_fit), table(p_held), claims, out_dir, note(p_fit, p_held))),
        ("int4_wd_difference", INT4_DESIGN,
         lambda: int4_figure(table(INT4_DESIGN), profile, params, claims, out_dir, note(INT4_DESIGN))),
        ("grid_distance_prewd", PROBE_DESIGN,
         lambda: grid_figure(records(PROBE_DESIGN), claims, out_dir, note(PROBE_DESIGN))),
        (f"loss_curves_{CURVE_DESIGN}", CURVE_DESIGN,
         lambda: loss_figure(records(CURVE_DESIGN), params, out_dir, note(CURVE_DESIGN))),
    ]
    plots = []
    for name, design, job in jobs:
        stale = out_dir / f"{name}.png"
        if stale.exists():  # a figure skipped this time must not survive from an earlier report
            stale.unlink()
        if design not in designs:
            plots.append(Plot(name, name, "", "", skipped=f"profile {profile.name!r} has no design {design!r}"))
            continue
        try:
            plot = job()
            n = note(*([p_fit, p_held] if design == p_fit and name.startswith("int6") else [design]))
            plots.append(replace(plot, caption=f"{plot.caption} Drawn from a partly filled cache ({n}).")
                         if n and plot.path else plot)
        except Exception as e:  # one broken figure must not cost the verdict table
            log.exception("figure %s failed", name)
            plots.append(Plot(name, name, "", "", skipped=f"figure failed: {type(e).__name__}: {e}"))
    return plots

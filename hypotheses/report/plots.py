"""The report's figures: one matplotlib PNG per question, each titled with its one message.

Owns the drawing only. Every number a figure states about a claim (an optimum, a fitted
line, a mean with its interval, a ratio) is read from that claim's verdict rows, i.e. from
what its decider computed (``stat_*`` keys; see each decider's docstring), never recomputed
here: a figure cannot tell a different story from the verdict beside it. The cache's runs
enter only as data (per-seed points, histograms, loss curves). Where a row lacks the
numbers (an error, an inconclusive verdict that stopped early), the figure says so.

Every figure records the arms it tells apart (``Plot.arms``), so a test can hold them to the
arms its verdict compares. ``overview_figure`` draws every test case at once, against its
claim's region. Which figures a claim gets is the small table ``FIGURES`` (claim ids -> drawing function);
each function takes the claims' designs and thresholds from their ``Claim`` records, so no
design name is written here. Figures are built on ``matplotlib.figure.Figure`` with the Agg
canvas, never pyplot, so making a report changes no global backend state.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from engine.design import Profile
from engine.spec import RunSpec
from hypotheses.claims import Claim
from hypotheses.groupstats import ContrastStats, HeldOutStats, SizeDifference, read_optima, read_settings
from hypotheses.report.inputs import (
    ERROR,
    OUTCOMES,
    ClaimSummary,
    DesignData,
    Region,
    as_float,
    fmt_bpb,
    fmt_ci,
    fmt_count,
    fmt_pct,
    outcome_counts,
    parse_region,
)
from hypotheses.verdict import FRAGILE_BELOW, ArmTable, fmt_bits

log = logging.getLogger(__name__)

DPI = 110
# Factors besides (size, bits, warmdown, lr_mult, seed) that must match inside a pair.
PAIR_EXTRA = ("optimizer", "warmdown_shape", "steps", "schedule")
PAIR_KEYS = ("size", "bits", "warmdown", "lr_mult", "seed", *PAIR_EXTRA)
WD_DECIMALS = 6

BITS_STYLE = {  # bits -> (label, colour, marker): one look per precision across figures
    16: ("FP16", "#1f77b4", "o"),
    8: ("INT8", "#2ca02c", "s"),
    6: ("INT6", "#d62728", "^"),
    5: ("INT5", "#ff7f0e", "v"),
    4: ("INT4", "#9467bd", "D"),
    3: ("INT3", "#8c564b", "P"),  # the tiny profile's stand-in for INT6 (its [verdicts.bit_substitution])
}
OUTCOME_COLOUR = {"reproduced": "#2e7d32", "contradicted": "#c62828", "inconclusive": "#b8860b"}
REGION_COLOUR = "#2e7d32"


@dataclass(frozen=True)
class Plot:
    name: str  # plots/<name>.png; HTML anchor plot-<name>
    heading: str  # what the figure is
    title: str  # its message (the figure's suptitle); empty when skipped
    caption: str  # how to read it
    path: Path | None = None  # None when skipped
    skipped: str = ""  # why it was skipped
    claims: tuple[str, ...] = ()
    numbers: dict = field(default_factory=dict)  # what it read from the verdict rows, by cell
    # The arms the figure tells apart, by panel or test case: what its arm tests compare with
    # the arms the verdict compares (a pooled pair of arms shows up here as one label).
    arms: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class FigureInput:
    """What one figure may draw from: its claims, their decided rows, the cache's runs."""

    name: str
    claims: list[Claim]
    rows: dict[str, list[dict]]  # claim id -> rows with an outcome (reproduced/contradicted/inconclusive)
    n_errors: dict[str, int]  # claim id -> error rows (no numbers)
    designs: dict[str, DesignData]
    profile: Profile
    params: dict[str, int]
    out_dir: Path
    note: str = ""  # "partial: 5/18 runs of D" when a design is incomplete

    def table(self, design: str) -> pd.DataFrame:
        return self.designs[design].table if design in self.designs else pd.DataFrame()

    def records(self, design: str) -> list[dict]:
        return list(self.designs[design].records.values()) if design in self.designs else []

    def claim_rows(self, claim: Claim) -> list[dict]:
        return self.rows.get(claim.id, [])

    def missing_numbers(self, claim: Claim, what: str) -> str:
        """Why a claim's figure has no decider numbers, in words."""
        n_err = self.n_errors.get(claim.id, 0)
        n_rows = len(self.claim_rows(claim))
        parts = [f"no {claim.id} verdict row carries {what}"]
        if n_err:
            parts.append(f"{n_err} error row(s)")
        if n_rows:
            reasons = sorted({str(r.get("reason") or r.get("verdict")) for r in self.claim_rows(claim)})
            parts.append(f"{n_rows} row(s) without them: {'; '.join(reasons)}")
        if not n_err and not n_rows:
            parts.append("no verdicts for this profile")
        return " (".join([parts[0], ", ".join(parts[1:]) + ")"]) if len(parts) > 1 else parts[0]


# --- shared helpers -----------------------------------------------------------------------


def bits_label(bits: int) -> str:
    return _style(bits)[0]


def _style(bits: int) -> tuple[str, str, str]:
    return BITS_STYLE.get(int(bits), (fmt_bits(bits), "#7f7f7f", "X"))  # filled: figures draw hollow markers too


def stat(row: dict, key: str) -> float | None:
    return as_float(row.get(f"stat_{key}"))


def stat_text(row: dict, key: str) -> str:
    v = row.get(f"stat_{key}")
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _keyed(row: dict, prefix: str) -> dict[float, float | None]:
    """{wd: value} of the stats named ``<prefix><wd>`` (e.g. mean_wd0.33)."""
    out = {}
    for k, v in row.items():
        if k.startswith(f"stat_{prefix}"):
            try:
                out[round(float(k[len(prefix) + 5:]), WD_DECIMALS)] = as_float(v)
            except ValueError:
                continue
    return out


def counts_text(rows: list[dict]) -> str:
    c = outcome_counts([str(r.get("verdict")) for r in rows])
    return ", ".join(f"{n} {k}" for k, n in c.items() if n) or "no verdict"


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


def _finite(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Finished, non-diverged runs with a finite metric (diverged runs are never plotted)."""
    if table.empty or metric not in table:  # an empty cache has no columns at all
        # each column once: a repeated "size" made pd.concat with a filled design fail (C6, partial cache)
        return pd.DataFrame(columns=list(dict.fromkeys(["run_id", "size", "status", "n_params", *PAIR_KEYS, metric])))
    vals = pd.to_numeric(table[metric], errors="coerce")
    t = table[(table["status"] == "ok") & np.isfinite(vals)].copy()
    t[metric] = vals[t.index].astype(float)
    t["warmdown"] = t["warmdown"].astype(float).round(WD_DECIMALS)
    return t


def _pairs(t: pd.DataFrame, col: str, a, b, value: str) -> pd.DataFrame:
    """One row per seed present in both arms col == a and col == b (col: 'bits' or 'warmdown'),
    matched on every other run factor, with the pairing the deciders use: the verdict's arm
    table (``ArmTable``) of each (size, optimiser, shape, steps, schedule) slice."""
    slice_keys = [k for k in ("size", *PAIR_EXTRA) if k in t]
    out = []
    for key, g in t.groupby(slice_keys, dropna=False, sort=True):
        arms = ArmTable(g.assign(finite=True), value)
        n_params = g["n_params"].iloc[0] if "n_params" in g else None
        for (bits, wd, lr), left in sorted(arms.values.items()):
            if (bits if col == "bits" else wd) != a:
                continue
            right = arms.at(b, wd, lr) if col == "bits" else arms.at(bits, b, lr)
            for seed in sorted(left.keys() & right.keys()):
                out.append({**dict(zip(slice_keys, key)), "bits": bits, "warmdown": wd, "lr_mult": lr, "seed": seed,
                            "a": left[seed], "b": right[seed], "n_params": n_params})
    return pd.DataFrame(out, columns=[*slice_keys, "bits", "warmdown", "lr_mult", "seed", "a", "b", "n_params"])


def _size_order(sizes, params: dict[str, int]) -> list[str]:
    return sorted(dict.fromkeys(sizes), key=lambda s: (params.get(s, 0), str(s)))


def _cell_label(row: dict) -> str:
    frag = " FRAGILE" if str(row.get("fragile")).strip() in ("1", "1.0", "True") else ""
    return f"{row.get('verdict')}{frag}"


# --- C1: val_bpb_q vs warmdown, the decider's optimum -------------------------------------


def wd_figure(fi: FigureInput) -> Plot:
    claim = fi.claims[0]
    design, metric = claim.designs[0], str(claim.thresholds.get("metric", "val_bpb_q"))
    expected = float(claim.thresholds.get("expected_wd", math.nan))
    heading = f"{claim.id}: final {metric} vs warmdown fraction, the optimum as the decider reported it"
    caption = (f"One panel per size, one line per bit-width (design {design}). Line: the decider's mean {metric} of "
               f"each warmdown at its best lr_mult (stats mean_wd*, best_lr_wd*); ★: the warmdown the decider "
               f"reported as optimal (stat optimal_wd), not re-ranked here; dots: the individual seeds of the cache "
               f"at that warmdown and LR (diverged runs excluded, counted in the panel title). The legend gives each "
               f"cell's verdict, which rests on the simultaneous bounds of mean(wd {expected:g}) − mean(best other), "
               f"not on the bare optimum.")
    cells = []
    for row in fi.claim_rows(claim):
        bits, size = stat(row, "bits"), row.get("stat_size")
        means = {w: m for w, m in _keyed(row, "mean_wd").items() if m is not None}
        if bits is None or not size or not means:
            continue
        cells.append((int(bits), str(size), means, _keyed(row, "best_lr_wd"), stat(row, "optimal_wd"), row))
    if not cells:
        return Plot(fi.name, heading, "", caption, skipped=fi.missing_numbers(claim, "per-warmdown means"))
    t = _finite(fi.table(design), metric)
    several_lrs = len(t) > 0 and t["lr_mult"].nunique() > 1
    sizes = _size_order([c[1] for c in cells], fi.params)
    ncols = min(len(sizes), 3)
    nrows = math.ceil(len(sizes) / ncols)
    fig = _figure(max(6.0, 4.4 * ncols), 3.6 * nrows + 1.0)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    wds = sorted({w for c in cells for w in c[2]})
    nudge = 0.012 * (max(wds) - min(wds) or 1.0)
    numbers, optima, arms = {}, [], {}
    for ax, size in zip(axes, sizes):
        here = sorted((c for c in cells if c[1] == size), key=lambda c: -c[0])
        for i, (bits, _, means, best_lr, opt, row) in enumerate(here):
            lab, colour, marker = _style(bits)
            shift = (i - (len(here) - 1) / 2) * nudge
            xs = sorted(w for w, m in means.items() if math.isfinite(m))
            ax.plot([w + shift for w in xs], [means[w] for w in xs], color=colour, marker=marker, ms=5, lw=1.5,
                    label=f"{lab}: {_cell_label(row)}")
            for w in xs:  # the seeds behind each mean: raw data at the decider's LR
                lr = best_lr.get(w)
                if lr is None or t.empty:
                    continue
                sel = t[(t["bits"] == bits) & (t["size"] == size) & (t["warmdown"] == w) & np.isclose(t["lr_mult"], lr)]
                ax.scatter(np.full(len(sel), w + shift), sel[metric], s=12, marker=marker, facecolor="none",
                           edgecolor=colour, alpha=0.6, lw=0.8)
            if opt is not None and round(opt, WD_DECIMALS) in means:
                y = means[round(opt, WD_DECIMALS)]
                ax.plot(opt + shift, y, marker="*", ms=15, color=colour, mec="black", mew=0.6, zorder=5)
                lr = best_lr.get(round(opt, WD_DECIMALS))
                if several_lrs and lr is not None:
                    ax.annotate(f"lr ×{lr:g}", (opt + shift, y), textcoords="offset points", xytext=(6, -10),
                                fontsize=7, color=colour)
                optima.append(opt)
            arms[str(row.get("cell", f"{bits}-{size}"))] = tuple(f"wd {w:g}" for w in xs)
            numbers[str(row.get("cell", f"{bits}-{size}"))] = {
                "optimal_wd": opt, "best_lr": best_lr.get(round(opt, WD_DECIMALS)) if opt is not None else None,
                "means": means, "verdict": row.get("verdict")}
        n_seeds = max(int(stat(c[5], "n_seeds") or 0) for c in here)
        n_div = sum(int(stat(c[5], "n_diverged") or 0) for c in here)
        ax.set_title(f"{size} ({fmt_count(fi.params.get(size))} params)\n{n_seeds} seeds"
                     + (f", {n_div} diverged (excluded)" if n_div else ""), fontsize=10)
        ax.set_xticks(wds)
        ax.set_xlabel("warmdown fraction (share of steps)")
        ax.set_ylabel(f"final {metric} (bits/byte)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="bit-width: verdict", title_fontsize=7)
    for ax in axes[len(sizes):]:
        ax.set_visible(False)
    n_at = sum(abs(o - expected) <= 1e-6 for o in optima)
    title = (f"{claim.id}: the decider's optimal warmdown is {expected:g} in {n_at}/{len(optima)} "
             f"(bit-width, size) cells; verdicts: {counts_text([c[5] for c in cells])}")
    _suptitle(fig, title, fi.note)
    return Plot(fi.name, heading, title, caption, _save(fig, fi.out_dir, fi.name), numbers=numbers, arms=arms)


# --- C2..C5: interaction contrasts ---------------------------------------------------------


def _contrasts(row: dict) -> list[ContrastStats]:
    """Every interaction contrast the row reports with its mean and both ends of its interval."""
    return [c for c in ContrastStats.read(row, "stat_").values()
            if None not in (c.mean, c.ci90_low, c.ci90_high)]


def _optima(row: dict) -> dict[str, str]:
    """group -> 'FP16 0.33 · INT6 0.1': the bare optimal warmdown per bit-width the decider reported."""
    return {g: " · ".join(f"{b} {w:g}" for b, w in by.items()) for g, by in read_optima(row, "stat_").items()}


def contrast_figure(fi: FigureInput) -> Plot:
    claim = fi.claims[0]
    ref_wd = float(claim.thresholds.get("ref_wd", 0.33))
    heading = f"{claim.id}: schedule × bit-width interaction contrasts against ±δ"
    caption = (f"Each line is one within-seed interaction contrast I(b, w) = (y(b, w) − y(b, {ref_wd:g})) − "
               f"(y(FP16, w) − y(FP16, {ref_wd:g})) of design {', '.join(claim.designs)}, as the decider computed "
               f"it (stats '<group> INT<b> wd<w>:mean / :ci90_low / :ci90_high'): dot = mean over seeds, bar = its "
               f"CI at the row's level. Shaded: the region the claim predicts (±δ). A filled dot's CI lies inside the "
               f"region. Right axis: the bare optimal warmdown per bit-width of each group (reported, not decided on).")
    rows = fi.claim_rows(claim)
    items, optima = [], {}  # items: (row, its contrast)
    for row in rows:
        optima.update(_optima(row))
        items += [(row, c) for c in _contrasts(row)]
    groups = [c.group for _, c in items]  # a contrast two rows share is named with its cell
    labels = [f"{r.get('cell')}: {c.group}" if groups.count(c.group) > 1 else c.group for r, c in items]
    if not items:
        return Plot(fi.name, heading, "", caption, skipped=fi.missing_numbers(claim, "interaction contrasts"))
    deltas = [stat(r, "delta") for r in rows if stat(r, "delta") is not None]
    delta = deltas[0] if deltas else None
    level = next((stat(r, "ci_level") for r in rows if stat(r, "ci_level") is not None), None)
    fig = _figure(9.5, 0.34 * len(items) + 2.0)
    ax = fig.subplots()
    if delta is not None:
        ax.axvspan(-delta, delta, color=REGION_COLOUR, alpha=0.12, label=f"claim's region ±δ = ±{delta:g}")
    ax.axvline(0, color="grey", lw=0.8)
    n_in, seen_bits, group_ticks = 0, set(), {}
    for i, (_, c) in enumerate(items):
        y, bits, m, lo, hi = len(items) - 1 - i, c.bits, c.mean, c.ci90_low, c.ci90_high
        lab, colour, marker = _style(bits)
        inside = delta is not None and -delta <= lo and hi <= delta
        n_in += inside
        ax.errorbar([m], [y], xerr=[[m - lo], [hi - m]], fmt=marker, color=colour, mfc=colour if inside else "white",
                    ms=6, capsize=3, lw=1.4,
                    label=f"{lab} contrast (filled: CI inside ±δ)" if bits not in seen_bits else None)
        seen_bits.add(bits)
        group_ticks.setdefault(c.cell_group, y)
    ax.set_yticks(range(len(items)))
    ax.set_yticklabels(labels[::-1], fontsize=8)
    ax.set_ylim(-0.7, len(items) - 0.3)
    right = ax.twinx()
    right.set_ylim(ax.get_ylim())
    right.set_yticks(list(group_ticks.values()))
    right.set_yticklabels([f"optimal wd: {optima.get(g, 'n/a')}" for g in group_ticks], fontsize=7)
    ax.set_xlabel("interaction contrast of final val_bpb_q (bits/byte)")
    ax.grid(alpha=0.3, axis="x")
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside lower center", ncols=4)
    ci = fmt_ci(level) if level is not None else "CI"
    band = f"±{delta:g} bpb" if delta is not None else "±δ (no δ reported)"
    title = f"{claim.id}: {n_in}/{len(items)} interaction contrasts have their {ci} inside {band}; verdict: {counts_text(rows)}"
    _suptitle(fig, title, fi.note)
    numbers = {f"{r.get('cell')}|{label}": {"mean": c.mean, "low": c.ci90_low, "high": c.ci90_high}
               for (r, c), label in zip(items, labels)}
    arms = {"contrasts": tuple(labels)}
    return Plot(fi.name, heading, title, caption, _save(fig, fi.out_dir, fi.name), numbers=numbers, arms=arms)


# --- C6: INT6 penalty vs size ---------------------------------------------------------------


def _settings(row: dict) -> set[tuple[float, float]]:
    """The (warmdown, lr_mult) settings the C6 fit used, empty if unreadable."""
    return {(round(w, WD_DECIMALS), lr) for w, lr in read_settings(stat_text(row, "settings"))}


def penalty_figure(fi: FigureInput) -> Plot:
    claim = fi.claims[0]
    metric = str(claim.thresholds.get("metric", "val_bpb_q"))
    q_bits, r_bits = int(claim.thresholds.get("quant_bits", 6)), int(claim.thresholds.get("ref_bits", 16))
    fit_design, held_design = (claim.designs + claim.designs[-1:])[:2]
    ql, rl = bits_label(q_bits), bits_label(r_bits)
    heading = f"{claim.id}: {ql} penalty vs model size (log-linear law, held-out sizes)"
    rows = fi.claim_rows(claim)
    row = next((r for r in rows if stat(r, "intercept") is not None), rows[0] if rows else {})
    a, b = stat(row, "intercept"), stat(row, "slope_per_log_param")
    delta, pi_level, level = stat(row, "delta"), stat(row, "pi_level"), stat(row, "ci_level")
    caption = (f"Penalty = {metric}({ql}) − {metric}({rl}) per run pair matched on size, warmdown, lr_mult and seed, "
               f"at the (wd, lr_mult) settings the decider used (dots: cache data; {fit_design} sizes blue, "
               f"{held_design} sizes red). Line: the decider's OLS fit (stats intercept, slope_per_log_param). At each "
               f"held-out size, from the row: green bar = the region the claim predicts (prediction ± δ); red diamond "
               f"and bar = the observed mean penalty with the CI of its prediction error"
               + (f" ({fmt_ci(level)})" if level else "") + "; black caps = the paper's "
               + (f"{fmt_pct(pi_level)} " if pi_level else "") + "prediction interval for a mean of k runs (reported, "
               "not decided on). Reproduced iff every red bar lies inside its green bar.")
    t = pd.concat([_finite(fi.table(d), metric) for d in dict.fromkeys(claim.designs)], ignore_index=True)
    t = t[t["bits"].isin([q_bits, r_bits])] if len(t) else t
    pairs = _pairs(t, "bits", q_bits, r_bits, metric) if len(t) else pd.DataFrame()
    settings = _settings(row)
    if len(pairs) and settings:
        pairs = pairs[[(round(w, WD_DECIMALS), lr) in settings for w, lr in zip(pairs["warmdown"], pairs["lr_mult"])]]
    fit_sizes = [s for s in stat_text(row, "fit_sizes").split(",") if s]
    compared = fit_sizes + [s for s in stat_text(row, "heldout_compared").split(",") if s]
    if len(pairs) and compared:  # a size the decider left out must not pass for part of its fit
        pairs = pairs[pairs["size"].isin(compared)]
    if pairs.empty and a is None:
        return Plot(fi.name, heading, "", caption, skipped=fi.missing_numbers(claim, "a fit") +
                    f"; and no matched {ql}/{rl} run pairs in the cache")
    held_sizes = set(fi.profile.design(held_design).sizes) if held_design in fi.profile.designs else set()
    fig = _figure(10.5, 5.4)
    ax = fig.subplots()
    ax.set_xscale("log")
    xs_all: list[float] = []
    arms: dict[str, tuple[str, ...]] = {}
    if len(pairs):
        pairs = pairs.assign(penalty=pairs["a"] - pairs["b"])
        fit_p = pairs[~pairs["size"].isin(held_sizes)]
        held_p = pairs[pairs["size"].isin(held_sizes)]
        arms = {"fit": tuple(_size_order(fit_p["size"], fi.params)),
                "held-out": tuple(_size_order(held_p["size"], fi.params))}
        ax.scatter(fit_p["n_params"], fit_p["penalty"], s=14, color="#1f77b4", alpha=0.5,
                   label=f"{fit_design} sizes: one run pair")
        ax.scatter(held_p["n_params"], held_p["penalty"], s=22, marker="^", facecolor="none", edgecolor="#d62728",
                   label=f"{held_design} sizes: one run pair")
        for size, g in pairs.groupby("size"):
            ax.annotate(size, (g["n_params"].iloc[0], g["penalty"].max()), textcoords="offset points",
                        xytext=(4, 6), fontsize=8)
        xs_all += [float(v) for v in pairs["n_params"]]
    reported = HeldOutStats.read(row, "stat_")
    held = [reported[s] for s in stat_text(row, "heldout_compared").split(",") if s in reported and reported[s].n_params]
    numbers: dict = {}
    n_within = 0
    for i, h in enumerate(held):
        size, x0 = h.group, h.n_params
        pred, obs, lo, hi, pl, ph = h.predicted, h.mean_penalty, h.ci_low, h.ci_high, h.pi_low, h.pi_high
        xs_all.append(x0)
        numbers[size] = {"n_params": x0, "predicted": pred, "mean_penalty": obs, "ci_low": lo, "ci_high": hi}
        if pred is None:
            continue
        if delta is not None:
            ax.errorbar([x0], [pred], yerr=[[delta], [delta]], fmt="none", ecolor=REGION_COLOUR, elinewidth=9,
                        alpha=0.3, label="claim's region: prediction ± δ" if i == 0 else None)
        if obs is not None and lo is not None and hi is not None:
            # ci_low/ci_high bound the prediction error e = mean - prediction: as penalties, pred + e.
            ax.errorbar([x0], [obs], yerr=[[obs - (pred + lo)], [(pred + hi) - obs]], fmt="D", color="#d62728",
                        mec="black", ms=7, capsize=5, lw=1.8,
                        label="held-out mean, CI of its prediction error" if i == 0 else None)
            n_within += delta is not None and -delta <= lo and hi <= delta
        if pl is not None and ph is not None:
            ax.errorbar([x0 * 1.08], [pred], yerr=[[pred - pl], [ph - pred]], fmt="none", ecolor="black", capsize=6,
                        lw=0.9, label="paper's PI for a mean of k runs" if i == 0 else None)
    if a is not None and b is not None and xs_all:
        xs = np.geomspace(min(xs_all) / 1.3, max(xs_all) * 1.3, 100)
        ax.plot(xs, a + b * np.log(xs), color="black", lw=1.4,
                label=f"decider's fit: {a:.3f} {'+' if b >= 0 else '−'} {abs(b):.4f}·ln(n_params)")
        numbers["fit"] = {"intercept": a, "slope": b}
    ax.axhline(0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("parameters (count, log scale)")
    ax.set_ylabel(f"{ql} penalty: Δ {metric} vs {rl} (bits/byte)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if a is None:
        title = f"{claim.id}: the decider reported no fit ({counts_text(rows)}: {row.get('reason') or 'see its row'})"
    else:
        title = (f"{claim.id}: the log-linear fit on {len(fit_sizes)} sizes predicts {n_within}/{len(held)} held-out "
                 f"sizes within ±{delta:g} bpb; verdict: {counts_text(rows)}" if delta is not None else
                 f"{claim.id}: log-linear fit on {len(fit_sizes)} sizes; verdict: {counts_text(rows)}")
    _suptitle(fig, title, fi.note)
    return Plot(fi.name, heading, title, caption, _save(fig, fi.out_dir, fi.name), numbers=numbers, arms=arms)


# --- C7/C8: INT4 paired warmdown differences -------------------------------------------------


def _int4_numbers(claim: Claim, rows: list[dict]) -> dict[str, tuple[float, float, float, dict]]:
    """size -> (mean, low, high, row) from C7-style rows (one size each: stat_size, headline
    statistic) or C8-style rows ('<size>:mean_diff / :ci_low / :ci_high')."""
    out = {}
    for row in rows:
        size = row.get("stat_size")
        if size and stat(row, "mean_diff") is not None and stat(row, "ci_low") is not None:
            out[str(size)] = (stat(row, "mean_diff"), stat(row, "ci_low"), stat(row, "ci_high"), row)
            continue
        per_size = SizeDifference.read(row, "stat_")
        for s in stat_text(row, "sizes").split(","):
            d = per_size.get(s)
            if d is not None and None not in (d.mean_diff, d.ci_low, d.ci_high):
                out[s] = (d.mean_diff, d.ci_low, d.ci_high, row)
    return out


def int4_figure(fi: FigureInput) -> Plot:
    first = fi.claims[0]
    design, metric = first.designs[0], str(first.thresholds.get("metric", "val_bpb_q"))
    bits = int(first.thresholds.get("bits", 4))
    short, long_ = float(first.thresholds.get("wd_short", 0.10)), float(first.thresholds.get("wd_long", 0.33))
    ids = " and ".join(c.id for c in fi.claims)
    heading = f"{ids}: {bits_label(bits)} paired difference wd {short:g} − wd {long_:g} per size"
    caption = (f"d = {metric}(wd {short:g}) − {metric}(wd {long_:g}), {bits_label(bits)} runs of design {design}; "
               f"above zero: wd {long_:g} is better. Small dots: one matched run pair of the cache each (data). "
               f"Diamond and bar: the decider's mean and CI of each size (C7: stats mean_diff, ci_low, ci_high; C8: "
               f"'<size>:mean_diff / :ci_low / :ci_high'). Green: the region each claim predicts (C7: d > δ; C8: "
               f"|d| ≤ δ). The x labels carry each size's claim and verdict.")
    claim_of: dict[str, Claim] = {}
    per_size: dict[str, tuple] = {}
    for c in fi.claims:
        nums = _int4_numbers(c, fi.claim_rows(c))
        per_size.update(nums)
        for s in nums:
            claim_of[s] = c
        if c.role and c.role in fi.profile.roles:
            for s in fi.profile.roles[c.role]:
                claim_of.setdefault(s, c)
    t = _finite(fi.table(design), metric)
    t = t[t["bits"] == bits] if len(t) else t
    d = _pairs(t, "warmdown", round(short, WD_DECIMALS), round(long_, WD_DECIMALS), metric) if len(t) else pd.DataFrame()
    if len(d):
        d = d.assign(d=d["a"] - d["b"])
    if not per_size and d.empty:
        return Plot(fi.name, heading, "", caption,
                    skipped="; ".join(fi.missing_numbers(c, "per-size means") for c in fi.claims)
                    + f"; and no finished {bits_label(bits)} pairs in the cache")
    sizes = _size_order(list(per_size) + (list(d["size"].unique()) if len(d) else []), fi.params)
    fig = _figure(max(6.0, 1.6 * len(sizes) + 2.8), 5.0)
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # fixed jitter: the same cache gives the same picture
    numbers, labels = {}, []
    for i, size in enumerate(sizes):
        c = claim_of.get(size)
        c_rows = ([per_size[size][3]] if size in per_size else []) + (fi.claim_rows(c) if c else [])
        delta = next((stat(r, "delta") for r in c_rows if stat(r, "delta") is not None), None)
        region = next((stat_text(r, "region") for r in c_rows if stat_text(r, "region")), "")
        if delta is not None and region.startswith(">"):  # C7: d > delta
            ax.fill_between([i - 0.42, i + 0.42], delta, delta * 3, color=REGION_COLOUR, alpha=0.12, lw=0)
            ax.plot([i - 0.42, i + 0.42], [delta, delta], color=REGION_COLOUR, ls="--", lw=1)
        elif delta is not None and region.startswith("["):  # C8: |d| <= delta
            ax.fill_between([i - 0.42, i + 0.42], -delta, delta, color=REGION_COLOUR, alpha=0.12, lw=0)
        if len(d):
            v = d.loc[d["size"] == size, "d"].to_numpy(float)
            ax.scatter(i - 0.12 + rng.uniform(-0.07, 0.07, len(v)), v, s=16, color="#9467bd", alpha=0.6,
                       label="one run pair (cache)" if i == 0 else None)
        verdict = ""
        if size in per_size:
            m, lo, hi, row = per_size[size]
            colour = OUTCOME_COLOUR.get(str(row.get("verdict")), "black")
            ax.errorbar([i + 0.15], [m], yerr=[[m - lo], [hi - m]], fmt="D", color=colour, mec="black", ms=7,
                        capsize=6, lw=1.6)
            verdict = _cell_label(row)
            numbers[size] = {"mean": m, "low": lo, "high": hi, "claim": c.id if c else None}
        labels.append(f"{size}\n{fmt_count(fi.params.get(size))} params\n"
                      + (f"{c.id}: {verdict or 'no numbers'}" if c else "no claim"))
    ax.axhline(0, color="black", lw=1)
    ax.set_xticks(range(len(sizes)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_xlim(-0.6, len(sizes) - 0.4)
    ax.set_xlabel("model size")
    ax.set_ylabel(f"d = {metric}(wd {short:g}) − {metric}(wd {long_:g})\n(bits/byte; > 0: wd {long_:g} better)")
    ax.grid(alpha=0.3, axis="y")
    ax.errorbar([], [], fmt="D", color="black", label="decider's mean and CI (colour: verdict)")
    ax.fill_between([], [], color=REGION_COLOUR, alpha=0.12, label="region the claim predicts")
    ax.legend(fontsize=8, loc="best")
    parts = [f"{c.id} {counts_text(fi.claim_rows(c))}" for c in fi.claims]
    title = f"{bits_label(bits)}, wd {short:g} − wd {long_:g} per size: " + "; ".join(parts)
    _suptitle(fig, title, fi.note)
    arms = {"sizes": tuple(sizes), "each size": (f"wd {short:g}", f"wd {long_:g}")}
    return Plot(fi.name, heading, title, caption, _save(fig, fi.out_dir, fi.name), numbers=numbers, arms=arms)


# --- C9: grid distances before the warmdown ---------------------------------------------------


def grid_figure(fi: FigureInput) -> Plot:
    claim = fi.claims[0]
    design = claim.designs[0]
    q_bits, r_bits = int(claim.thresholds.get("quant_bits", 6)), int(claim.thresholds.get("ref_bits", 16))
    ql, rl = bits_label(q_bits), bits_label(r_bits)
    rows = fi.claim_rows(claim)
    row = next((r for r in rows if stat(r, "ratio") is not None), rows[0] if rows else {})
    low = stat(row, "band_low") or float(claim.thresholds.get("band_low", math.nan))
    high = stat(row, "band_high") or float(claim.thresholds.get("band_high", math.nan))
    heading = f"{claim.id}: distance to the {ql} grid before the warmdown, {rl} vs {ql}-QAT"
    caption = (f"Left (cache data): per-matrix mean distance |w/s − round(w/s)| to the {ql} grid at the pre_warmdown "
               f"probe of runs paired on size, warmdown, lr_mult and seed (design {design}); 0 = on the grid, 0.25 = "
               f"uniform within a grid cell. Right (the decider's numbers): R = ratio of the mean distances, "
               f"{ql}/{rl}, with Fieller's 90 % CI (thick) and 95 % CI (thin) (stats ratio, ci90_*, ci95_*); "
               f"green: the band the claim predicts [{low:g}, {high:g}]. Reproduced iff the 90 % CI lies "
               f"inside the band.")
    by_bits: dict[int, dict[tuple, list[float]]] = {q_bits: {}, r_bits: {}}
    for rec in fi.records(design):
        s, r = rec["spec"], rec["result"]
        if r.get("status") != "ok" or s["bits"] not in by_bits:
            continue
        pre = next((p for p in r.get("grid_probes") or [] if p.get("label") == "pre_warmdown"), None)
        if pre and pre.get("per_matrix"):
            key = tuple(s.get(k) for k in ("size", "warmdown", "lr_mult", "seed", *PAIR_EXTRA))
            by_bits[s["bits"]][key] = [float(v["int6"]) for v in pre["per_matrix"].values()]
    paired = sorted(set(by_bits[q_bits]) & set(by_bits[r_bits]), key=str)
    arms = {"histogram": (rl, ql) if paired else (), "ratio": (f"{ql}/{rl}",)}
    ratio = stat(row, "ratio")
    if ratio is None and not paired:
        return Plot(fi.name, heading, "", caption, skipped=fi.missing_numbers(claim, "a ratio")
                    + f"; and no {ql}/{rl} run pairs with a pre_warmdown probe in the cache")
    fig = _figure(11.0, 4.8)
    left, right = fig.subplots(1, 2, width_ratios=[2, 1])
    if paired:
        vals = {b: np.concatenate([by_bits[b][k] for k in paired]) for b in (r_bits, q_bits)}
        lo_v = min(v.min() for v in vals.values())
        hi_v = max(v.max() for v in vals.values())
        bins = np.linspace(min(lo_v, 0.25) - 0.005, max(hi_v, 0.25) + 0.005, 31)
        for b in (r_bits, q_bits):
            lab, colour, _ = _style(b)
            left.hist(vals[b], bins=bins, color=colour, alpha=0.45, edgecolor=colour,
                      label=f"{lab}{'-QAT' if b != 16 else ''}: {len(vals[b])} matrices")
        left.axvline(0.25, color="grey", ls=":", lw=1.2, label="0.25 = uniform within a grid cell")
        left.legend(fontsize=8)
    else:
        left.text(0.5, 0.5, "no paired runs with a pre_warmdown probe in the cache", ha="center",
                  transform=left.transAxes)
    left.set_xlabel(f"distance to the {ql} grid (grid steps)")
    left.set_ylabel("matrices (count)")
    left.set_title(f"per-matrix distances, {len(paired)} run pairs (cache)", fontsize=10)
    left.grid(alpha=0.3)
    right.axhspan(low, high, color=REGION_COLOUR, alpha=0.15, label=f"claim's band [{low:g}, {high:g}]")
    right.axhline(1.0, color="grey", lw=0.8, ls=":")
    numbers = {}
    if ratio is not None:
        colour = OUTCOME_COLOUR.get(str(row.get("verdict")), "black")
        for key, lw, cap, lbl in (("ci95", 1.0, 8, "95 % CI (Fieller)"), ("ci90", 3.0, 0, "90 % CI (Fieller)")):
            lo, hi = stat(row, f"{key}_low"), stat(row, f"{key}_high")
            if lo is not None and hi is not None:
                right.errorbar([0], [ratio], yerr=[[ratio - lo], [hi - ratio]], fmt="none", ecolor=colour, lw=lw,
                               capsize=cap, label=lbl)
                numbers[key] = (lo, hi)
        right.plot([0], [ratio], "o", color=colour, mec="black", ms=8, label=f"R = {fmt_bpb(ratio)}")
        numbers["ratio"] = ratio
        right.legend(fontsize=8, loc="upper right")
    else:
        right.text(0, (low + high) / 2, f"no ratio:\n{row.get('reason') or 'no verdict'}", ha="center", fontsize=8,
                   wrap=True)
    right.set_xlim(-1, 1)
    right.set_xticks([0])
    right.set_xticklabels([f"{ql}/{rl}\n{_cell_label(row) if row else 'no verdict'}"], fontsize=8)
    right.set_ylabel(f"R = mean distance {ql} / {rl} (ratio)")
    right.set_title("the decider's ratio and intervals", fontsize=10)
    right.grid(alpha=0.3, axis="y")
    if ratio is not None and "ci90" in numbers:
        lo, hi = numbers["ci90"]
        title = (f"{claim.id}: before the warmdown, R = {ql}/{rl} grid distance = {fmt_bpb(ratio)} (90 % CI "
                 f"[{fmt_bpb(lo)}, {fmt_bpb(hi)}], band [{low:g}, {high:g}]); verdict: {counts_text(rows)}")
    else:
        title = f"{claim.id}: the decider reported no ratio; verdict: {counts_text(rows)}"
    _suptitle(fig, title, fi.note)
    return Plot(fi.name, heading, title, caption, _save(fig, fi.out_dir, fi.name), numbers=numbers, arms=arms)


# --- loss curves (data only) ----------------------------------------------------------------


def loss_figure(fi: FigureInput) -> Plot:
    design = fi.claims[0].designs[0]
    heading = f"Training-loss curves of a few {design} cells"
    caption = (f"Training loss (one batch per point) of the smallest {design} size, first seed, lr_mult closest to 1, "
               "one line per warmdown fraction; the dashed line of the same colour is the step its warmdown starts. "
               "Top: the loss, zoomed on the last 80 % of training. Runs of one seed see the same batches, so "
               "their curves coincide until the earliest warmdown starts; the bottom row subtracts the curve of "
               "the shortest warmdown, which removes that shared batch noise and shows what each schedule buys. "
               "Data only: no verdict rests on these curves.")
    ok = [r for r in fi.records(design) if r["result"].get("loss_curve")]
    if not ok:
        return Plot(fi.name, heading, "", caption, skipped=f"design {design} has no runs with a loss curve")
    params = fi.params
    size = min({r["spec"]["size"] for r in ok}, key=lambda s: (params.get(s, 0), s))
    ok = [r for r in ok if r["spec"]["size"] == size]
    seed = min(r["spec"]["seed"] for r in ok)
    lr = min({r["spec"]["lr_mult"] for r in ok}, key=lambda v: abs(math.log(v)))
    ok = [r for r in ok if r["spec"]["seed"] == seed and r["spec"]["lr_mult"] == lr]
    present = sorted({r["spec"]["bits"] for r in ok}, reverse=True)
    bits_shown = [b for b in (16, 6) if b in present] or present[:: max(1, len(present) - 1)][:2]
    fig = _figure(5.2 * len(bits_shown) + 0.8, 6.6)
    axes = fig.subplots(2, len(bits_shown), squeeze=False, sharex=True, sharey="row", height_ratios=[3, 2])
    wds = sorted({r["spec"]["warmdown"] for r in ok})
    colours = dict(zip(wds, (f"C{i}" for i in range(10))))
    tail, arms = [], {}
    unit = "nats/byte" if ok[0]["spec"].get("tokenizer") == "byte" else "nats/token"
    for col, bits in enumerate(bits_shown):
        top, bottom = axes[0, col], axes[1, col]
        runs = sorted((r for r in ok if r["spec"]["bits"] == bits), key=lambda r: r["spec"]["warmdown"])
        arms[bits_label(bits)] = tuple(f"wd {r['spec']['warmdown']:g}" for r in runs)
        ref_wd = runs[0]["spec"]["warmdown"]
        ref = {int(s): v for s, v in runs[0]["result"]["loss_curve"]}
        for rec in runs:
            spec = RunSpec.from_dict(rec["spec"])
            curve = np.asarray(rec["result"]["loss_curve"], dtype=float)
            div = rec["result"].get("status") == "diverged"
            colour = colours[spec.warmdown]
            top.plot(curve[:, 0], curve[:, 1], color=colour, lw=1.2,
                     label=f"wd {spec.warmdown:g}" + (" (diverged)" if div else ""))
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
    _suptitle(fig, title, fi.note)
    return Plot(fi.name, heading, title, caption, _save(fig, fi.out_dir, fi.name), arms=arms)


# --- R1-R5: the related claims -------------------------------------------------------------


def _cell_runs(fi: FigureInput, claim: Claim, cell_id: str, metric: str) -> pd.DataFrame:
    """The finite runs of one test case of ``claim`` (its designs and filters) from the cache."""
    from hypotheses.cells import cell_specs, cells_for

    cell = next((c for c in cells_for(claim, fi.profile) if c.id == cell_id), None)
    if cell is None:
        return pd.DataFrame()
    ids = {s.run_id for s in cell_specs(fi.profile, cell)}
    frames = [fi.table(d) for d in cell.designs if len(fi.table(d))]
    if not frames:
        return pd.DataFrame()
    t = pd.concat(frames, ignore_index=True).drop_duplicates("run_id")
    t = t[t["run_id"].isin(ids)]
    return _finite(t, metric) if len(t) else t


def _arm_label(row: pd.Series, varying: list[str]) -> str:
    parts = []
    for c in varying:
        v = row[c]
        if c == "bits":
            parts.append(bits_label(int(v)))
        elif c == "size":
            parts.append(str(v))
        elif c == "cooldown_beta2":
            parts.append("β2 kept" if v is None or (isinstance(v, float) and math.isnan(v)) else f"cooldown β2 {v:g}")
        elif c == "qat_start":
            parts.append(f"QAT from {float(v):g}")
        elif c == "qat_lr_restart":
            parts.append("LR restarted at QAT" if bool(v) else "no LR restart")
        elif c == "warmdown":
            parts.append(f"wd {float(v):g}")
        elif c == "steps":
            parts.append(f"{int(v)} steps")
        else:
            parts.append(f"{c} {v:g}" if isinstance(v, float) else f"{c} {v}")
    return "\n".join(parts)


# An arm is one setting of every spec field but the seed: the arm columns of a test case are
# the fields its runs differ in, whatever they are (a fixed list missed qat_lr_restart, R2's
# only difference, and drew R2's two arms as one pooled column).
SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(RunSpec) if f.name != "seed")


def arm_columns(t: pd.DataFrame) -> list[str]:
    return [c for c in SPEC_FIELDS if c in t and t[c].map(str).nunique() > 1]  # map: None stays "None"


def _verdict_text(row: dict) -> str:
    m, lo, hi = stat(row, "statistic_value"), stat(row, "ci_low"), stat(row, "ci_high")
    level = stat(row, "ci_level")
    nums = (f"{stat_text(row, 'statistic')} = {fmt_bpb(m)} [{fmt_bpb(lo)}, {fmt_bpb(hi)}] ({fmt_ci(level)})"
            if None not in (m, lo, hi) else "no bounds")
    return f"{row.get('cell')}: {_cell_label(row)}; {nums}; claim predicts {stat_text(row, 'region')}"


def related_figure(fi: FigureInput) -> Plot:
    """R2-R5: one panel per test case; x = the case's arms, one line per seed (the pairing the
    decider uses), the verdict's statistic, bounds and region written under the panel."""
    claim = fi.claims[0]
    metric = str(claim.thresholds.get("metric", "val_bpb_q"))
    rows = {str(r.get("cell")): r for r in fi.claim_rows(claim)}
    from hypotheses.cells import cells_for

    cell_ids = [c.id for c in cells_for(claim, fi.profile)]
    heading = f"{claim.id}: {metric} per seed across the arms each test case compares"
    caption = (f"One panel per test case of {claim.id} ({', '.join(cell_ids)}); x: the arms the decider compares "
               f"(labels: what differs between them), y: {metric} of each finished run of the cache, one grey line "
               f"per seed (the decider pairs by seed; diverged runs are not drawn); black: the arm means. Under each "
               f"panel: the decider's headline statistic with its bounds, the region the claim predicts and the "
               f"verdict (stats statistic_value, ci_low, ci_high, region).")
    data = {cid: _cell_runs(fi, claim, cid, metric) for cid in cell_ids}
    if all(d.empty for d in data.values()) and not rows:
        return Plot(fi.name, heading, "", caption, skipped=fi.missing_numbers(claim, "bounds")
                    + "; and no finished runs of its designs in the cache")
    fig = _figure(4.6 * len(cell_ids) + 0.6, 4.8)
    axes = np.atleast_1d(fig.subplots(1, len(cell_ids)))
    numbers, arms = {}, {}
    for ax, cid in zip(axes, cell_ids):
        t = data[cid]
        if len(t):
            varying = arm_columns(t)
            t = t.assign(arm=[_arm_label(r, varying) for _, r in t.iterrows()])
            order = list(dict.fromkeys(t.sort_values(varying, key=lambda c: c.map(str))["arm"]))
            x = {a: i for i, a in enumerate(order)}
            for _, g in t.groupby("seed"):
                g = g.assign(x=g["arm"].map(x)).sort_values("x")
                ax.plot(g["x"], g[metric], color="#999999", lw=0.8, marker="o", ms=3, alpha=0.8)
            means = t.groupby("arm")[metric].mean()
            ax.plot([x[a] for a in order], [means[a] for a in order], color="black", lw=2, marker="D", ms=6)
            ax.set_xticks(range(len(order)))
            ax.set_xticklabels(order, fontsize=8)
            ax.set_xlim(-0.4, len(order) - 0.6)
            arms[cid] = tuple(order)
        else:
            ax.text(0.5, 0.5, "no finished runs in the cache", ha="center", va="center", transform=ax.transAxes)
        row = rows.get(cid)
        text = _verdict_text(row) if row else f"{cid}: no verdict row"
        if row:
            numbers[cid] = {"statistic": stat(row, "statistic_value"), "low": stat(row, "ci_low"),
                            "high": stat(row, "ci_high"), "verdict": row.get("verdict")}
        colour = OUTCOME_COLOUR.get(str(row.get("verdict")) if row else "", "black")
        ax.set_title(text, fontsize=7.5, color=colour, wrap=True)
        ax.set_ylabel(f"{metric} (bits/byte)")
        ax.grid(alpha=0.3, axis="y")
    title = f"{claim.id} ({claim.source.split('(')[0].strip()}): {counts_text(fi.claim_rows(claim))}"
    _suptitle(fig, title, fi.note)
    return Plot(fi.name, heading, title, caption, _save(fig, fi.out_dir, fi.name), numbers=numbers, arms=arms)


def r1_figure(fi: FigureInput) -> Plot:
    """R1: mean val_bpb_q vs QAT fraction, one line per budget, one panel per size; the best
    fraction of every (size, budget) as the decider reported it."""
    claim = fi.claims[0]
    metric = str(claim.thresholds.get("metric", "val_bpb_q"))
    row = next(iter(fi.claim_rows(claim)), None)
    heading = f"{claim.id}: {metric} vs QAT fraction per token budget, the optima as the decider reported them"
    caption = (f"One panel per size of design {claim.designs[0]}; x: QAT fraction (1 − qat_start), y: mean "
               f"{metric} over the cache's finished seeds (dots: single seeds), one line per budget (steps; darker = "
               f"more compute). ★: the best fraction of each (size, budget) as the decider reported it (stats "
               f"'<size>:<steps>:best_fraction'), with its tokens-per-parameter-byte. The claim predicts the ★ move "
               f"right as compute grows; the verdict's trend statistic and bounds are in the title.")
    t = _cell_runs(fi, claim, "budgets", metric)
    if t.empty and row is None:
        return Plot(fi.name, heading, "", caption, skipped=fi.missing_numbers(claim, "best fractions")
                    + "; and no finished runs in the cache")
    sizes = _size_order(t["size"].unique() if len(t) else [], fi.params) or ["?"]
    fig = _figure(4.4 * len(sizes) + 0.6, 4.4)
    axes = np.atleast_1d(fig.subplots(1, len(sizes), sharey=True))
    numbers, arms = {}, {}
    for ax, size in zip(axes, sizes):
        ts = t[t["size"] == size] if len(t) else t
        budgets = sorted(ts["steps"].unique()) if len(ts) else []
        for i, b in enumerate(budgets):
            tb = ts[ts["steps"] == b].assign(frac=lambda d: (1 - d["qat_start"].astype(float)).round(6))
            colour = matplotlib_colour(i, len(budgets))
            m = tb.groupby("frac")[metric].mean()
            ax.plot(m.index, m.values, marker="o", color=colour, label=f"{int(b)} steps")
            ax.scatter(tb["frac"], tb[metric], s=8, color=colour, alpha=0.4)
            arms[size] = arms.get(size, ()) + tuple(f"{int(b)} steps, QAT fraction {f:g}" for f in m.index)
            best = stat(row, f"{size}:{int(b)}:best_fraction") if row else None
            tppb = stat(row, f"{size}:{int(b)}:tokens_per_param_byte") if row else None
            if best is not None and best in m.index:
                ax.plot([best], [m[best]], marker="*", ms=15, color=colour, mec="black")
                numbers[f"{size}:{int(b)}"] = {"best_fraction": best, "tokens_per_param_byte": tppb}
        ax.set_title(f"{size} ({fmt_count(fi.params.get(size))} params)", fontsize=9)
        ax.set_xlabel("QAT fraction of the steps")
        ax.grid(alpha=0.3)
        if budgets:
            ax.legend(fontsize=7)
    axes[0].set_ylabel(f"{metric} (bits/byte)")
    verdict = _verdict_text(row) if row else "no verdict row"
    tau = stat(row, "kendall_tau_tppb_best") if row else None
    title = f"{claim.id}: {verdict}" + (f"; Kendall τ(tokens/param-byte, best fraction) = {tau:+.2f}" if tau is not None else "")
    _suptitle(fig, title, fi.note)
    return Plot(fi.name, heading, title, caption, _save(fig, fi.out_dir, fi.name), numbers=numbers, arms=arms)


def matplotlib_colour(i: int, n: int) -> tuple:
    from matplotlib import colormaps

    return colormaps["viridis"](0.15 + 0.7 * (1 - i / max(n - 1, 1)))


# --- which claim gets which figure ----------------------------------------------------------


@dataclass(frozen=True)
class FigureSpec:
    name: str
    claim_ids: tuple[str, ...]
    draw: Callable[[FigureInput], Plot]


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("c1_wd_optimum", ("C1",), wd_figure),
    FigureSpec("c1_loss_curves", ("C1",), loss_figure),
    *(FigureSpec(f"{cid.lower()}_interaction_contrasts", (cid,), contrast_figure) for cid in ("C2", "C3", "C4", "C5")),
    FigureSpec("c6_penalty_vs_size", ("C6",), penalty_figure),
    FigureSpec("c7_c8_int4_wd_difference", ("C7", "C8"), int4_figure),
    FigureSpec("c9_grid_distance", ("C9",), grid_figure),
    FigureSpec("r1_qat_fraction_vs_budget", ("R1",), r1_figure),
    *(FigureSpec(f"{cid.lower()}_paired_arms", (cid,), related_figure) for cid in ("R2", "R3", "R4", "R5")),
)


def plots_for_claim(claim_id: str) -> list[str]:
    return [f.name for f in FIGURES if claim_id in f.claim_ids]


def draw_all(claims: dict[str, Claim], rows: list[dict], designs: dict[str, DesignData], profile: Profile,
             params: dict[str, int], out_dir: Path) -> list[Plot]:
    """Every figure of the report, in page order; a figure that fails is reported, not fatal."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.png"):  # a figure skipped this time must not survive from an earlier report
        stale.unlink()
    decided: dict[str, list[dict]] = {}
    n_errors: dict[str, int] = {}
    for r in rows:
        if r.get("verdict") in OUTCOMES and r.get("verdict") != ERROR:
            decided.setdefault(str(r.get("claim_id")), []).append(r)
        else:
            n_errors[str(r.get("claim_id"))] = n_errors.get(str(r.get("claim_id")), 0) + 1

    def note(ds) -> str:
        return "; ".join(f"partial: {len(designs[d].records)}/{len(designs[d].design.specs)} runs of {d}"
                         for d in ds if d in designs and designs[d].missing)

    plots = []
    for spec in FIGURES:
        mine = [claims[c] for c in spec.claim_ids if c in claims]
        if not mine:
            plots.append(Plot(spec.name, spec.name, "", "", skipped=f"no claim {'/'.join(spec.claim_ids)} in the "
                              "claims file", claims=spec.claim_ids))
            continue
        ds = list(dict.fromkeys(d for c in mine for d in c.designs))
        absent = [d for d in ds if d not in designs]
        if absent:
            plots.append(Plot(spec.name, spec.name, "", "", skipped=f"profile {profile.name!r} has no design "
                              f"{', '.join(map(repr, absent))}", claims=spec.claim_ids))
            continue
        fi = FigureInput(spec.name, mine, decided, n_errors, designs, profile, params, out_dir, note(ds))
        try:
            plot = spec.draw(fi)
        except Exception as e:  # one broken figure must not cost the verdict table
            log.exception("figure %s failed", spec.name)
            plot = Plot(spec.name, spec.name, "", "", skipped=f"figure failed: {type(e).__name__}: {e}")
        if fi.note and plot.path:
            plot = replace(plot, caption=f"{plot.caption} Drawn from a partly filled cache ({fi.note}).")
        plots.append(replace(plot, claims=spec.claim_ids))
    return plots


# --- the overview: every test case against its claim's region ---------------------------------

OVERVIEW = "overview_forest"
NO_OUTCOME_COLOUR = "#7f7f7f"


def _scale(region: Region | None) -> tuple[float, float] | None:
    """(centre, unit) that put a region's edges at ±1 (two-sided) or its one edge at ±1
    (one-sided): claims whose statistics differ in unit (bpb, a ratio) and in δ share one axis."""
    if region is None:
        return None
    if len(region.edges) == 2:
        half = (region.high - region.low) / 2
        return ((region.high + region.low) / 2, half) if half > 0 else None
    edge = region.edges[0] if region.edges else 0.0
    return (0.0, abs(edge)) if edge else None


def overview_figure(claims: list[ClaimSummary], out_dir: Path) -> Plot:
    """One forest plot of every test case: its statistic and CI (the verdict's own numbers)
    against the region its claim predicts, coloured by outcome, its stability beside it."""
    heading = "Every test case against the region its claim predicts"
    caption = ("One row per test case, in the order of the claims. Left: the verdict's statistic (dot) and CI (bar) "
               "against the region the claim predicts (green band), each row scaled so that the region's edges sit at "
               "±1 (two-sided regions such as ±δ or C9's band) or its one edge at 1 (one-sided regions such as > δ or "
               "≤ δ); the scale differs between rows, so compare each bar with its own band. Colour: the outcome. "
               "Middle: the same numbers as the verdict reports them, unscaled. Right: the stability, the probability "
               f"that a re-run with new seeds repeats the outcome (dashed: {fmt_pct(FRAGILE_BELOW)}; below it the "
               "verdict is FRAGILE). A row without a bar has no bounds (premise absent, an error, or too few seeds to "
               "compute any).")
    cells = [(c.claim_id, cell) for c in claims for cell in c.cells]
    if all(cell.verdict == ERROR for _, cell in cells):
        return Plot(OVERVIEW, heading, "", caption, skipped=f"no test case has a verdict ({len(cells)} error rows)"
                    if cells else "no verdicts to show")
    n = len(cells)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = _figure(13.0, 0.3 * n + 1.9)
    forest, middle, right = fig.subplots(1, 3, sharey=True, width_ratios=[5, 3.4, 1.5])
    scaled = []
    for _, cell in cells:
        region = parse_region(cell.region)
        s = _scale(region) if cell.verdict != ERROR else None
        pts = [cell.ci_low, cell.value, cell.ci_high] if cell.has_bounds else []
        scaled.append((region, s, [(x - s[0]) / s[1] if s and x is not None else None for x in pts]))
    spread = [abs(v) for _, _, pts in scaled for v in pts if v is not None]
    lim = min(max([1.6, *spread]) * 1.1, 8.0)
    numbers = {}
    for i, ((claim_id, cell), (region, s, pts)) in enumerate(zip(cells, scaled)):
        y = n - 1 - i
        colour = OUTCOME_COLOUR.get(cell.verdict, NO_OUTCOME_COLOUR)
        if s and region is not None:
            lo_r, hi_r = ((e - s[0]) / s[1] for e in (region.low, region.high))
            forest.fill_betweenx([y - 0.4, y + 0.4], max(lo_r, -lim), min(hi_r, lim), color=REGION_COLOUR,
                                 alpha=0.15, lw=0)
        if pts and s:
            lo, mid, hi = (min(max(v, -lim), lim) if v is not None else None for v in pts)
            forest.plot([lo, hi], [y, y], color=colour, lw=2.2, solid_capstyle="butt")
            for end, raw, mark in ((lo, pts[0], "<"), (hi, pts[2], ">")):
                if abs(raw) > lim:  # beyond the axis: an arrow at its edge, the number in the middle column
                    forest.plot([end], [y], marker=mark, color=colour, ms=6)
            if mid is not None:
                forest.plot([mid], [y], "o", color=colour, mec="black", mew=0.5, ms=6)
            text = f"{fmt_bpb(cell.value)} [{fmt_bpb(cell.ci_low)}, {fmt_bpb(cell.ci_high)}] vs {cell.region}"
        elif cell.verdict == ERROR:
            text = "ERROR: no verdict"
        else:
            why = "premise absent" if cell.inconclusive_kind == "premise" else cell.reason or "no bounds"
            text = f"no bounds ({why[:60]}{'…' if len(why) > 60 else ''})"
        middle.text(0.0, y, text, va="center", ha="left", fontsize=7.5, color=colour)
        if cell.stability is not None and cell.verdict != ERROR:
            right.barh([y], [cell.stability], color=colour, height=0.6, alpha=0.8)
            right.text(min(cell.stability, 1.0) + 0.02, y, fmt_pct(cell.stability), va="center", fontsize=7)
        numbers[f"{claim_id} {cell.cell}"] = {"verdict": cell.verdict, "value": cell.value, "low": cell.ci_low,
                                             "high": cell.ci_high, "region": cell.region, "stability": cell.stability}
    forest.set_yticks(range(n))
    forest.set_yticklabels([f"{cid} {cell.cell}" for cid, cell in reversed(cells)], fontsize=8)
    forest.set_ylim(-0.7, n - 0.3)
    forest.set_xlim(-lim, lim)
    for x in (-1, 0, 1):
        forest.axvline(x, color="grey", lw=0.6, ls=":" if x else "-")
    forest.set_xlabel("statistic and CI, in units of the region (its edges at ±1 or 1)")
    forest.grid(alpha=0.25, axis="x")
    middle.set_xlim(0, 1)
    middle.axis("off")
    middle.set_title("statistic [CI] vs the region (the verdict's numbers)", fontsize=8)
    right.axvline(FRAGILE_BELOW, color="black", ls="--", lw=0.8)
    right.set_xlim(0, 1.25)
    right.set_xticks([0, 0.5, 1])
    right.set_xticklabels(["0", "50 %", "100 %"], fontsize=7)
    right.set_title("stability", fontsize=8)
    handles = [Line2D([], [], color=OUTCOME_COLOUR[k], lw=2.2, marker="o", label=k) for k in OUTCOME_COLOUR]
    handles.append(Patch(color=REGION_COLOUR, alpha=0.15, label="region the claim predicts"))
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncols=len(handles))
    counts = outcome_counts([cell.verdict for _, cell in cells])
    title = (f"{n} test cases: " + ", ".join(f"{counts[k]} {k}" for k in OUTCOMES if counts[k])
             + " — each against the region its claim predicts")
    _suptitle(fig, title, "")
    return Plot(OVERVIEW, heading, title, caption, _save(fig, out_dir, OVERVIEW), numbers=numbers,
                arms={"test cases": tuple(numbers)})

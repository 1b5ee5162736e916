"""Decision function for C6: the INT6 penalty follows a log-linear law in model size.

Owns ``decide_c6``: fit the matched-pair INT6 penalty against log(n_params) on the fit
sizes and check that every held-out size's mean penalty falls inside the 95 % prediction
interval for a mean of that many new runs. Pure: a results table in, a Verdict out.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats as sps

from hypotheses.verdict import (
    MIN_FINITE_SEEDS,
    RUN_KEY,
    Verdict,
    count_stats,
    decided,
    fmt_bits,
    paper_stats,
    require_table,
    require_unique_runs,
    undecided,
)

_PAIR_KEY = ["size", "wd", "lr_mult", "seed"]


def matched_penalties(t: pd.DataFrame, metric: str, quant_bits: int, ref_bits: int) -> pd.DataFrame:
    """Per-run penalty metric(quant_bits) - metric(ref_bits), matched on (size, wd, lr, seed).

    Pairs with a diverged member are dropped (the diverged run is counted by the caller).
    Returns columns size, n_params, wd, lr_mult, seed, penalty.
    """
    q = t[(t["bits"] == quant_bits) & t["finite"]].set_index(_PAIR_KEY)
    r = t[(t["bits"] == ref_bits) & t["finite"]].set_index(_PAIR_KEY)
    joined = pd.concat(
        [q[metric].rename("q"), q["n_params"], r[metric].rename("r")], axis=1, join="inner"
    )
    joined["penalty"] = joined["q"] - joined["r"]
    return joined.reset_index()[[*_PAIR_KEY, "n_params", "penalty"]]


def _common_settings(fit: pd.DataFrame, held: pd.DataFrame):
    """Restrict fit and held-out pairs to the (wd, lr_mult) settings they share.

    The penalty depends on the schedule, so a held-out size run at wd 0.33 only must be
    predicted by a line fitted on wd 0.33 runs, not on a mix of warmdowns. The shared
    settings are those of the fit that every held-out size with >= 2 pairs also has.
    """
    def settings(d: pd.DataFrame) -> pd.Series:
        return pd.Series(list(zip(d["wd"], d["lr_mult"])), index=d.index, dtype=object)

    common = set(settings(fit))
    for _, at in held.groupby("size"):
        if len(at) >= MIN_FINITE_SEEDS:
            common &= set(settings(at))
    return fit[settings(fit).isin(common)], held[settings(held).isin(common)], sorted(common)


def _n_params_by_size(t: pd.DataFrame, what: str) -> dict:
    counts = t.groupby("size")["n_params"].nunique()
    if (counts > 1).any():
        raise ValueError(f"{what}: sizes with several n_params values: {counts[counts > 1].index.tolist()}")
    return t.groupby("size")["n_params"].first().astype(float).to_dict()


def decide_c6(
    table: pd.DataFrame, claim, fit_sizes: list[str], heldout_sizes: list[str]
) -> Verdict:
    """C6: a log-linear fit of the INT6 penalty on the fit sizes predicts the held-out sizes.

    Rule: penalty = ``metric``(bits=quant_bits) - ``metric``(bits=ref_bits) for runs
    matched on (size, wd, lr_mult, seed). Only the (wd, lr_mult) settings that the fit
    sizes share with every held-out size enter (matched settings: the penalty depends on
    the schedule). Fit statsmodels OLS penalty ~ log(n_params) on the per-run matched
    penalties of the fit sizes (n_params from the table, never the
    size name). For each held-out size with k matched pairs, compare its MEAN penalty
    with the prediction interval for the mean of k new runs:
    pred +/- t_{df_resid, 1-a/2} * sqrt(se_mean^2 + sigma^2 / k), where se_mean is the
    fitted line's standard error at that size and sigma^2 the residual variance (the
    single-run interval, obs_ci_lower/upper, is reported too). Reproduced iff every
    held-out size present is inside (reported as k/n; requested sizes with no data are
    listed, not counted). The intervals are per size, not family-wise (as in the paper):
    a true law misses one of five sizes in up to 1 - 0.95^5 = 23 % of draws. The per-run
    fit treats runs as independent; a size-level deviation from the line (lack of fit)
    is therefore judged strictly, which is the point of predicting a mean.
    Diverged runs: a pair with a diverged member is dropped and the run counted in
    n_diverged; a held-out size needs >= 2 matched pairs to be compared.
    Undecided if no setting is shared, fewer than ``min_fit_sizes`` (3) fit sizes have
    matched pairs, or no held-out size has >= 2 matched pairs.
    """
    metric = claim.threshold("metric")
    quant_bits, ref_bits = int(claim.threshold("quant_bits")), int(claim.threshold("ref_bits"))
    pi_level = float(claim.threshold("pi_level"))
    min_fit = int(claim.threshold("min_fit_sizes"))
    what = f"{claim.id}[{fmt_bits(quant_bits)} vs {fmt_bits(ref_bits)}]"
    fit_sizes, heldout_sizes = [str(s) for s in fit_sizes], [str(s) for s in heldout_sizes]
    if not fit_sizes or not heldout_sizes:
        raise ValueError(f"{what}: fit_sizes and heldout_sizes must be non-empty")
    overlap = sorted(set(fit_sizes) & set(heldout_sizes))
    if overlap:
        raise ValueError(f"{what}: sizes both fitted and held out: {overlap}")

    t = require_table(table, ["size", "n_params", "bits", "wd", "lr_mult"], metric, what=what)
    t = t[t["bits"].isin([quant_bits, ref_bits]) & t["size"].astype(str).isin(fit_sizes + heldout_sizes)]
    if t.empty:
        raise ValueError(f"{what}: no runs of the requested sizes at bits {quant_bits}/{ref_bits}")
    t = t.assign(size=t["size"].astype(str))
    require_unique_runs(t, RUN_KEY, what=what)
    n_params = _n_params_by_size(t, what)
    pairs = matched_penalties(t, metric, quant_bits, ref_bits)

    fit, held, settings = _common_settings(
        pairs[pairs["size"].isin(fit_sizes)], pairs[pairs["size"].isin(heldout_sizes)]
    )
    fit_present = sorted(fit["size"].unique(), key=n_params.get)
    held_counts = held.groupby("size").size()
    held_usable = sorted(
        [s for s, k in held_counts.items() if k >= MIN_FINITE_SEEDS], key=n_params.get
    )
    missing = [s for s in heldout_sizes if s not in held_usable]
    stats = {
        **count_stats(t),
        "metric": metric,
        "n_pairs_fit": len(fit),
        "settings": ";".join(f"wd{w:g}/lr{lr:g}" for w, lr in settings),
        "fit_sizes": ",".join(fit_present),
        "heldout_missing": ",".join(missing),
        "statistic": "heldout_inside_fraction",
        "statistic_value": math.nan,
        "effect_size_name": "max_abs_z_heldout",
        "effect_size": math.nan,
        "inside": "",
        "pi_level": pi_level,
        **paper_stats(claim),
    }
    if not settings:
        return undecided(
            claim,
            f"{what}: the fit and held-out sizes share no (wd, lr_mult) setting.",
            "no (wd, lr_mult) setting shared by the fit sizes and every held-out size",
            stats,
        )
    if len({n_params[s] for s in fit_present}) < min_fit:
        return undecided(
            claim,
            f"{what}: only {len(fit_present)} fit size(s) with matched pairs ({stats['fit_sizes']}).",
            f"fewer than {min_fit} fit sizes with distinct n_params and matched pairs",
            stats,
        )
    if not held_usable:
        return undecided(
            claim,
            f"{what}: none of the held-out sizes {heldout_sizes} has {MIN_FINITE_SEEDS}+ matched pairs.",
            "no held-out size present with enough matched pairs",
            stats,
        )

    X = sm.add_constant(np.log(fit["n_params"].to_numpy(dtype=float)))
    ols = sm.OLS(fit["penalty"].to_numpy(dtype=float), X).fit()
    sigma2 = float(ols.scale)
    t_crit = float(sps.t.ppf(1 - (1 - pi_level) / 2, ols.df_resid))
    stats.update(
        intercept=float(ols.params[0]),
        slope_per_log_param=float(ols.params[1]),
        p_slope=float(ols.pvalues[1]),
        r_squared=float(ols.rsquared),
        sigma_resid=math.sqrt(sigma2),
        df_resid=float(ols.df_resid),
    )
    inside, zs, notes = [], [], []
    for size in held_usable:
        at = held[held["size"] == size]["penalty"]
        k = len(at)
        x0 = np.array([[1.0, math.log(n_params[size])]])
        pred = ols.get_prediction(x0)
        single = pred.summary_frame(alpha=1 - pi_level).iloc[0]
        mu, se_mean = float(pred.predicted_mean[0]), float(pred.se_mean[0])
        se = math.sqrt(se_mean**2 + sigma2 / k)
        lo, hi = mu - t_crit * se, mu + t_crit * se
        obs = float(at.mean())
        ok = lo <= obs <= hi
        inside.append(ok)
        zs.append(abs(obs - mu) / se if se > 0 else math.inf)
        stats.update({
            f"{size}:n_params": n_params[size],
            f"{size}:k": k,
            f"{size}:mean_penalty": obs,
            f"{size}:predicted": mu,
            f"{size}:pi_low": lo,
            f"{size}:pi_high": hi,
            f"{size}:pi_single_low": float(single["obs_ci_lower"]),
            f"{size}:pi_single_high": float(single["obs_ci_upper"]),
            f"{size}:inside": int(ok),
        })
        notes.append(f"{size} {obs:.4f} {'in' if ok else 'OUTSIDE'} [{lo:.4f}, {hi:.4f}]")
    n_in = sum(inside)
    stats.update(
        statistic_value=n_in / len(inside),
        inside=f"{n_in}/{len(inside)}",
        effect_size=max(zs),
    )
    observed = (
        f"{what}: penalty = {ols.params[0]:.4f} {ols.params[1]:+.4f} ln(n_params) fitted on "
        f"{len(fit_present)} sizes (R^2 = {ols.rsquared:.2f}); {n_in}/{len(inside)} held-out "
        f"mean penalties inside their {pi_level:.0%} PI for a mean: " + "; ".join(notes) + "."
    )
    return decided(claim, all(inside), observed, stats)

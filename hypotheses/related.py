"""Decision functions for the related claims R1-R5 (``../shared/STUDY.md`` section 2).

Owns, per claim, a pure decider (a results table in, a Verdict out) and its calibration
scenarios (claim true / false at the boundary delta / clearly false, for
hypotheses/calibration.py):
- ``decide_r1``: the loss-optimal QAT fraction grows with compute (arXiv 2509.22935): a
  per-seed trend, over token budgets, of how much the longest QAT fraction loses to the
  shortest; tokens-per-parameter-byte's ordering of the optima is reported (Kendall tau).
- ``decide_r2``: cooldown-QAT fusion matches or beats an FP cooldown before QAT (same
  paper): non-inferiority at delta.
- ``decide_r3``: WSD cooldown (arXiv 2508.01483), two sub-claims: ``part='shape'`` (1-sqrt
  beats linear and step) and ``part='beta2'`` (a higher beta2 during the cooldown helps).
- ``decide_r4``: a warmdown longer than the run cuts an FP16 run's post-training int8
  penalty (parameter-golf PR #61).
- ``decide_r5``: parameter-golf PR #469, ``part='matched'`` (a larger model at int5 beats a
  smaller one at int6 at matched export bytes) and ``part='qat_start'`` (int5 QAT from 50 %
  of training beats QAT in the last 10 %).

Every comparison is paired by seed (a seed fixes initialisation and data order for every
arm of a size) and judged against the profile's smallest effect of interest delta with the
same three outcomes as C1-C9 (hypotheses/verdict.py). Directional claims ("A beats B",
"cuts", "grows") follow C7's rule: reproduced iff the one-sided (1 - alpha) lower bound of
the predicted effect exceeds delta (the effect is there and large enough to matter),
contradicted iff the one-sided upper bound is below delta (at most immaterial, or
reversed). R2 ("matches or beats") is C1's rule: reproduced iff the upper bound of
y(fused) - y(separate) is <= delta, contradicted iff its lower bound exceeds delta. A
conjunction (R3's shape: 1-sqrt beats *both*) reproduces when every part does (an
intersection-union test needs no correction) and is contradicted when one part's
Bonferroni-corrected bound is (C8's rule).

Diverged runs: excluded, counted in ``n_diverged``; a seed enters a comparison only with
every arm it needs finite (fewer than ``min_pairs`` such seeds is inconclusive).
Paired t bounds come from ``hypotheses.intervals.mean_ci``; Kendall's tau and Page's trend
test are scipy's.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

from hypotheses.calibration import Scenario
from hypotheses.intervals import bonferroni, mean_ci
from hypotheses.verdict import (
    CONTRADICTED,
    ArmTable,
    PREMISE_MET,
    REPRODUCED,
    Inconclusive,
    PremiseAbsent,
    Verdict,
    claim_delta,
    count_stats,
    decider,
    paired,
    paired_difference,
    require_table,
    scenarios,
    three_way,
    verdict,
)

TOL = 1e-6  # fractions are specified to 2 decimals: 1e-6 only absorbs float noise
BASE_BPB = 2.0  # level of the simulated tables: the paired rules never see it


# ---------------------------------------------------------------------------------------
# Shared plumbing
# ---------------------------------------------------------------------------------------


def _bounds_stats(s, level: float) -> dict:
    return {"statistic_value": s.mean, "ci_low": s.low, "ci_high": s.high, "ci_level": level,
            "sd_diff": s.sd, "cohens_dz": s.dz, "paired_t": s.t, "p_value": s.p_two_sided}


def _superiority(d: np.ndarray, delta: float, alpha: float) -> tuple[str, object]:
    """C7's rule on the predicted effect d (> 0 as the claim predicts)."""
    s = mean_ci(d, 1 - 2 * alpha)
    return three_way(s.low > delta, s.high < delta), s


def _too_few(what: str, n: int, min_pairs: int, stats: dict, arms: str) -> None:
    if n < min_pairs:
        raise Inconclusive(f"{what}: only {n} seed(s) with every arm finite ({arms}); "
                           f"{stats['n_diverged']} diverged run(s).",
                           f"fewer than {min_pairs} paired seeds ({n})", stats)


def _common(claim, table: pd.DataFrame, columns: list[str], what: str):
    metric = claim.threshold("metric")
    t = require_table(table, columns, metric, what=what)
    delta = claim_delta(claim)
    alpha, min_pairs = float(claim.threshold("alpha")), int(claim.threshold("min_pairs"))
    stats = {**count_stats(t), "metric": metric, "delta": delta, "alpha": alpha}
    return t, metric, delta, alpha, min_pairs, stats


def _directional_verdict(claim, what: str, label: str, d: np.ndarray, seeds: list[int], delta: float,
                         alpha: float, stats: dict, more: str = "") -> Verdict:
    """The one-sided superiority rule on d, with its sentence."""
    outcome, s = _superiority(d, delta, alpha)
    level = 1 - 2 * alpha
    stats.update(_bounds_stats(s, level), n_paired_seeds=len(seeds), region=f"> {delta:g}",
                 wins=f"{int((d > 0).sum())}/{len(d)}")
    head = (f"{what}: {label} = {s.mean:+.4f} (one-sided {100 * (1 - alpha):g}% bounds "
            f"[{s.low:+.4f}, {s.high:+.4f}], delta {delta:g}; {stats['wins']} seeds in the predicted "
            f"direction; paired t = {s.t:.2f}){more}; {stats['n_diverged']} diverged run(s)")
    if outcome == REPRODUCED:
        return verdict(claim, outcome, head + "; the lower bound exceeds delta.", stats)
    if outcome == CONTRADICTED:
        return verdict(claim, outcome, head + "; the upper bound is below delta: at most an immaterial "
                       "effect, or the reverse.", stats)
    raise Inconclusive(head + ".", f"the bounds [{s.low:+.4f}, {s.high:+.4f}] straddle delta {delta:g}", stats)


def _with_mu(arms: pd.DataFrame, mu_of) -> pd.DataFrame:
    out = arms.reset_index(drop=True).copy()
    out["mu"] = [float(mu_of(r)) for r in out.to_dict("records")]
    return out


def _true_effect(claim) -> float:
    """The effect the 'claim true' scenario gives (in bpb): ``true_effect`` deltas."""
    return float(claim.threshold("true_effect")) * claim_delta(claim)


def _directional_scenarios(claim, arms: pd.DataFrame, shift_of, what: str) -> dict[str, Scenario]:
    """true: the predicted effect at ``true_effect`` x delta; boundary: exactly delta (false
    reproduction <= alpha); violation: no effect (the claim is false)."""
    delta, true = claim_delta(claim), _true_effect(claim)
    return {
        name: Scenario(_with_mu(arms, lambda r, e=e: BASE_BPB + shift_of(r, e)), note)
        for name, e, note in (
            ("true", true, f"{what} by {claim.threshold('true_effect'):g} delta = {true:.4g}"),
            ("boundary", delta, f"{what} by exactly delta = {delta:g}"),
            ("violation", 0.0, f"no effect: {what} by 0"),
        )
    }


# ---------------------------------------------------------------------------------------
# R1: the optimal QAT fraction grows with compute
# ---------------------------------------------------------------------------------------

_R1_COLUMNS = ["size", "bits", "steps", "qat_start"]


def _budget_weights(n: int) -> np.ndarray:
    """Linear-trend weights over budget ranks, scaled so that a linear trend gives last - first
    (3 budgets: -1, 0, 1)."""
    r = np.arange(n, dtype=float) - (n - 1) / 2
    return r / float((r ** 2).sum()) * (n - 1)


def _fraction_slope(frac: np.ndarray, y: np.ndarray) -> float:
    """How much the longest QAT fraction loses to the shortest, by the least-squares line of y
    on the fraction (uses every fraction; with two it is their difference)."""
    f = frac - frac.mean()
    return float((f * (y - y.mean())).sum() / (f ** 2).sum() * (frac.max() - frac.min()))


@decider("R1")
def decide_r1(table: pd.DataFrame, claim) -> Verdict:
    """R1: the loss-optimal QAT fraction grows with total compute.

    Rule (fixtures/claims.toml [R1]): QAT fraction f = 1 - qat_start, budget = steps (x the
    design's fixed batch tokens). Per seed, size and budget b, S_b = the least-squares slope
    of ``metric`` on f times (f_max - f_min): how much the longest QAT loses to the shortest
    (negative: it wins). A growing optimum makes S_b fall with compute (the loss curve in f
    tilts toward long QAT). Per seed, T = -(linear trend of S_b over budget ranks, scaled to
    last - first), averaged over the sizes: the predicted effect, > 0 as the claim predicts.
    C7's rule on T: reproduced iff the one-sided (1 - alpha) lower bound of mean(T) exceeds
    delta; contradicted iff the upper bound is below delta; else inconclusive. Needs
    ``min_budgets`` budgets, ``min_fractions`` fractions and ``min_pairs`` complete seeds.
    Reported, not decided on: the best fraction of every (size, budget) by its mean, its
    tokens-per-parameter-byte (tokens / (params x bits / 8)), Kendall's tau between the two
    (how well the statistic orders the optima), and Page's L test of the per-seed best
    fraction increasing over budgets (scipy.stats.page_trend_test; ties average-ranked).
    """
    what = f"{claim.id}[budgets]"
    t, metric, delta, alpha, min_pairs, stats = _common(claim, table, _R1_COLUMNS, what)
    if t["bits"].nunique() != 1:
        raise ValueError(f"{what}: one bit-width per table, got {sorted(t['bits'].unique())}")
    t = t.assign(frac=(1.0 - t["qat_start"].astype(float)).round(6))
    arms = ArmTable(t, metric, ["size", "steps", "frac"], what=what)
    sizes = list(dict.fromkeys(t["size"]))
    budgets = sorted({k[1] for k in arms})
    fracs = sorted({k[2] for k in arms})
    stats.update(statistic="qat_trend_over_budgets", n_sizes=len(sizes), sizes=",".join(map(str, sizes)),
                 budgets=",".join(str(int(b)) for b in budgets), qat_fractions=",".join(f"{f:g}" for f in fracs),
                 ci_level=1 - 2 * alpha, region=f"> {delta:g}")
    if len(budgets) < int(claim.threshold("min_budgets")) or len(fracs) < int(claim.threshold("min_fractions")):
        raise ValueError(f"{what}: the design has {len(budgets)} budget(s) and {len(fracs)} QAT fraction(s); "
                         f"R1 needs >= {claim.threshold('min_budgets')} and >= {claim.threshold('min_fractions')}")
    missing = [(z, b, f) for z in sizes for b in budgets for f in fracs if (z, b, f) not in arms]
    if missing:
        raise ValueError(f"{what}: the design is not a full size x budget x fraction grid; missing {missing[:3]}")
    seeds, _ = paired(*(arms[k] for k in arms))  # the seeds complete in every (size, budget, fraction)
    w = _budget_weights(len(budgets))
    frac_a = np.array(fracs)
    per_seed, best_by_seed = [], {}
    for s in seeds:
        trends = []
        for z in sizes:
            slopes = [_fraction_slope(frac_a, np.array([arms[(z, b, f)][s] for f in fracs])) for b in budgets]
            trends.append(-float(np.dot(w, slopes)))
            best_by_seed.setdefault(z, []).append([fracs[int(np.argmin([arms[(z, b, f)][s] for f in fracs]))]
                                                   for b in budgets])
        per_seed.append(sum(trends) / len(trends))
    # Reported: the optima by mean, their tokens-per-parameter-byte, and how it orders them.
    best, tppb = [], []
    bits = int(t["bits"].iloc[0])
    params = _params_by_size(t)
    for z in sizes:
        n_par = params.get(z, math.nan)
        for b in budgets:
            means = [sum(arms[(z, b, f)].values()) / len(arms[(z, b, f)]) if arms[(z, b, f)] else math.inf
                     for f in fracs]
            bf = fracs[int(np.argmin(means))]
            tok = b * _batch_tokens(t)
            stats[f"{z}:{int(b)}:best_fraction"] = bf
            stats[f"{z}:{int(b)}:tokens_per_param_byte"] = tok / (n_par * bits / 8) if n_par else math.nan
            best.append(bf)
            tppb.append(stats[f"{z}:{int(b)}:tokens_per_param_byte"])
    with warnings.catch_warnings():  # a constant optimum makes tau undefined (NaN), which is the answer
        warnings.simplefilter("ignore")
        tau = sps.kendalltau(tppb, best) if len(set(best)) > 1 and all(map(math.isfinite, tppb)) else None
    stats["kendall_tau_tppb_best"] = float(tau.statistic) if tau is not None else math.nan
    stats["kendall_p"] = float(tau.pvalue) if tau is not None else math.nan
    stats["page_p"] = _page_p(best_by_seed, len(budgets))
    _too_few(what, len(seeds), min_pairs, stats, f"{len(sizes)} size(s) x {len(budgets)} budgets x {len(fracs)} fractions")
    tau_text = f"{stats['kendall_tau_tppb_best']:+.2f}" if math.isfinite(stats["kendall_tau_tppb_best"]) else "n/a"
    more = ("; best fraction by budget: " + ", ".join(
        f"{z} " + "/".join(f"{stats[f'{z}:{int(b)}:best_fraction']:g}" for b in budgets) for z in sizes)
        + f"; Kendall tau(tokens per param byte, best) = {tau_text}")
    return _directional_verdict(claim, what, "shift toward longer QAT over the budgets", np.array(per_seed), seeds,
                                delta, alpha, stats, more)


def _n_params(t: pd.DataFrame, size) -> float:
    if "n_params" not in t.columns:
        return math.nan
    v = pd.to_numeric(t.loc[t["size"] == size, "n_params"], errors="coerce").dropna()
    return float(v.iloc[0]) if len(v) else math.nan


def _params_by_size(t: pd.DataFrame) -> dict:
    if "n_params" not in t.columns:
        return {}
    return {z: float(n) for z, n in zip(t["size"].tolist(), pd.to_numeric(t["n_params"], errors="coerce").tolist())
            if n == n}


def _batch_tokens(t: pd.DataFrame) -> float:
    return float(t["batch_tokens"].iloc[0]) if "batch_tokens" in t.columns else 1.0


def _page_p(best_by_seed: dict, n_budgets: int) -> float:
    """Page's L test p-value: per (size, seed) block, the best fraction rises over budgets."""
    rows = [r for z in best_by_seed.values() for r in z]
    if len(rows) < 2 or n_budgets < 3 or all(len(set(r)) == 1 for r in rows):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(sps.page_trend_test(np.array(rows, dtype=float)).pvalue)


@scenarios("R1")
def scenarios_r1(claim, arms: pd.DataFrame, noise=None) -> dict[str, Scenario]:
    """R1's scenarios: the loss is linear in the QAT fraction f with a tilt that changes over
    budget ranks r: mu = base + g(r) (f - mean f) / (f_max - f_min), g(r) = e (1/2 - r / (B - 1)),
    so the trend statistic T equals e exactly. true: e = true_effect x delta; boundary: e =
    delta; violation: e = 0 (the optimum does not move with compute)."""
    steps = sorted(arms["steps"].unique())
    frac = 1.0 - arms["qat_start"].astype(float)
    f_mid, f_range = float(frac.mean()), float(frac.max() - frac.min()) or 1.0
    rank = {s: i / max(len(steps) - 1, 1) for i, s in enumerate(steps)}

    def shift(r: dict, e: float) -> float:
        return e * (0.5 - rank[r["steps"]]) * ((1.0 - float(r["qat_start"])) - f_mid) / f_range

    return _directional_scenarios(claim, arms, shift, "long QAT gains on short QAT over the budgets")


# ---------------------------------------------------------------------------------------
# R2: cooldown-QAT fusion matches or beats an FP cooldown before QAT
# ---------------------------------------------------------------------------------------


def _is_fused(qat_start: float, wd: float, restart: bool = False) -> bool:
    """One LR schedule whose warmdown is the QAT phase (a restarting run is never fused)."""
    return not bool(restart) and abs(float(qat_start) - (1.0 - float(wd))) <= TOL


@decider("R2")
def decide_r2(table: pd.DataFrame, claim) -> Verdict:
    """R2: fusing the cooldown with QAT (QAT starts when the warmdown starts: qat_start =
    1 - wd) matches or beats a full-precision cooldown before QAT, at equal total steps.

    Rule (fixtures/claims.toml [R2]): the table holds exactly two arms of one size, bit-width
    and step count: the fused one and the separate one (any other (wd, qat_start)). d =
    ``metric``(fused) - ``metric``(separate) per seed. Non-inferiority at delta (C1's rule):
    reproduced iff the one-sided (1 - alpha) upper bound of mean(d) is <= delta; contradicted
    iff the one-sided lower bound exceeds delta (fusion costs more than delta); else
    inconclusive. Reported: whether fusion is significantly better (upper bound < 0).
    """
    what = f"{claim.id}[fused]"
    cols = ["size", "bits", "steps", "warmdown", "qat_start", "qat_lr_restart"]
    t, metric, delta, alpha, min_pairs, stats = _common(claim, table, cols, what)
    arms = ArmTable(t, metric, cols, what=what)
    fused = [k for k in arms if _is_fused(k[4], k[3], k[5])]
    other = [k for k in arms if not _is_fused(k[4], k[3], k[5])]
    if len(fused) != 1 or len(other) != 1 or fused[0][:3] != other[0][:3]:
        raise ValueError(f"{what}: needs one fused arm (qat_start = 1 - wd, one schedule) and one separate arm "
                         f"of the same size, bits and steps; got fused {fused}, separate {other}")
    (fk,), (ok_,) = fused, other
    level = 1 - 2 * alpha
    stats.update(statistic="fused_minus_separate", region=f"<= {delta:g}", ci_level=level,
                 fused_wd=fk[3], fused_qat_start=fk[4], separate_wd=ok_[3], separate_qat_start=ok_[4],
                 separate_lr_restart=int(bool(ok_[5])))
    seeds, (y_fused, y_separate) = paired(arms[fk], arms[ok_])
    _too_few(what, len(seeds), min_pairs, stats, "fused and separate")
    s = mean_ci(y_fused - y_separate, level)
    stats.update(_bounds_stats(s, level), n_paired_seeds=len(seeds), fused_better_significant=int(s.high < 0),
                 mean_fused=float(np.mean(y_fused)), mean_separate=float(np.mean(y_separate)))
    outcome = three_way(s.high <= delta, s.low > delta)
    restart = ", LR restarted at QAT" if ok_[5] else ""
    head = (f"{what}: fused (wd {fk[3]:g}, QAT from {fk[4]:g}) - separate (wd {ok_[3]:g}, QAT from {ok_[4]:g}{restart}) "
            f"= {s.mean:+.4f} (one-sided {100 * (1 - alpha):g}% bounds [{s.low:+.4f}, {s.high:+.4f}], "
            f"delta {delta:g}); {stats['n_diverged']} diverged run(s)")
    if outcome == REPRODUCED:
        better = "; fusion is significantly better" if s.high < 0 else ""
        return verdict(claim, outcome, head + f"; fusion costs at most delta{better}.", stats)
    if outcome == CONTRADICTED:
        return verdict(claim, outcome, head + "; fusion is worse by more than delta.", stats)
    raise Inconclusive(head + ".", f"the bounds [{s.low:+.4f}, {s.high:+.4f}] straddle delta {delta:g}", stats)


@scenarios("R2")
def scenarios_r2(claim, arms: pd.DataFrame, noise=None) -> dict[str, Scenario]:
    """R2's scenarios (true mean of d = fused - separate): true: d = 0 (fusion matches: the
    weakest form of the claim, so the power is a floor); boundary: d = +delta (fusion worse by
    exactly delta: false reproduction <= alpha); violation: d = +3 delta."""
    delta = claim_delta(claim)

    def arm(d):
        return _with_mu(arms, lambda r: BASE_BPB + (d if _is_fused(r["qat_start"], r["warmdown"], r["qat_lr_restart"])
                                                     else 0.0))

    return {"true": Scenario(arm(0.0), "fusion matches the separate cooldown (d = 0)"),
            "boundary": Scenario(arm(delta), f"fusion worse by exactly delta = {delta:g}"),
            "violation": Scenario(arm(3 * delta), f"fusion worse by 3 delta = {3 * delta:g}")}


# ---------------------------------------------------------------------------------------
# R3: cooldown shape and cooldown beta2
# ---------------------------------------------------------------------------------------


def _beta2_in_cooldown(row_beta2, row_cool) -> float:
    """The Adam beta2 a run used during its cooldown (unset cooldown_beta2 = unchanged)."""
    if row_cool is None or (isinstance(row_cool, float) and math.isnan(row_cool)):
        return round(float(row_beta2), 6)
    return round(float(row_cool), 6)


@decider("R3")
def decide_r3(table: pd.DataFrame, claim, *, part: str) -> Verdict:
    """R3, one sub-claim per test case. The rules: fixtures/claims.toml [R3].

    ``part='shape'``: 1-sqrt (``shape_target``) beats both linear and step
    (``shape_others``). Per other shape o, d_o = ``metric``(o) - ``metric``(1-sqrt) per seed.
    Reproduced iff every d_o's one-sided (1 - alpha) lower bound exceeds delta
    (intersection-union: no correction); contradicted iff some d_o's Bonferroni-corrected
    upper bound (level ``bonferroni(1 - 2 alpha, m)``) is below delta; else inconclusive.
    Headline: the binding contrast (the smallest mean d_o), or the contradicting one.

    ``part='beta2'``: the higher cooldown beta2 beats the lower one (the two beta2 values a
    run uses during its cooldown: ``cooldown_beta2``, or ``beta2`` where unset). d =
    ``metric``(low) - ``metric``(high) per seed; C7's rule.
    """
    if part == "shape":
        return _r3_shape(table, claim)
    if part == "beta2":
        return _r3_beta2(table, claim)
    raise ValueError(f"{claim.id}: unknown part {part!r} (expected 'shape' or 'beta2')")


def _r3_shape(table: pd.DataFrame, claim) -> Verdict:
    what = f"{claim.id}[shape]"
    t, metric, delta, alpha, min_pairs, stats = _common(claim, table, ["size", "bits", "warmdown", "warmdown_shape"], what)
    target = str(claim.threshold("shape_target"))
    others = [str(o) for o in claim.threshold("shape_others")]
    arms = ArmTable(t, metric, ["warmdown_shape"], what=what)
    need = [target, *others]
    if set(need) - {k[0] for k in arms}:
        raise ValueError(f"{what}: shapes {sorted(set(need) - {k[0] for k in arms})} missing from the table "
                         f"(it has {sorted(k[0] for k in arms)})")
    level = 1 - 2 * alpha
    level_b = bonferroni(level, len(others))
    stats.update(statistic="shape_contrast_min", region=f"> {delta:g}", ci_level=level, ci_level_bonferroni=level_b,
                 shapes=",".join(need))
    seeds, values = paired(*(arms[(s,)] for s in need))  # every shape finite at each seed
    y = dict(zip(need, values))
    _too_few(what, len(seeds), min_pairs, stats, ", ".join(need))
    cis, cis_b = {}, {}
    for o in others:
        d = y[o] - y[target]
        cis[o], cis_b[o] = mean_ci(d, level), mean_ci(d, level_b)
        stats.update({f"{o}:mean_diff": cis[o].mean, f"{o}:ci_low": cis[o].low, f"{o}:ci_high": cis[o].high,
                      f"{o}:ci_low_bonf": cis_b[o].low, f"{o}:ci_high_bonf": cis_b[o].high,
                      f"{o}:wins": f"{int((d > 0).sum())}/{len(d)}"})
    for sh in need:
        stats[f"{sh}:mean"] = float(np.mean(y[sh]))
    reproduce = all(c.low > delta for c in cis.values())
    failing = [o for o in others if cis_b[o].high < delta]
    outcome = three_way(reproduce, bool(failing))
    stats["n_paired_seeds"] = len(seeds)
    if outcome == CONTRADICTED:
        head_o = min(failing, key=lambda o: cis[o].mean)
        stats.update(statistic_value=cis[head_o].mean, ci_low=cis_b[head_o].low, ci_high=cis_b[head_o].high,
                     ci_level=level_b, headline_contrast=f"{head_o} - {target}")
    else:
        head_o = min(others, key=lambda o: cis[o].mean)
        stats.update(statistic_value=cis[head_o].mean, ci_low=cis[head_o].low, ci_high=cis[head_o].high,
                     headline_contrast=f"{head_o} - {target}")
    per = "; ".join(f"{o} - {target} = {cis[o].mean:+.4f} [{cis[o].low:+.4f}, {cis[o].high:+.4f}]" for o in others)
    head = (f"{what}: {per} (one-sided {100 * (1 - alpha):g}% bounds, delta {delta:g}, {len(seeds)} seeds); "
            f"{stats['n_diverged']} diverged run(s)")
    if outcome == REPRODUCED:
        return verdict(claim, outcome, head + f"; {target} beats every other shape by more than delta.", stats)
    if outcome == CONTRADICTED:
        return verdict(claim, outcome, head + f"; against {', '.join(failing)} the advantage of {target} is below "
                       f"delta (Bonferroni {100 * level_b:.4g}% bound).", stats)
    raise Inconclusive(head + ".", "a contrast's bounds straddle delta", stats)


def _r3_beta2(table: pd.DataFrame, claim) -> Verdict:
    what = f"{claim.id}[beta2]"
    t, metric, delta, alpha, min_pairs, stats = _common(claim, table, ["size", "bits", "beta2", "cooldown_beta2"], what)
    t = t.assign(beta2_cool=[_beta2_in_cooldown(b, c) for b, c in zip(t["beta2"], t["cooldown_beta2"])])
    arms = ArmTable(t, metric, ["beta2_cool"], what=what)
    if len(arms) != 2:
        raise ValueError(f"{what}: needs exactly two cooldown beta2 values, got {sorted(k[0] for k in arms)}")
    low, high = sorted(arms)
    stats.update(statistic="low_minus_high_beta2", beta2_low=low[0], beta2_high=high[0])
    seeds, d = paired_difference(arms[low], arms[high])
    _too_few(what, len(seeds), min_pairs, stats, "both beta2 values")
    return _directional_verdict(claim, what, f"beta2 {low[0]:g} - beta2 {high[0]:g} in the cooldown", d, seeds,
                                delta, alpha, stats)


@scenarios("R3")
def scenarios_r3(claim, arms: pd.DataFrame, noise=None) -> dict[str, Scenario]:
    """R3's scenarios, by the sub-claim the arms hold. Shape: the other shapes' loss above
    1-sqrt's: true: both by ``true_effect`` x delta; boundary: linear by exactly delta
    (step by the true effect: the conjunction is false by exactly delta at one part);
    violation: linear equal to 1-sqrt. beta2: the low-beta2 arm above the high one by the
    true effect / delta / 0."""
    delta, true = claim_delta(claim), _true_effect(claim)
    target = str(claim.threshold("shape_target"))
    if "warmdown_shape" in arms.columns and arms["warmdown_shape"].nunique() > 1:
        def shape(lin: float, step: float):
            return _with_mu(arms, lambda r: BASE_BPB + (0.0 if r["warmdown_shape"] == target else
                                                        lin if r["warmdown_shape"] == "linear" else step))
        return {"true": Scenario(shape(true, true), f"1-sqrt beats linear and step by {true:.4g}"),
                "boundary": Scenario(shape(delta, true), f"1-sqrt beats linear by exactly delta = {delta:g}"),
                "violation": Scenario(shape(0.0, true), "1-sqrt no better than linear")}
    b2 = [_beta2_in_cooldown(b, c) for b, c in zip(arms["beta2"], arms["cooldown_beta2"])]
    high = max(b2)
    arms = arms.assign(_b2=b2)
    return _directional_scenarios(claim, arms, lambda r, e: e if r["_b2"] < high else 0.0,
                                  "the higher cooldown beta2 wins")


# ---------------------------------------------------------------------------------------
# R4: a warmdown longer than the run cuts the int8 penalty of an FP16 run
# ---------------------------------------------------------------------------------------


@decider("R4")
def decide_r4(table: pd.DataFrame, claim) -> Verdict:
    """R4: a warmdown longer than the run (``wd_long``, LR decaying from step 0) cuts the
    post-training int8 penalty of an FP16 run against the default warmdown (``wd_default``).

    Rule (fixtures/claims.toml [R4]): metric ``int8_penalty`` (val_bpb after the int8 round
    trip minus val_bpb) of the FP16 (``bits``) runs; d = penalty(wd_default) -
    penalty(wd_long) per seed; C7's rule (reproduced iff the lower bound of mean(d) exceeds
    delta, contradicted iff the upper bound is below delta). Reported: each arm's mean
    penalty and val_bpb (a long warmdown may cost more before quantisation than it saves
    after: ``net_int8_gain`` = val_bpb_int8(default) - val_bpb_int8(long)). Premise: where the
    default arm's own penalty is surely below delta (upper bound < delta) there is nothing of
    delta to cut and the verdict is inconclusive.
    """
    what = f"{claim.id}[long-warmdown]"
    t, metric, delta, alpha, min_pairs, stats = _common(claim, table, ["size", "bits", "warmdown"], what)
    bits = int(claim.threshold("bits"))
    if set(t["bits"].astype(int)) != {bits}:
        raise ValueError(f"{what}: R4 is about {bits}-bit (full-precision) runs; the table has bits "
                         f"{sorted(t['bits'].unique())}")
    wd_default, wd_long = float(claim.threshold("wd_default")), float(claim.threshold("wd_long"))
    arms = ArmTable(t, metric, ["warmdown"], what=what)
    for w in (wd_default, wd_long):
        if not any(abs(k[0] - w) <= TOL for k in arms):
            raise ValueError(f"{what}: no runs at warmdown {w:g} (the table has {sorted(k[0] for k in arms)})")
    a_def = next(v for k, v in arms.items() if abs(k[0] - wd_default) <= TOL)
    a_long = next(v for k, v in arms.items() if abs(k[0] - wd_long) <= TOL)
    stats.update(statistic="int8_penalty_cut", wd_default=wd_default, wd_long=wd_long,
                 lr_at_step0=1.0 - (wd_long - 1.0) / wd_long if wd_long > 1 else 1.0)
    seeds, (y_def, y_long) = paired(a_def, a_long)
    d = y_def - y_long
    _too_few(what, len(seeds), min_pairs, stats, "both warmdowns")
    stats.update(penalty_default=float(np.mean(y_def)), penalty_long=float(np.mean(y_long)))
    # The claim presupposes a penalty to cut (PR #61: 0.014). Where the default warmdown's own
    # penalty is surely below delta, no cut of delta is possible whether the claim holds or not:
    # the profile cannot test it, which is inconclusive, not evidence against the claim.
    base = mean_ci(y_def, 1 - 2 * alpha)
    stats["penalty_default_high"] = base.high
    stats.update(premise_statistic="int8_penalty_default_upper_bound", premise_bound=base.high,
                 premise_threshold=delta)
    if base.high < delta:
        raise PremiseAbsent(
            f"{what}: the default warmdown's int8 penalty is {base.mean:+.4f} (upper {100 * (1 - alpha):g}% bound "
            f"{base.high:+.4f}), below delta {delta:g}: there is no penalty of delta to cut at this profile",
            f"no int8 penalty to cut (upper bound {base.high:+.4f} < delta {delta:g})",
            {**stats, **_bounds_stats(mean_ci(d, 1 - 2 * alpha),
                                      1 - 2 * alpha), "n_paired_seeds": len(seeds), "region": f"> {delta:g}"})
    for col, key in (("val_bpb", "val_bpb"), ("val_bpb_int8", "val_bpb_int8")):
        if col in t.columns:
            side = ArmTable(t.assign(**{"finite": t["finite"] & np.isfinite(pd.to_numeric(t[col], errors="coerce"))}),
                            col, ["warmdown"], what=what)
            vd = next(v for k, v in side.items() if abs(k[0] - wd_default) <= TOL)
            vl = next(v for k, v in side.items() if abs(k[0] - wd_long) <= TOL)
            both, (x_def, x_long) = paired(vd, vl)
            if both:
                stats[f"{key}_default"] = float(np.mean(x_def))
                stats[f"{key}_long"] = float(np.mean(x_long))
    stats["premise"] = PREMISE_MET
    if "val_bpb_int8_default" in stats:
        stats["net_int8_gain"] = stats["val_bpb_int8_default"] - stats["val_bpb_int8_long"]
    more = f"; mean int8 penalty {stats['penalty_default']:+.4f} (wd {wd_default:g}) vs {stats['penalty_long']:+.4f} (wd {wd_long:g})"
    return _directional_verdict(claim, what, f"int8 penalty(wd {wd_default:g}) - penalty(wd {wd_long:g})", d, seeds,
                                delta, alpha, stats, more)


@scenarios("R4")
def scenarios_r4(claim, arms: pd.DataFrame, noise=None) -> dict[str, Scenario]:
    """R4's scenarios: the default warmdown's int8 penalty above the long one's by the true
    effect (``true_effect`` x delta: PR #61's cut in deltas), by exactly delta, or by 0."""
    wd_default = float(claim.threshold("wd_default"))
    return _directional_scenarios(claim, arms, lambda r, e: e if abs(float(r["warmdown"]) - wd_default) <= TOL else 0.0,
                                  "the long warmdown cuts the int8 penalty")


# ---------------------------------------------------------------------------------------
# R5: train larger, quantise harder; early int5 QAT
# ---------------------------------------------------------------------------------------


@decider("R5")
def decide_r5(table: pd.DataFrame, claim, *, part: str) -> Verdict:
    """R5 (parameter-golf PR #469), one sub-claim per test case. The rules: fixtures/claims.toml [R5].

    ``part='matched'``: at matched export size, the larger model at ``large_bits`` (int5)
    beats the smaller one at ``small_bits`` (int6). The table holds one size per bit-width;
    the match is checked on the records' ``size_field`` (bytes of the export as
    parameter-golf counts its artifact): mean bytes(large) / mean bytes(small) must be at
    most 1 + ``size_tol`` and the int5 model must have more parameters, else the design is
    wrong (a pipeline error naming the pair). A record without ``size_field`` is an error
    naming the engine field. d = ``metric``(small, int6) - ``metric``(large, int5); C7's rule.

    ``part='qat_start'``: int5 QAT from ``qat_early`` (0.5) beats QAT from ``qat_late``
    (0.9: the last 10 %). d = ``metric``(late) - ``metric``(early); C7's rule.
    """
    if part == "matched":
        return _r5_matched(table, claim)
    if part == "qat_start":
        return _r5_qat(table, claim)
    raise ValueError(f"{claim.id}: unknown part {part!r} (expected 'matched' or 'qat_start')")


def _r5_matched(table: pd.DataFrame, claim) -> Verdict:
    what = f"{claim.id}[matched]"
    field = str(claim.threshold("size_field"))
    if field not in table.columns or pd.to_numeric(table.loc[table["status"] == "ok", field],
                                                   errors="coerce").isna().any():
        raise ValueError(f"{what}: the run records lack {field!r} (bytes of the quantised export); the engine "
                         f"must record it for every ok run (retrain the R5 runs with an engine that does)")
    t, metric, delta, alpha, min_pairs, stats = _common(claim, table, ["size", "bits", "n_params", field], what)
    large_bits, small_bits = int(claim.threshold("large_bits")), int(claim.threshold("small_bits"))
    arms = ArmTable(t, metric, ["size", "bits"], what=what)
    large = [k for k in arms if k[1] == large_bits]
    small = [k for k in arms if k[1] == small_bits]
    if len(large) != 1 or len(small) != 1 or len(arms) != 2:
        raise ValueError(f"{what}: needs one size at int{large_bits} and one at int{small_bits}; got {sorted(arms)}")
    (lk,), (sk,) = large, small
    ok = t[t["finite"]]
    b_large = float(pd.to_numeric(ok.loc[ok["size"] == lk[0], field]).mean())
    b_small = float(pd.to_numeric(ok.loc[ok["size"] == sk[0], field]).mean())
    n_large, n_small = _n_params(t, lk[0]), _n_params(t, sk[0])
    ratio = b_large / b_small
    tol = float(claim.threshold("size_tol"))
    if not (ratio <= 1 + tol and n_large > n_small):
        raise ValueError(f"{what}: {lk[0]}@int{large_bits} ({n_large:.0f} params, {b_large:.0f} B) vs "
                         f"{sk[0]}@int{small_bits} ({n_small:.0f} params, {b_small:.0f} B) is not a matched pair "
                         f"(bytes ratio {ratio:.3f} > {1 + tol:g}, or the int{large_bits} model is not the larger); "
                         f"choose the sizes of the profile's r5_large / r5_small designs so the export bytes match")
    stats.update(statistic="small_int6_minus_large_int5", large=f"{lk[0]}@int{large_bits}",
                 small=f"{sk[0]}@int{small_bits}", bytes_large=b_large, bytes_small=b_small, bytes_ratio=ratio,
                 params_ratio=n_large / n_small, size_field=field)
    seeds, d = paired_difference(arms[sk], arms[lk])
    _too_few(what, len(seeds), min_pairs, stats, "both models")
    return _directional_verdict(claim, what, f"{sk[0]}@int{small_bits} - {lk[0]}@int{large_bits}", d, seeds, delta,
                                alpha, stats, f"; export bytes ratio {ratio:.3f}")


def _r5_qat(table: pd.DataFrame, claim) -> Verdict:
    what = f"{claim.id}[qat_start]"
    t, metric, delta, alpha, min_pairs, stats = _common(claim, table, ["size", "bits", "qat_start"], what)
    early, late = float(claim.threshold("qat_early")), float(claim.threshold("qat_late"))
    arms = ArmTable(t, metric, ["qat_start"], what=what)
    a_e = next((v for k, v in arms.items() if abs(k[0] - early) <= TOL), None)
    a_l = next((v for k, v in arms.items() if abs(k[0] - late) <= TOL), None)
    if a_e is None or a_l is None or len(arms) != 2:
        raise ValueError(f"{what}: needs QAT from {early:g} and from {late:g} only; the table has "
                         f"{sorted(k[0] for k in arms)}")
    stats.update(statistic="late_minus_early_qat", qat_early=early, qat_late=late)
    seeds, d = paired_difference(a_l, a_e)
    _too_few(what, len(seeds), min_pairs, stats, "both QAT starts")
    return _directional_verdict(claim, what, f"QAT from {late:g} - QAT from {early:g}", d, seeds, delta, alpha, stats)


def export_bytes_estimate(n_params: float, embed_params: float, bits: int) -> float:
    """Bytes of an export as the profiles' pairing assumes it: block weights at ``bits`` per
    parameter, the tied embedding (``embed_params``; 0 when it is quantised too) in fp16
    (parameter-golf's export); scales and control vectors are ignored (< 2 %). Used by R5's scenarios to
    give simulated tables a size field, and documented as the rule the pairs were chosen by."""
    return embed_params * 2 + (n_params - embed_params) * bits / 8


@scenarios("R5")
def scenarios_r5(claim, arms: pd.DataFrame, noise=None) -> dict[str, Scenario]:
    """R5's scenarios, by the sub-claim the arms hold: the losing arm (int6 small model, or the
    late QAT start) above the other by the true effect / exactly delta / 0. Matched arms carry
    an estimated export size (``export_bytes_estimate`` from the ladder) in ``size_field``."""
    if "qat_start" in arms.columns and arms["qat_start"].nunique() > 1:
        early = float(claim.threshold("qat_early"))
        return _directional_scenarios(claim, arms, lambda r, e: 0.0 if abs(float(r["qat_start"]) - early) <= TOL
                                      else e, "QAT from 50 % wins")
    from engine.ladder import get_config

    small_bits = int(claim.threshold("small_bits"))
    field = str(claim.threshold("size_field"))
    quant_emb = arms["quantize_embeddings"] if "quantize_embeddings" in arms.columns else [False] * len(arms)
    emb = [0.0 if q else get_config(s).dim * (256 if str(s).startswith("t") else 1024)
           for s, q in zip(arms["size"], quant_emb)]
    arms = arms.assign(**{field: [export_bytes_estimate(n, e, int(b))
                                  for n, e, b in zip(arms["n_params"], emb, arms["bits"])]})
    return _directional_scenarios(claim, arms, lambda r, e: e if int(r["bits"]) == small_bits else 0.0,
                                  "the larger int5 model wins")

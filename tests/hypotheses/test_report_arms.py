"""Every figure tells apart every arm its decider compares (issue 23, item 4).

One test per figure: the arms the figure draws (``Plot.arms``) equal the arms its verdict
compares, read independently of the figure: from the verdict row's stats (warmdowns,
contrasts, sizes) or, where the decider pairs runs of its test case, from the test case's
run specs (``hypotheses.cells.cell_specs``: an arm is every spec field but the seed).
A figure that pooled two arms (R2's, which differ only in ``qat_lr_restart``) draws fewer
labels than the verdict compares.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cache import ResultsCache
from engine.design import load_profile
from hypotheses.cells import cell_specs, cells_for
from hypotheses.claims import load_claims
from hypotheses.report.inputs import load_designs, normalise_rows, size_params
from hypotheses.report.plots import draw_all
from tests.hypotheses.test_report import _stats, c1_row, fill, write_profile

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "fixtures" / "profiles" / "tiny.toml"
R_CLAIMS = ("R1", "R2", "R3", "R4", "R5")


def _draw(cache_dir: Path, profile, rows: list[dict], out: Path) -> dict:
    designs = load_designs(ResultsCache(cache_dir), profile)
    return {p.name: p for p in draw_all(load_claims(), normalise_rows(rows), designs, profile,
                                        size_params(designs), out)}


def _spec_arms(specs) -> set[tuple]:
    """The arms of a test case: its runs' specs without the seed, as hashable tuples."""
    return {tuple(sorted((k, str(v)) for k, v in s.to_dict().items() if k != "seed")) for s in specs}


@pytest.fixture
def reporttest(tmp_path, fake_result):
    path = write_profile(tmp_path)
    fill(tmp_path / "cache", path, fake_result)
    return tmp_path, load_profile(path)


@pytest.fixture(scope="module")
def related(tmp_path_factory, fake_result):
    """The tiny profile with fake runs of R1-R5's designs only, and the figures drawn from them."""
    root = tmp_path_factory.mktemp("related")
    profile = load_profile(TINY)
    claims = load_claims()
    cache = ResultsCache(root / "cache")
    wanted = {d for cid in R_CLAIMS for d in claims[cid].designs}
    for spec in {s.run_id: s for d in wanted for s in profile.design(d).specs}.values():
        result = fake_result(spec)
        cache.put(spec, {**result, "int8_penalty": result["val_bpb_int8"] - result["val_bpb"]})  # R4's metric
    return profile, claims, _draw(root / "cache", profile, [], root / "plots")


# --- figures whose arms are the test case's runs ----------------------------------------------


@pytest.mark.parametrize("claim_id", ["R2", "R3", "R4", "R5"])
def test_related_figure_draws_every_arm_of_every_test_case(related, claim_id):
    profile, claims, plots = related
    claim = claims[claim_id].at_profile(profile)
    plot = plots[f"{claim_id.lower()}_paired_arms"]
    assert plot.path, plot.skipped
    for cell in cells_for(claim, profile):
        expected = _spec_arms(cell_specs(profile, cell))
        drawn = plot.arms.get(cell.id, ())
        assert len(drawn) == len(set(drawn)), f"{cell.id}: two arms share a label: {drawn}"
        assert len(drawn) == len(expected), f"{cell.id}: figure {drawn}, verdict's arms {len(expected)}"


def test_r2_figure_labels_its_arms_by_the_lr_restart(related):
    """The field R2's two arms differ in names both of them (the committed example pooled them)."""
    _, _, plots = related
    assert set(plots["r2_paired_arms"].arms["fused"]) == {"no LR restart", "LR restarted at QAT"}


def test_a_partly_filled_cache_fails_no_figure(related):
    """C6's designs here: phase2 holds a few runs (shared with R3 and R4), phase5_sizes none."""
    _, _, plots = related
    assert not [p.name for p in plots.values() if p.skipped.startswith("figure failed")]


def test_r1_figure_draws_every_budget_and_qat_fraction_per_size(related):
    profile, claims, plots = related
    claim = claims["R1"].at_profile(profile)
    specs = [s for c in cells_for(claim, profile) for s in cell_specs(profile, c)]
    plot = plots["r1_qat_fraction_vs_budget"]
    assert plot.path, plot.skipped
    for size in {s.size for s in specs}:
        expected = {f"{s.steps} steps, QAT fraction {1 - s.qat_start:g}" for s in specs if s.size == size}
        assert len(plot.arms[size]) == len(set(plot.arms[size]))
        assert set(plot.arms[size]) == expected


def test_loss_curves_draw_one_line_per_warmdown(reporttest):
    root, profile = reporttest
    plot = _draw(root / "cache", profile, [], root / "plots")["c1_loss_curves"]
    wds = {f"wd {s.warmdown:g}" for s in profile.design("phase2").specs}
    assert plot.arms and all(set(arms) == wds for arms in plot.arms.values())


# --- figures whose arms are named by the verdict's stats ---------------------------------------


def test_c1_figure_draws_every_warmdown_the_row_compares(reporttest):
    root, profile = reporttest
    rows = [c1_row("int6-t20k", 6, "t20k", "contradicted", 0.5), c1_row("fp16-t20k", 16, "t20k", "reproduced", 0.33)]
    plot = _draw(root / "cache", profile, rows, root / "plots")["c1_wd_optimum"]
    for row in rows:
        compared = sorted(float(k.removeprefix("stat_mean_wd")) for k in row if k.startswith("stat_mean_wd"))
        assert plot.arms[row["cell"]] == tuple(f"wd {w:g}" for w in compared)


def _contrast_row(cell: str, labels: list[str]) -> dict:
    stats = {}
    for i, label in enumerate(labels):
        stats.update({f"{label}:mean": 0.001 * i, f"{label}:ci90_low": -0.01, f"{label}:ci90_high": 0.01})
    return {"claim_id": "C2", "cell": cell, "verdict": "reproduced", "stability": 0.9, "fragile": 0,
            **_stats(region="[-0.02, 0.02]", **stats)}


def test_contrast_figure_draws_every_contrast_even_where_two_cases_share_a_label(reporttest):
    root, profile = reporttest
    labels = ["all INT6 wd0.1", "all INT6 wd0.5"]
    rows = [_contrast_row("t20k", labels), _contrast_row("t45k", labels + ["all INT8 wd0.1"])]
    plot = _draw(root / "cache", profile, rows, root / "plots")["c2_interaction_contrasts"]
    drawn = plot.arms["contrasts"]
    assert len(drawn) == len(set(drawn)) == sum(k.endswith(":mean") for r in rows for k in r)
    assert "t20k: all INT6 wd0.1" in drawn and "t45k: all INT6 wd0.1" in drawn and "all INT8 wd0.1" in drawn


def _c6_row(fit: str, held: str) -> dict:
    per_size = {}
    for s in held.split(","):
        per_size.update({f"{s}:n_params": 10_000, f"{s}:predicted": 0.1, f"{s}:mean_penalty": 0.1,
                         f"{s}:ci_low": -0.005, f"{s}:ci_high": 0.005})
    return {"claim_id": "C6", "cell": "phase2-fit-heldout", "verdict": "reproduced", "stability": 0.9, "fragile": 0,
            **_stats(statistic="max_abs_prediction_error", intercept=0.5, slope_per_log_param=-0.04,
                     fit_sizes=fit, heldout_compared=held, settings="wd0.33/lr1", **per_size)}


@pytest.mark.parametrize("held", ["t10k,t100k", "t10k"])
def test_c6_figure_draws_the_sizes_the_fit_and_the_prediction_compare(reporttest, held):
    root, profile = reporttest
    fit = "t20k,t45k,t60k"
    plot = _draw(root / "cache", profile, [_c6_row(fit, held)], root / "plots")["c6_penalty_vs_size"]
    assert plot.arms["fit"] == tuple(fit.split(","))
    assert plot.arms["held-out"] == tuple(held.split(","))  # t100k is in the cache, not in this verdict


def test_int4_figure_draws_every_size_c7_and_c8_compare(reporttest):
    root, profile = reporttest
    c7 = {"claim_id": "C7", "cell": "t60k", "verdict": "reproduced", "stability": 0.9, "fragile": 0,
          **_stats(statistic="mean_diff", size="t60k", mean_diff=0.1, ci_low=0.05, ci_high=0.15, region="> 0.02")}
    c8 = {"claim_id": "C8", "cell": "small-sizes", "verdict": "inconclusive", "reason": "wide", "stability": 0.6,
          "fragile": 1, **_stats(statistic="mean_diff_max_abs", sizes="t10k,t20k", region="[-0.02, 0.02]",
                                 **{"t10k:mean_diff": 0.011, "t10k:ci_low": -0.001, "t10k:ci_high": 0.023,
                                    "t20k:mean_diff": -0.002, "t20k:ci_low": -0.01, "t20k:ci_high": 0.006})}
    plot = _draw(root / "cache", profile, [c7, c8], root / "plots")["c7_c8_int4_wd_difference"]
    compared = [c7["stat_size"], *c8["stat_sizes"].split(",")]
    assert set(plot.arms["sizes"]) == set(compared) and len(plot.arms["sizes"]) == len(compared)
    assert plot.arms["each size"] == ("wd 0.1", "wd 0.33")


def test_c9_figure_draws_both_bit_widths_the_ratio_compares(reporttest):
    root, profile = reporttest
    c9 = {"claim_id": "C9", "cell": "probe", "verdict": "reproduced", "stability": 1.0, "fragile": 0,
          **_stats(statistic="distance_ratio", ratio=1.0, ci90_low=0.95, ci90_high=1.05, band_low=0.9,
                   band_high=1.15, region="[0.90, 1.15]")}
    plot = _draw(root / "cache", profile, [c9], root / "plots")["c9_grid_distance"]
    assert set(plot.arms["histogram"]) == {"FP16", "INT6"} and plot.arms["ratio"] == ("INT6/FP16",)

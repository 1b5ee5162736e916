"""The report never misleads a reader (issue 23, item 4): one labelled confidence level per
column, the calibration's tolerance stated, device time counted once per pack, inconclusive
verdicts explained, a table of contents, one number format, and the overview forest plot
reading the verdicts' own numbers.
"""

from __future__ import annotations

import json

import pytest

from engine.cache import ResultsCache
from engine.design import load_profile
from hypotheses.report import SUMMARY_MD, build_report
from hypotheses.report.inputs import (
    CALIBRATION_SLACK,
    cell_summary,
    fmt_bpb,
    fmt_pct,
    load_designs,
    parse_region,
    summarise_cache,
)
from tests.hypotheses.test_report import ROWS, _stats, c1_row, fill, write_profile


@pytest.fixture
def profile_path(tmp_path):
    return write_profile(tmp_path)


def _c8_row(stability: float, **extra) -> dict:
    """C8 of the committed example: a 90 % CI wholly below 0 that crosses -δ, inconclusive."""
    return {"claim_id": "C8", "cell": "small-sizes", "verdict": "inconclusive", "profile": "reporttest",
            "observed": "C8 observed", "reason": "the CI of t10k reaches beyond [-delta, delta] without lying outside it",
            "stability": stability, "fragile": int(stability < 0.8), **extra,
            **_stats(statistic="mean_diff_max_abs", statistic_value=-0.0138, ci_low=-0.026, ci_high=-0.0017,
                     region="[-0.025, 0.025]", delta=0.025, inconclusive_kind="seeds")}


def _report(tmp_path, profile_path, rows) -> str:
    build_report(tmp_path / "cache", tmp_path / "reports", str(profile_path), rows=rows)
    return (tmp_path / "reports" / SUMMARY_MD).read_text()


# --- number formats -----------------------------------------------------------------------------


def test_one_format_for_bpb_numbers_and_one_for_percentages():
    assert [fmt_bpb(v) for v in (0.031, -0.0017, 0.001, None)] == ["0.0310", "-0.0017", "0.0010", "n/a"]
    assert [fmt_pct(p) for p in (0.42, 0.995, 1.0, 0.9, None)] == ["42 %", "99.5 %", "100 %", "90 %", "n/a"]


def test_regions_are_read_from_the_verdicts_text():
    eq, above, below = (parse_region(t) for t in ("[-0.025, 0.025]", "> 0.025", "<= 0.02"))
    assert (eq.low, eq.high) == (-0.025, 0.025) and eq.holds(-0.01, 0.02) and not eq.holds(-0.03, 0.0)
    assert above.edges == [0.025] and above.excludes(-0.01, 0.02) and above.contains(0.03)
    assert below.edges == [0.02] and below.contains(-5.0) and not below.contains(0.03)
    assert parse_region("") is None and parse_region("somewhere") is None


# --- confidence levels --------------------------------------------------------------------------


def test_each_bounds_column_names_one_level_and_marks_a_bound_at_another(tmp_path, profile_path):
    rows = [c1_row("fp16-t20k", 16, "t20k", "reproduced", 0.33),
            c1_row("int6-t20k", 6, "t20k", "reproduced", 0.33, ci_level=0.95)]
    md = _report(tmp_path, profile_path, rows)
    assert "| Bounds: 90 % CI unless marked; region the claim predicts |" in md
    at_90 = next(ln for ln in md.splitlines() if ln.startswith("| fp16-t20k"))
    at_95 = next(ln for ln in md.splitlines() if ln.startswith("| int6-t20k"))
    assert "| [-0.0110, 0.0125]; claim predicts <= 0.02 |" in at_90
    assert "| [-0.0110, 0.0125] (95 % CI); claim predicts <= 0.02 |" in at_95
    assert "at 90 %" not in md and "95 % bounds that the rules and the observed texts speak of" in md


# --- inconclusive verdicts in words -------------------------------------------------------------


def test_an_inconclusive_ci_wholly_below_zero_says_why_and_the_nearer_outcome():
    text = cell_summary(_c8_row(0.42)).why_inconclusive()
    assert "90 % CI [-0.0260, -0.0017] lies wholly below 0" in text
    assert "crosses the region's edge -0.0250" in text
    assert "neither wholly inside (reproduced) nor wholly outside (contradicted)" in text
    assert "repeats inconclusive with probability 42 % only" in text
    assert "the nearer decided outcome is reproduced" in text  # its statistic -0.0138 lies inside ±0.025


def test_the_likely_rerun_outcome_comes_from_the_verdicts_own_numbers():
    stable = cell_summary(_c8_row(0.9)).why_inconclusive()
    assert "most likely gives inconclusive again (stability 90 %)" in stable
    shares = {"stability_reproduced": 0.55, "stability_contradicted": 0.03, "stability_inconclusive": 0.42}
    assert "most likely gives reproduced (55 %)" in cell_summary(_c8_row(0.42, **shares)).why_inconclusive()


def test_the_explanation_stands_beside_the_inconclusive_case(tmp_path, profile_path):
    md = _report(tmp_path, profile_path, [_c8_row(0.42)])
    line = next(ln for ln in md.splitlines() if ln.startswith("| small-sizes"))
    assert "inconclusive because: the CI of t10k" in line and "lies wholly below 0" in line
    decided = cell_summary(c1_row("fp16-t20k", 16, "t20k", "reproduced", 0.33))
    premise = cell_summary({**_c8_row(0.42), "stat_inconclusive_kind": "premise"})
    assert decided.why_inconclusive() == "" and premise.why_inconclusive() == ""


# --- calibration ------------------------------------------------------------------------------


def test_calibration_states_the_bound_its_test_holds_the_rates_to(tmp_path, profile_path):
    from tests.hypotheses.test_calibration import SLACK

    assert CALIBRATION_SLACK == SLACK, "the report states the calibration test's slack"
    cal = tmp_path / "reports" / "calibration"
    cal.mkdir(parents=True)
    row = {"claim_id": "C1", "cell": "fp16-t20k", "n_seeds": 3, "delta": 0.02, "false_contradict": 0.063,
           "edge_contradict": 0.07, "false_reproduce": 0.01, "power_reproduce": 0.6, "power_contradict": 0.9}
    (cal / "reporttest.json").write_text(json.dumps({"profile": "reporttest", "draws": 300, "rows": [row]}))
    md = _report(tmp_path, profile_path, [])
    assert f"at most 0.05 + {SLACK:g}" in md and "tests/hypotheses/test_calibration.py" in md
    assert "| 0.063 | 0.070 | 0.010 | 0.080 |" in md, "rates above alpha but within the slack are not marked"
    assert "at most the claim's alpha (0.05)" not in md


# --- device time ------------------------------------------------------------------------------


def test_device_time_counts_each_pack_once(tmp_path, profile_path, fake_result):
    """Four runs trained as one pack each record the pack's 100 s; two single runs 10 s each."""
    profile = load_profile(profile_path)
    specs = profile.design("phase5_adamw").specs[:6]
    packed, single = {s.run_id for s in specs[:4]}, {s.run_id for s in specs[4:]}

    def result(spec, diverged=False):
        r = fake_result(spec, diverged)
        if spec.run_id in packed:
            return {**r, "packed": 4, "train_time_s": 100.0, "wall_time_s": 120.0}
        return {**r, "train_time_s": 10.0, "wall_time_s": 12.0}

    fill(tmp_path / "cache", profile_path, result, keep=lambda s: s.run_id in packed | single)
    summary = summarise_cache(ResultsCache(tmp_path / "cache"), load_designs(ResultsCache(tmp_path / "cache"), profile))
    assert summary.runs_used == 6 and summary.n_packed == 4
    assert summary.train_s == pytest.approx(100.0 + 2 * 10.0)  # was 4 x 100 + 20
    assert summary.wall_s == pytest.approx(120.0 + 2 * 12.0)
    md = _report(tmp_path, profile_path, [])
    assert "120 training device-seconds" in md and "each pack's time once" in md and "4 of the runs trained in packs" in md


# --- contents and the overview -----------------------------------------------------------------


def test_contents_link_every_section_and_claim_and_the_overview_comes_first(tmp_path, profile_path):
    md = _report(tmp_path, profile_path, ROWS)
    contents = md[md.index("## Contents"):md.index("## Overview")]
    for anchor in ("overview", "summary", "claims", "claim-c1", "claim-r5", "figures", "calibration", "cache"):
        assert f"(#{anchor})" in contents, anchor
        assert f'<a id="{anchor}"></a>' in md, anchor
    assert md.index("## Overview") < md.index("## Summary")
    assert "![" in md[md.index("## Overview"):md.index("## Summary")]


def test_the_overview_shows_every_case_with_the_verdicts_own_numbers(tmp_path, profile_path):
    rows = ROWS + [_c8_row(0.42)]
    build_report(tmp_path / "cache", tmp_path / "reports", str(profile_path), rows=rows)
    from hypotheses.claims import load_claims
    from hypotheses.report import plots
    from hypotheses.report.inputs import normalise_rows, summarise_claims

    summaries = summarise_claims(load_claims(), normalise_rows(rows), load_profile(profile_path), {},
                                 plots.plots_for_claim)
    p = plots.overview_figure(summaries, tmp_path / "plots")
    assert p.path and p.path.is_file()
    assert set(p.arms["test cases"]) == {f"{r['claim_id']} {r['cell']}" for r in rows}
    for r in rows:
        got = p.numbers[f"{r['claim_id']} {r['cell']}"]
        assert got["verdict"] == r["verdict"]
        if r["verdict"] != "error":
            assert (got["value"], got["low"], got["high"]) == (r["stat_statistic_value"], r["stat_ci_low"],
                                                               r["stat_ci_high"])
            assert got["region"] == r["stat_region"] and got["stability"] == r["stability"]
    assert "2 inconclusive" in p.title and "1 error" in p.title

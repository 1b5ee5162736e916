"""engine.report: the pages render from any state of the cache, and the HTML is self-contained.

A synthetic profile (written to tmp) and synthetic records stored through `ResultsCache.put`
stand in for training: these are rendering tests, so the numbers only need the right shape.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from engine.cache import ResultsCache
from engine.design import ProfileError, load_profile
from engine.report import REPORT_HTML, SUMMARY_MD, build_report, load_verdicts, main_figure

PROFILE_TOML = """
[profile]
name = "reporttest"
description = "synthetic profile for the report tests"

[defaults]
steps = 40
batch_tokens = 256
seq_len = 32

[roles]
int4_small = ["t10k"]
int4_large = ["t60k"]

[designs.phase2]
grid = { size = ["t20k", "t45k", "t60k"], bits = [16, 6], wd = [0.10, 0.33], seed = [0, 1] }

[designs.phase5_adamw]
grid = { size = ["t20k"], bits = [16, 6], wd = [0.10, 0.33], seed = [0, 1] }
set = { optimizer = "adamw" }

[designs.phase5_sizes]
grid = { size = ["t10k", "t100k"], bits = [16, 6], wd = [0.33], seed = [0, 1] }

[designs.phase5_int4]
grid = { size = ["t10k", "t60k"], bits = [4], wd = [0.10, 0.33], seed = [0, 1, 2] }

[designs.mechanism_probe]
grid = { size = ["t20k"], bits = [16, 6], wd = [0.33], seed = [0, 1, 2] }
set = { probe_fracs = [0.5] }
"""

def write_profile(directory: Path) -> Path:
    path = directory / "reporttest.toml"
    path.write_text(PROFILE_TOML)
    return path


@pytest.fixture
def profile_path(tmp_path: Path) -> Path:
    return write_profile(tmp_path)


def fill(cache_dir: Path, profile_path: Path, fake_result, keep=lambda spec: True, diverge=()) -> int:
    """Store a fake record for every spec of the profile that `keep` accepts; returns how many."""
    cache = ResultsCache(cache_dir)
    n = 0
    for spec in load_profile(profile_path).all_specs():
        if keep(spec):
            cache.put(spec, fake_result(spec, diverged=spec.run_id in diverge))
            n += 1
    return n


def write_verdicts(report_dir: Path, profile_path: Path, rows: list[dict], name: str = "reporttest") -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    payload = {"profile": name, "profile_path": str(profile_path), "verdicts": rows}
    (report_dir / "verdicts.json").write_text(json.dumps(payload))


OK_ROW = {
    "nodeid": "hypotheses/test_schedule_claims.py::test_c1_wd33_optimal[int6-t20k]", "pytest_outcome": "passed",
    "claim_id": "C1", "verdict": "reproduced", "profile": "reporttest", "cell": "int6-t20k",
    "statement": "s", "observed": "optimal wd 0.33 by 0.012", "reason": "",
    "stat_statistic": "optimal_wd", "stat_statistic_value": 0.33, "stat_p_value": 0.04,
    "stat_effect_size_name": "margin_bpb", "stat_effect_size": 0.012,
    "stat_n_seeds": 2, "stat_n_runs": 4, "stat_n_diverged": 0,
}
UNDECIDED_ROW = {**OK_ROW, "nodeid": OK_ROW["nodeid"].replace("int6-t20k", "fp16-t20k"), "cell": "fp16-t20k",
                 "pytest_outcome": "skipped", "verdict": "undecided", "reason": "fewer than 2 finite seeds",
                 "stat_statistic_value": float("nan")}
ERROR_ROW = {
    "nodeid": "hypotheses/test_mechanism_claims.py::test_c9_no_grid_snapping[probe]", "pytest_outcome": "error",
    "verdict": "error", "profile": "reporttest",
    "error": "MissingRunsError: 6 run(s) missing from the cache and training is off.",
}


def html_links(text: str) -> list[str]:
    return re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)', text, flags=re.IGNORECASE)


# --- tests ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_report(tmp_path_factory, fake_result) -> Path:
    """A complete cache plus a verdicts.json with reproduced, undecided and error rows; the
    profile is taken from verdicts.json (profile=None). Built once: figures take seconds."""
    root = tmp_path_factory.mktemp("full")
    profile_path = write_profile(root)
    fill(root / "cache", profile_path, fake_result)
    write_verdicts(root / "reports", profile_path, [OK_ROW, UNDECIDED_ROW, ERROR_ROW])
    out = build_report(root / "cache", root / "reports", None)
    assert out == root / "reports" / REPORT_HTML
    return root / "reports"


def test_html_is_self_contained(full_report):
    page = (full_report / REPORT_HTML).read_text()
    links = html_links(page)
    assert links, "the page has in-page links"
    assert not [u for u in links if u.lower().startswith(("http://", "https://", "//"))]
    imgs = re.findall(r"<img\b[^>]*>", page)
    assert len(imgs) == 6  # every figure of a complete cache (no phase5_cosine/long designs here)
    assert all(re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', i) for i in imgs)
    anchors = set(re.findall(r'id="([^"]+)"', page))
    assert {u[1:] for u in links if u.startswith("#")} <= anchors, "every in-page link has its target"


def test_markdown_names_only_plots_that_exist(full_report):
    md = (full_report / SUMMARY_MD).read_text()
    named = set(re.findall(r"plots/([\w.-]+\.png)", md))
    assert len(named) == 6
    assert all((full_report / "plots" / n).is_file() for n in named)
    assert "figure failed" not in md
    assert "Skipped: profile 'reporttest' has no design 'phase5_cosine'" in md


def test_verdict_rows_render_error_undecided_and_multi_cell_tally(full_report):
    md = (full_report / SUMMARY_MD).read_text()
    page = (full_report / REPORT_HTML).read_text()
    for text in (md, page):
        assert "MissingRunsError: 6 run(s) missing from the cache" in text
        assert "ERROR" in text
        assert "fewer than 2 finite seeds" in text
        assert "1/2 cells reproduced" in text  # C1 has two cells here, one reproduced
        assert "optimal_wd = 0.33" in text
    c9 = next(line for line in md.splitlines() if line.startswith("| [C9]"))
    assert "**ERROR**" in c9, "C9's error row is parsed to its claim from the node id"


def test_missing_runs_are_counted_with_the_sweep_command(tmp_path, profile_path, fake_result):
    # Drop every seed-1 run and all of phase5_int4: the report still renders.
    profile = load_profile(profile_path)
    int4 = {s.run_id for s in profile.design("phase5_int4").specs}
    diverged = {profile.design("phase2").specs[0].run_id}
    stored = fill(tmp_path / "cache", profile_path, fake_result, keep=lambda s: s.seed != 1 and s.run_id not in int4,
                  diverge=diverged)
    report_dir = tmp_path / "reports"
    build_report(tmp_path / "cache", report_dir, str(profile_path))

    md = (report_dir / SUMMARY_MD).read_text()
    total = len(profile.all_specs())
    assert f"{stored} of the profile's {total} distinct runs" in md
    assert f"{total - stored} run(s) missing from the cache" in md
    int4_row = next(line for line in md.splitlines() if line.startswith("| `phase5_int4`"))
    assert "| 12 | 0 | 0 | 12 |" in int4_row
    assert "python -m engine sweep --profile reporttest --design phase5_int4" in int4_row
    assert "1 diverged run(s)" in md and profile.design("phase2").specs[0].short_id in md
    assert "Skipped: design phase5_int4 has no finished INT4 pairs" in md
    assert "no suite run recorded; verdicts not available" in md
    assert "figure failed" not in md


def test_partial_design_is_marked_and_a_lone_bit_width_is_not_called_consistent(tmp_path, profile_path, fake_result):
    # Only FP16 runs of phase5_adamw exist: the figure must say it is partial and must not
    # claim "the same optimum for every bit-width" with one bit-width to compare.
    stored = fill(tmp_path / "cache", profile_path, fake_result, keep=lambda s: s.optimizer != "adamw" or s.bits == 16)
    assert stored
    build_report(tmp_path / "cache", tmp_path / "reports", str(profile_path))
    md = (tmp_path / "reports" / SUMMARY_MD).read_text()
    title = next(line for line in md.splitlines() if line.startswith("![Phase 5, AdamW arm"))
    assert "only one bit-width has finished runs" in title
    assert "Drawn from a partly filled cache (partial: 4/8 runs of phase5_adamw)" in md


def test_a_figure_skipped_now_leaves_no_stale_png(tmp_path, profile_path, fake_result):
    fill(tmp_path / "cache", profile_path, fake_result)
    report_dir = tmp_path / "reports"
    build_report(tmp_path / "cache", report_dir, str(profile_path))
    assert (report_dir / "plots" / "wd_phase2.png").exists()
    build_report(tmp_path / "empty_cache", report_dir, str(profile_path))
    assert not list((report_dir / "plots").glob("*.png"))


def test_no_verdicts_still_renders_cache_and_figures(tmp_path, profile_path, fake_result):
    fill(tmp_path / "cache", profile_path, fake_result)
    out = build_report(tmp_path / "cache", tmp_path / "reports", str(profile_path))
    md = (tmp_path / "reports" / SUMMARY_MD).read_text()
    assert "no suite run recorded; verdicts not available — run `pytest hypotheses/ --profile reporttest`" in md
    assert "plots/wd_phase2.png" in md
    assert out.read_text().count("<img ") == 6


def test_empty_cache_renders_with_every_figure_skipped(tmp_path, profile_path):
    out = build_report(tmp_path / "empty_cache", tmp_path / "reports", str(profile_path))
    md = (tmp_path / "reports" / SUMMARY_MD).read_text()
    assert "<img" not in out.read_text()
    assert "Skipped: design phase2 has no finished runs in the cache" in md
    assert "figure failed" not in md, "an empty cache is a skip reason, not a crash of a figure"
    assert "0 of the profile's" in md


def test_no_profile_and_no_verdicts_names_the_fix(tmp_path):
    with pytest.raises(ProfileError, match="--profile NAME"):
        build_report(tmp_path / "cache", tmp_path / "reports", None)


def test_verdicts_of_another_profile_are_not_shown(tmp_path, profile_path):
    write_verdicts(tmp_path, profile_path, [OK_ROW], name="tiny")
    v = load_verdicts(tmp_path, load_profile(profile_path))
    assert not v.available and not v.rows
    assert "profile 'tiny', not 'reporttest'" in v.note


def test_main_figure_reads_the_stat_keys():
    assert main_figure(OK_ROW) == "optimal_wd = 0.33; p = 0.04; margin_bpb = 0.012"
    row = {"stat_statistic": "distance_ratio", "stat_statistic_value": 1.0312, "stat_ci_low": 0.98,
           "stat_ci_high": 1.07, "stat_effect_size_name": "relative_difference", "stat_effect_size": float("nan")}
    assert main_figure(row) == "distance_ratio = 1.031; CI [0.98, 1.07]"
    assert main_figure({}) == "n/a"

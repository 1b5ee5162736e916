"""hypotheses.report: verdicts with bounds and stability, figures drawn from the deciders' rows,
pages that render from any state of the cache, and an HTML page that fetches nothing.

A synthetic profile (written to tmp, with a [verdicts] section) and synthetic records stored
through `ResultsCache.put` stand in for training: the numbers only need the right shape.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from engine.cache import ResultsCache
from engine.design import ProfileError, load_profile
from hypotheses.claims import load_claims
from hypotheses.report import REPORT_HTML, SUMMARY_MD, build_report
from hypotheses.report.inputs import load_designs, load_verdicts, normalise_rows, size_params
from hypotheses.report.plots import draw_all

REPO = Path(__file__).resolve().parents[2]

PROFILE_TOML = """
[profile]
name = "reporttest"
description = "synthetic profile for the report tests"

[defaults]
steps = 40
batch_tokens = 256
seq_len = 32

[roles]
int4_small = ["t10k", "t20k"]
int4_large = ["t60k"]

[designs.phase2]
grid = { size = ["t20k", "t45k", "t60k"], bits = [16, 6], warmdown = [0.10, 0.33, 0.50], seed = [0, 1, 2] }

[designs.phase5_adamw]
grid = { size = ["t20k"], bits = [16, 6], warmdown = [0.10, 0.33], seed = [0, 1] }
set = { optimizer = "adamw" }

[designs.phase5_sizes]
grid = { size = ["t10k", "t100k"], bits = [16, 6], warmdown = [0.33], seed = [0, 1, 2] }

[designs.phase5_int4]
grid = { size = ["t10k", "t20k", "t60k"], bits = [4], warmdown = [0.10, 0.33], seed = [0, 1, 2] }

[designs.mechanism_probe]
grid = { size = ["t20k"], bits = [16, 6], warmdown = [0.33], seed = [0, 1, 2, 3, 4] }
set = { probe_fracs = [0.5] }

[verdicts]
stability_draws = 20   # fast: the report only shows the number

[verdicts.delta]
C1 = 0.02
C2 = 0.02
C3 = 0.02
C4 = 0.02
C5 = 0.02
C6 = 0.02
C7 = 0.02
C8 = 0.02

[verdicts.noise.val_bpb_q]
seed = 0.01
seed_wd = 0.003
run = 0.002

[verdicts.noise.grid_dist_int6_prewd]
seed = 0.002
seed_wd = 0.0
run = 0.002
"""
N_FIGURES_FULL = 8  # the overview, c1 optimum, c1 loss curves, c2, c3 contrasts, c6, c7/c8, c9 (no cosine/long designs)


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
    payload = {"profile": name, "profile_path": str(profile_path), "verdicts": rows, "trained_run_ids": []}
    (report_dir / "verdicts.json").write_text(json.dumps(payload))


def _stats(**kw) -> dict:
    base = {"n_runs": 18, "n_seeds": 3, "n_diverged": 0, "seeds": "0,1,2", "statistic": "wd33_minus_best_other_bpb",
            "statistic_value": -0.004, "ci_low": -0.011, "ci_high": 0.0125, "ci_level": 0.9, "region": "<= 0.02",
            "delta": 0.02}
    return {f"stat_{k}": v for k, v in {**base, **kw}.items()}


C1_MEANS = {"mean_wd0.1": 2.50, "mean_wd0.33": 2.45, "mean_wd0.5": 2.47,
            "best_lr_wd0.1": 1.0, "best_lr_wd0.33": 1.0, "best_lr_wd0.5": 1.0}


def c1_row(cell: str, bits: int, size: str, verdict: str, optimal: float, **kw) -> dict:
    """A C1 row as decide.verdict_row writes it (the decider's per-warmdown means included)."""
    return {"claim_id": "C1", "verdict": verdict, "profile": "reporttest", "cell": cell, "statement": "s",
            "observed": f"C1[{cell}] observed", "reason": "bounds straddle delta" if verdict == "inconclusive" else "",
            "stability": kw.pop("stability", 0.97), "fragile": kw.pop("fragile", 0),
            **_stats(bits=bits, size=size, optimal_wd=optimal, **{**C1_MEANS, **kw})}


ROWS = [
    c1_row("fp16-t20k", 16, "t20k", "reproduced", 0.33, stability=0.97),
    c1_row("int6-t20k", 6, "t20k", "contradicted", 0.5, stability=0.73, fragile=1,
           statistic_value=0.031, ci_low=0.024, ci_high=0.038),
    c1_row("fp16-t45k", 16, "t45k", "inconclusive", 0.1, stability=0.91, ci_low=0.004, ci_high=0.027),
    {"claim_id": "C9", "cell": "probe", "verdict": "error", "profile": "reporttest",
     "error": "6 of 10 runs missing; produce them with: python -m engine sweep --profile reporttest "
              "--design mechanism_probe"},
]


def html_links(text: str) -> list[str]:
    return re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)', text, flags=re.IGNORECASE)


# --- the decide path on a complete cache ------------------------------------------------


@pytest.fixture(scope="module")
def full_report(tmp_path_factory, fake_result) -> Path:
    """A complete synthetic cache; no rows given, decide=True: decide_all writes verdicts.json.
    Built once: deciding and drawing take seconds."""
    root = tmp_path_factory.mktemp("full")
    profile_path = write_profile(root)
    fill(root / "cache", profile_path, fake_result)
    out = build_report(root / "cache", root / "reports", str(profile_path))
    assert out == root / "reports" / REPORT_HTML
    return root / "reports"


def test_decide_path_writes_verdicts_json_in_the_plugin_format(full_report):
    payload = json.loads((full_report / "verdicts.json").read_text())
    assert payload["profile"] == "reporttest" and payload["profile_path"].endswith("reporttest.toml")
    assert payload["trained_run_ids"] == []
    rows = payload["verdicts"]
    assert {r["claim_id"] for r in rows} == set(load_claims())
    decided = [r for r in rows if r["verdict"] != "error"]
    assert decided and all(r["verdict"] in ("reproduced", "contradicted", "inconclusive") for r in decided)
    for key in ("claim_id", "verdict", "profile", "cell", "statement", "observed", "reason", "stability", "fragile",
                "stat_n_runs", "stat_n_seeds", "stat_seeds", "stat_ci_low", "stat_ci_high", "stat_ci_level",
                "stat_region"):
        assert all(key in r for r in decided), key
    # C4/C5's and R1-R5's designs are absent from this profile: error rows, never verdicts.
    errors = {r["claim_id"]: r for r in rows if r["verdict"] == "error"}
    assert set(errors) == {"C4", "C5", "R1", "R2", "R3", "R4", "R5"}
    assert set(errors["C4"]) == {"claim_id", "cell", "verdict", "error", "profile"}
    assert "phase5_cosine" in errors["C4"]["error"]


def test_html_is_self_contained(full_report):
    page = (full_report / REPORT_HTML).read_text()
    links = html_links(page)
    assert links, "the page has in-page links"
    assert not [u for u in links if not u.startswith(("#", "data:image/png;base64,"))], "nothing is fetched"
    assert not re.search(r"(?:https?:)?//[\w.-]+\.\w+/", re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page))
    imgs = re.findall(r"<img\b[^>]*>", page)
    assert len(imgs) == N_FIGURES_FULL
    assert all(re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', i) for i in imgs)
    anchors = set(re.findall(r'id="([^"]+)"', page))
    assert {u[1:] for u in links if u.startswith("#")} <= anchors, "every in-page link has its target"


def test_markdown_names_only_plots_that_exist(full_report):
    md = (full_report / SUMMARY_MD).read_text()
    named = set(re.findall(r"plots/([\w.-]+\.png)", md))
    assert len(named) == N_FIGURES_FULL
    assert all((full_report / "plots" / n).is_file() for n in named)
    assert "figure failed" not in md
    assert "Skipped: profile 'reporttest' has no design 'phase5_cosine'" in md


def test_counts_of_the_decided_report_add_up(full_report):
    rows = json.loads((full_report / "verdicts.json").read_text())["verdicts"]
    n = {k: sum(r["verdict"] == k for r in rows) for k in ("reproduced", "contradicted", "inconclusive", "error")}
    md = (full_report / SUMMARY_MD).read_text()
    expected = (f"Test cases: {n['reproduced']} reproduced, {n['contradicted']} contradicted, "
                f"{n['inconclusive']} inconclusive, {n['error']} error ({len(rows)} in all)")
    assert expected in md and expected in (full_report / REPORT_HTML).read_text()
    assert "decided from the cache alone" in md


# --- rows given (the plugin's path) -------------------------------------------------------


@pytest.fixture(scope="module")
def rows_report(tmp_path_factory, fake_result) -> Path:
    root = tmp_path_factory.mktemp("rows")
    profile_path = write_profile(root)
    fill(root / "cache", profile_path, fake_result)
    build_report(root / "cache", root / "reports", str(profile_path), rows=ROWS)
    return root / "reports"


def test_three_outcomes_an_error_and_their_counts(rows_report):
    md = (rows_report / SUMMARY_MD).read_text()
    page = (rows_report / REPORT_HTML).read_text()
    for text in (md, page):
        assert "Test cases: 1 reproduced, 1 contradicted, 1 inconclusive, 1 error (4 in all)" in text
        assert "Test cases: 1 reproduced, 1 contradicted, 1 inconclusive, 0 error" in text  # C1's own counts
        assert "6 of 10 runs missing; produce them with: python -m engine sweep" in text
        assert "inconclusive because: bounds straddle delta" in text
    c1 = next(line for line in md.splitlines() if line.startswith("| [C1]"))
    assert "**CONTRADICTED**" in c1 and "| 1 / 1 / 1 / 0 |" in c1
    c9 = next(line for line in md.splitlines() if line.startswith("| [C9]"))
    assert "**ERROR**" in c9 and "| 0 / 0 / 0 / 1 |" in c9
    assert "no verdict" in next(line for line in md.splitlines() if line.startswith("| [C2]"))
    for kind in ("reproduced", "contradicted", "inconclusive", "error", "fragile"):
        assert f'class="badge v-{kind}"' in page


def test_each_verdict_shows_bounds_delta_seeds_profile_and_stability(rows_report):
    md = (rows_report / SUMMARY_MD).read_text()
    line = next(ln for ln in md.splitlines() if ln.startswith("| int6-t20k"))
    assert "**CONTRADICTED** **FRAGILE**" in line
    assert "wd33_minus_best_other_bpb = 0.0310 (δ = 0.0200)" in line
    assert "| [0.0240, 0.0380]; claim predicts <= 0.02 |" in line  # the level is the column's
    assert "| Bounds: 90 % CI unless marked; region the claim predicts |" in md
    assert "| 73 % |" in line and "0,1,2" in line and "| reporttest |" in line
    ok = next(ln for ln in md.splitlines() if ln.startswith("| fp16-t20k"))
    assert "| 97 % |" in ok and "FRAGILE" not in ok
    assert "1 verdict(s) FRAGILE" in md


def test_plugin_error_rows_without_a_claim_take_their_test_functions_claim():
    rows = normalise_rows([
        {"nodeid": "hypotheses/test_x.py::test_c1_a[int6-t20k]", "claim_id": "C1", "cell": "int6-t20k",
         "verdict": "reproduced"},
        {"nodeid": "hypotheses/test_x.py::test_c1_a[fp16-t20k]", "verdict": "error", "error": "boom"},
        {"nodeid": "hypotheses/test_y.py::test_c9_b[probe]", "verdict": "error", "error": "boom"},
    ])
    assert [r["claim_id"] for r in rows] == ["C1", "C1", "?"]
    assert rows[2]["cell"] == "hypotheses/test_y.py::test_c9_b[probe]"


# --- figures read the deciders' numbers ---------------------------------------------------


def _draw(tmp_path, profile_path, rows):
    profile = load_profile(profile_path)
    designs = load_designs(ResultsCache(tmp_path / "cache"), profile)
    return {p.name: p for p in draw_all(load_claims(), normalise_rows(rows), designs, profile,
                                        size_params(designs), tmp_path / "plots")}


def test_c1_figure_marks_the_optimum_the_row_reports_not_the_raw_argmin(tmp_path, profile_path, fake_result):
    fill(tmp_path / "cache", profile_path, fake_result)  # raw argmin: wd 0.33 (fake_result's bowl)
    row = c1_row("int6-t20k", 6, "t20k", "contradicted", 0.5, **{"best_lr_wd0.5": 2.0})
    plot = _draw(tmp_path, profile_path, [row])["c1_wd_optimum"]
    assert plot.path and plot.path.is_file()
    assert plot.numbers["int6-t20k"]["optimal_wd"] == 0.5
    assert plot.numbers["int6-t20k"]["best_lr"] == 2.0
    assert plot.numbers["int6-t20k"]["means"][0.5] == 2.47  # the row's mean, not the cache's
    assert "optimal warmdown is 0.33 in 0/1" in plot.title


def test_c6_c7_c8_c9_figures_read_the_rows(tmp_path, profile_path, fake_result):
    fill(tmp_path / "cache", profile_path, fake_result)
    c6 = {"claim_id": "C6", "cell": "phase2-fit-heldout", "verdict": "reproduced", "stability": 0.9, "fragile": 0,
          **_stats(statistic="max_abs_prediction_error", intercept=0.5, slope_per_log_param=-0.04,
                   fit_sizes="t20k,t45k,t60k", heldout_compared="t10k", settings="wd0.33/lr1",
                   **{"t10k:n_params": 10_900, "t10k:predicted": 0.128, "t10k:mean_penalty": 0.13,
                      "t10k:ci_low": -0.005, "t10k:ci_high": 0.009, "t10k:pi_low": 0.1, "t10k:pi_high": 0.15})}
    c7 = {"claim_id": "C7", "cell": "t60k", "verdict": "reproduced", "stability": 0.9, "fragile": 0,
          **_stats(statistic="mean_diff", size="t60k", mean_diff=0.123, ci_low=0.1, ci_high=0.15, region="> 0.02")}
    c8 = {"claim_id": "C8", "cell": "small-sizes", "verdict": "inconclusive", "reason": "wide", "stability": 0.6,
          "fragile": 1, **_stats(statistic="mean_diff_max_abs", sizes="t10k,t20k", region="[-0.02, 0.02]",
                                 **{"t10k:mean_diff": 0.011, "t10k:ci_low": -0.001, "t10k:ci_high": 0.023,
                                    "t20k:mean_diff": -0.002, "t20k:ci_low": -0.01, "t20k:ci_high": 0.006})}
    c9 = {"claim_id": "C9", "cell": "probe", "verdict": "contradicted", "stability": 1.0, "fragile": 0,
          **_stats(statistic="distance_ratio", ratio=1.5, ci90_low=1.4, ci90_high=1.6, ci95_low=1.38,
                   ci95_high=1.62, band_low=0.9, band_high=1.15, region="[0.90, 1.15]")}
    plots = _draw(tmp_path, profile_path, [c6, c7, c8, c9])
    assert plots["c6_penalty_vs_size"].numbers["fit"] == {"intercept": 0.5, "slope": -0.04}
    assert plots["c6_penalty_vs_size"].numbers["t10k"]["predicted"] == 0.128
    assert "0.500 − 0.0400" not in plots["c6_penalty_vs_size"].title  # the fit is in the legend, the message up top
    assert "predicts 1/1 held-out sizes within ±0.02" in plots["c6_penalty_vs_size"].title
    int4 = plots["c7_c8_int4_wd_difference"].numbers
    assert int4["t60k"] == {"mean": 0.123, "low": 0.1, "high": 0.15, "claim": "C7"}
    assert int4["t20k"]["mean"] == -0.002 and int4["t20k"]["claim"] == "C8"
    assert plots["c9_grid_distance"].numbers["ratio"] == 1.5
    assert "R = INT6/FP16 grid distance = 1.5000" in plots["c9_grid_distance"].title
    assert all(p.path for p in plots.values() if p.name.startswith(("c6", "c7", "c9")))


def test_a_figure_without_row_numbers_says_so(tmp_path, profile_path, fake_result):
    fill(tmp_path / "cache", profile_path, fake_result)
    plots = _draw(tmp_path, profile_path, [ROWS[3]])  # only C9's error row
    assert not plots["c1_wd_optimum"].path
    assert "no C1 verdict row carries per-warmdown means" in plots["c1_wd_optimum"].skipped
    c9 = plots["c9_grid_distance"]  # the cache's histogram, and the missing ratio said in the title
    assert c9.path and "the decider reported no ratio" in c9.title


def test_the_plot_module_names_no_design():
    source = (REPO / "hypotheses" / "report" / "plots.py").read_text()
    for design in load_profile(REPO / "fixtures" / "profiles" / "tiny.toml").designs:
        assert f'"{design}"' not in source, design


# --- calibration section ----------------------------------------------------------------


def test_calibration_table_is_shown_when_written(tmp_path, profile_path):
    report_dir = tmp_path / "reports"
    cal = report_dir / "calibration"
    cal.mkdir(parents=True)
    row = {"claim_id": "C1", "profile": "reporttest", "cell": "fp16-t20k", "n_seeds": 3, "draws": 50, "delta": 0.02,
           "noise": "seed 0.01", "false_contradict": 0.012, "false_reproduce": 0.034, "power_reproduce": 0.61,
           "power_contradict": 0.97, "edge_contradict": 0.09}
    (cal / "reporttest.json").write_text(json.dumps({
        "profile": "reporttest", "draws": 50, "rows": [row],
        "command": "python -m hypotheses calibrate --profile reporttest --draws 50"}))
    build_report(tmp_path / "cache", report_dir, str(profile_path), decide=False)
    md = (report_dir / SUMMARY_MD).read_text()
    assert "P(contradicted \\| true)" in md and "P(reproduced \\| false at δ)" in md
    assert "| C1 | fp16-t20k | 3 | 0.0200 | 0.012 | 0.090 ABOVE | 0.034 | 0.080 | 0.610 | 0.970 |" in md
    assert "`python -m hypotheses calibrate --profile reporttest --draws 50`" in md


def test_calibration_absent_says_how_to_produce_it(tmp_path, profile_path):
    build_report(tmp_path / "cache", tmp_path / "reports", str(profile_path), decide=False)
    md = (tmp_path / "reports" / SUMMARY_MD).read_text()
    assert f"python -m hypotheses calibrate --profile reporttest --out {tmp_path / 'reports' / 'calibration'}" in md


# --- any state of the cache -----------------------------------------------------------------


def test_no_decide_rerenders_the_recorded_verdicts(tmp_path, profile_path):
    write_verdicts(tmp_path / "reports", profile_path, ROWS)
    build_report(tmp_path / "cache", tmp_path / "reports", None, decide=False)  # profile from verdicts.json
    md = (tmp_path / "reports" / SUMMARY_MD).read_text()
    assert "Test cases: 1 reproduced, 1 contradicted, 1 inconclusive, 1 error (4 in all)" in md
    assert json.loads((tmp_path / "reports" / "verdicts.json").read_text())["verdicts"] == ROWS, "left as it was"


def test_missing_runs_are_counted_with_the_sweep_command(tmp_path, profile_path, fake_result):
    # Drop every seed-1 run and all of phase5_int4: the report still renders, from decide_all's rows.
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
    assert "| 18 | 0 | 0 | 18 |" in int4_row
    assert "python -m engine sweep --profile reporttest --design phase5_int4" in int4_row
    assert "1 diverged run(s)" in md and profile.design("phase2").specs[0].short_id in md
    rows = json.loads((report_dir / "verdicts.json").read_text())["verdicts"]
    assert all(r["verdict"] == "error" and "runs missing" in r["error"] for r in rows if r["claim_id"] in ("C7", "C8"))
    assert "figure failed" not in md


def test_a_figure_skipped_now_leaves_no_stale_png(tmp_path, profile_path, fake_result):
    fill(tmp_path / "cache", profile_path, fake_result)
    report_dir = tmp_path / "reports"
    write_verdicts(report_dir, profile_path, ROWS)
    build_report(tmp_path / "cache", report_dir, str(profile_path), decide=False)
    assert (report_dir / "plots" / "c1_wd_optimum.png").exists()
    build_report(tmp_path / "empty_cache", report_dir, str(profile_path), rows=[])
    assert not list((report_dir / "plots").glob("*.png"))


def test_empty_cache_renders_with_every_figure_skipped(tmp_path, profile_path):
    out = build_report(tmp_path / "empty_cache", tmp_path / "reports", str(profile_path))
    md = (tmp_path / "reports" / SUMMARY_MD).read_text()
    assert "<img" not in out.read_text()
    assert "Skipped: no C1 verdict row carries per-warmdown means" in md
    assert "figure failed" not in md, "an empty cache is a skip reason, not a crash of a figure"
    assert "0 of the profile's" in md
    assert "Test cases: 0 reproduced, 0 contradicted, 0 inconclusive," in md


def test_no_verdicts_recorded_names_the_commands(tmp_path, profile_path):
    build_report(tmp_path / "cache", tmp_path / "reports", str(profile_path), decide=False)
    md = (tmp_path / "reports" / SUMMARY_MD).read_text()
    assert "verdicts not available — run `python -m hypotheses report --profile reporttest`" in md


def test_no_profile_and_no_verdicts_names_the_fix(tmp_path):
    with pytest.raises(ProfileError, match="--profile NAME"):
        build_report(tmp_path / "cache", tmp_path / "reports", None)


def test_verdicts_of_another_profile_are_not_shown(tmp_path, profile_path):
    write_verdicts(tmp_path, profile_path, ROWS, name="tiny")
    v = load_verdicts(tmp_path, load_profile(profile_path))
    assert not v.available and not v.rows
    assert "profile 'tiny', not 'reporttest'" in v.note


def test_the_engine_holds_no_report_module_and_never_imports_it():
    engine = REPO / "engine"
    assert not list(engine.rglob("report*.py"))
    assert not [p for p in engine.rglob("*.py") if "hypotheses.report" in p.read_text()]


def test_premise_absent_is_counted_apart_from_too_few_seeds(tmp_path, profile_path):
    """Issue 22 item 1: an inconclusive case whose premise is absent is 'not testable here',
    counted apart from 'too few seeds' (page summary, claim detail and summary table); C1's
    set of warmdowns that cannot be excluded as best is shown beside its cell."""
    premise_row = c1_row("int6-t45k", 6, "t45k", "inconclusive", 0.5, inconclusive_kind="premise",
                         premise="absent", mcb_best_set="0.1,0.33,0.5")
    premise_row["reason"] = "premise absent at this profile: the warmdown landscape cannot tell warmdowns apart"
    rows = ROWS + [premise_row]
    write_verdicts(tmp_path / "reports", profile_path, rows)
    build_report(tmp_path / "cache", tmp_path / "reports", None, decide=False)
    md = (tmp_path / "reports" / SUMMARY_MD).read_text()
    assert "Inconclusive test cases: 1 not testable here (premise absent), 1 too few seeds." in md
    assert "(inconclusive: 1 not testable here (premise absent), 1 too few seeds)" in md  # C1's own
    assert "not testable here (premise absent) / too few seeds" in md  # the summary table's column
    assert "cannot be excluded as best (Hsu's MCB): wd 0.1,0.33,0.5" in md


def test_stand_in_bit_widths_are_said_before_the_claims_verdicts(tmp_path, profile_path):
    """Issue 22 item 2: a profile that tests C1-C6 at other bit-widths than the paper's
    ([verdicts.bit_substitution]) says so in the claim's section, from the verdicts' stats."""
    note = "INT8 -> INT4, INT6 -> INT3 (tiny [verdicts.bit_substitution])"
    rows = [dict(r, stat_bits_substitution=note) if r["claim_id"] == "C1" else r for r in ROWS]
    write_verdicts(tmp_path / "reports", profile_path, rows)
    build_report(tmp_path / "cache", tmp_path / "reports", None, decide=False)
    md = (tmp_path / "reports" / SUMMARY_MD).read_text()
    assert md.count(f"Tested at this profile's stand-in bit-widths: {note}") == 1

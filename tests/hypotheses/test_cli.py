"""`python -m hypotheses {calibrate,plan,report}` (hypotheses/cli.py)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from engine.cache import records_to_table
from engine.design import load_profile
from hypotheses.cells import cell_specs, cells_for
from hypotheses.claims import load_claims
from hypotheses.cli import main
from hypotheses.simulate import seeds_for_stability




def test_calibrate_prints_the_table_and_writes_json(tmp_path, capsys):
    assert main(["calibrate", "--profile", "paper", "--claims", "C9", "--draws", "30", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| C9 | paper | probe | 5 |" in out and "P(reproduced \\| false at delta)" in out
    saved = json.loads((tmp_path / "paper.json").read_text())
    assert saved["rows"][0]["claim_id"] == "C9" and "python -m hypotheses calibrate" in saved["command"]


def test_plan_gives_seeds_for_power_from_the_prior(tmp_path, capsys):
    claims = "C2,C9,R5"
    assert main(["plan", "--profile", "paper", "--claims", claims, "--cache-dir", str(tmp_path / "empty"),
                 "--draws", "40"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| paper |")]
    paper = load_profile("paper")
    cells = [(c.id, cell.id) for c in load_claims().values() if c.id in claims.split(",")
             for cell in cells_for(c.at_profile(paper), paper)]
    assert [tuple(ln.split(" | ")[1:3]) for ln in lines] == cells  # every test case, not only the first
    assert all("| prior |" in ln and "runs missing" in ln for ln in lines)


@pytest.fixture
def unit_cache(unit):
    """The one-design test profile (tests/conftest.py) with all its runs cached: a clear optimum at wd 0.33."""
    path, profile, cache = unit
    rng = np.random.default_rng(0)
    for s in profile.design("phase2").specs:
        bpb = 2.0 + 0.2 * abs(s.warmdown - 0.33) + 0.02 * (s.seed - 1.5) + 0.004 * rng.standard_normal()
        cache.put(s, {"status": "ok", "diverged_step": None, "val_bpb": bpb, "val_bpb_q": bpb,
                      "val_bpb_int8": bpb, "quant_penalty": 0.0, "n_params": 10_000})
    return path, profile, cache


def test_plan_shows_verdict_stability_and_seeds_for_a_stable_verdict(unit_cache, capsys):
    path, profile, cache = unit_cache
    assert main(["plan", "--profile", str(path), "--claims", "C1,C3", "--cache-dir", str(cache.root),
                 "--draws", "30", "--stability-target", "0.85"]) == 0
    out = capsys.readouterr().out
    assert "| verdict now | stability now | seeds for >= 85% stable (outcome, probability) |" in out
    rows = {ln.split(" | ")[2]: ln.strip("| ").split(" | ") for ln in out.splitlines() if ln.startswith("| unit |")}
    claim = load_claims()["C1"].at_profile(profile)
    cells = cells_for(claim, profile)
    assert set(rows) == {c.id for c in cells} | {"-"}  # every C1 case, and C3 (its design is absent)
    assert "has no design" in rows["-"][7]
    for cell in cells:
        row = rows[cell.id]
        assert row[4] != "> 40" and row[5].startswith("cache (12 runs)") and row[7] == "reproduced"
        assert re.fullmatch(r"\d+%", row[8])
        table = records_to_table(cache.get(s) for s in cell_specs(profile, cell))
        n, outcome, p = seeds_for_stability(lambda t: claim.decide_fn()(t, claim, **cell.args), table,
                                            "val_bpb_q", 30, 0.85)
        assert row[9] == f"{n} ({outcome}, {p:.0%})"


def test_plan_names_missing_runs_and_rejects_a_bad_target(unit_cache, capsys):
    path, profile, cache = unit_cache
    cache.record_path(profile.design("phase2").specs[0]).unlink()
    assert main(["plan", "--profile", str(path), "--claims", "C2", "--cache-dir", str(cache.root),
                 "--draws", "20"]) == 0
    assert "| runs missing (1 of 36) | - | - |" in capsys.readouterr().out
    assert main(["plan", "--profile", str(path), "--stability-target", "1.5"]) == 2
    assert "--stability-target" in capsys.readouterr().err
    assert main(["plan", "--profile", str(path), "--claims", "C1,X9"]) == 2
    assert "X9" in capsys.readouterr().err


def test_bad_input_is_one_error_line(capsys):
    assert main(["calibrate", "--profile", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "nope" in err[0]
    assert main(["calibrate", "--draws", "0"]) == 2


def test_report_without_a_suite_run_says_what_to_do(tmp_path, capsys):
    rc = main(["report", "--no-decide", "--report-dir", str(tmp_path)])
    assert rc == 2 and "--profile" in capsys.readouterr().err


def test_a_bad_verdicts_section_is_one_error_line(unit, capsys):
    """stability_draws < 0 was found per cell, deep in the deciding; now when the profile is loaded."""
    path, _, cache = unit
    path.write_text(path.read_text().replace("stability_draws = 30", "stability_draws = -1"))
    assert main(["plan", "--profile", str(path), "--claims", "C1", "--cache-dir", str(cache.root)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"error: {path}: [verdicts] stability_draws must be an integer >= 0 "
                                        "(0 = no stability), got -1"]

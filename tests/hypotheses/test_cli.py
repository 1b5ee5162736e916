"""`python -m hypotheses {calibrate,plan,report}` (hypotheses/cli.py)."""

from __future__ import annotations

import json

from hypotheses.cli import main


def test_calibrate_prints_the_table_and_writes_json(tmp_path, capsys):
    assert main(["calibrate", "--profile", "paper", "--claims", "C9", "--draws", "30", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| C9 | paper | probe | 5 |" in out and "P(reproduced \\| false at delta)" in out
    saved = json.loads((tmp_path / "paper.json").read_text())
    assert saved["rows"][0]["claim_id"] == "C9" and "python -m hypotheses calibrate" in saved["command"]


def test_plan_gives_seeds_for_power_from_the_prior(tmp_path, capsys):
    assert main(["plan", "--profile", "paper", "--cache-dir", str(tmp_path / "empty"), "--draws", "40"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| paper |")]
    assert len(lines) == 14 and all("| prior |" in ln for ln in lines)  # C1-C9 and R1-R5


def test_bad_input_is_one_error_line(capsys):
    assert main(["calibrate", "--profile", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "nope" in err[0]
    assert main(["calibrate", "--draws", "0"]) == 2


def test_report_without_a_suite_run_says_what_to_do(tmp_path, capsys):
    rc = main(["report", "--no-decide", "--report-dir", str(tmp_path)])
    assert rc == 2 and "--profile" in capsys.readouterr().err

"""`python -m hypotheses compare A B` (hypotheses/compare.py) on two small verdict files written here:
outcome changes, Δstatistic in CI half-widths, stability changes, the summary line, exit status."""

from __future__ import annotations

import argparse
import json

import pytest

from hypotheses.compare import add_compare_parser, compare, load_verdicts, summary_line


def verdict(claim, cell, outcome, value, low, high, stability=1.0, statistic="delta_bpb"):
    return {"claim_id": claim, "cell": cell, "verdict": outcome, "stability": stability,
            "stat_statistic": statistic, "stat_statistic_value": value, "stat_ci_low": low, "stat_ci_high": high,
            "stat_ci_level": 0.9, "nodeid": f"hypotheses/test_x.py::test_{claim.lower()}[{cell}]"}


A = [verdict("C1", "int6-t20k", "reproduced", 0.0, -0.01, 0.01),          # half-width 0.01
     verdict("C2", "t20k", "reproduced", 0.005, 0.0, 0.01, 0.9),          # half-width 0.005
     verdict("R2", "fused", "reproduced", -0.02, -0.03, -0.01)]
B = [verdict("C1", "int6-t20k", "reproduced", 0.003, -0.007, 0.013),      # +0.3 half-widths
     verdict("C2", "t20k", "reproduced", 0.005, 0.0, 0.01, 0.8),          # same statistic, stability 0.9 -> 0.8
     verdict("R2", "fused", "contradicted", 0.0, -0.01, 0.01)]            # +2 half-widths, outcome changed


def write(path, rows, profile="tiny"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"profile": profile, "verdicts": rows}))
    return path


def run(argv):
    p = argparse.ArgumentParser(prog="python -m hypotheses")
    sub = p.add_subparsers(dest="cmd", required=True)
    add_compare_parser(sub)
    args = p.parse_args(["compare", *map(str, argv)])
    return args.func(args)


def test_compare_per_case_changes(tmp_path):
    changes = {c.claim_id: c for c in compare(load_verdicts(write(tmp_path / "a.json", A)),
                                              load_verdicts(write(tmp_path / "b.json", B)))}
    assert changes["C1"].delta_halfwidths == pytest.approx(0.3) and not changes["C1"].changed
    assert changes["C2"].delta_halfwidths == pytest.approx(0.0)
    assert changes["C2"].stability_delta == pytest.approx(-0.1)
    r2 = changes["R2"]
    assert r2.changed and (r2.outcome_a, r2.outcome_b) == ("reproduced", "contradicted")
    assert changes["R2"].delta_halfwidths == pytest.approx(2.0)


def test_compare_summary_and_exit_1_when_an_outcome_changed(tmp_path, capsys):
    a, b = write(tmp_path / "a" / "verdicts.json", A), write(tmp_path / "b.json", B)
    assert run([a.parent, b]) == 1  # a report folder and a file
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == ("3 test cases: 2 same outcome, 1 changed; median |Δstatistic| 0.3 half-widths (max 2); "
                       "1 stabilities changed (max |Δ| 0.10)")
    r2 = next(line for line in out if "R2[fused]" in line)
    assert r2.startswith("*") and "reproduced -> contradicted" in r2 and "+2.00" in r2


def test_compare_same_outcomes_exit_0(tmp_path, capsys):
    b = [dict(r, verdict="reproduced") for r in B]
    assert run([write(tmp_path / "a.json", A), write(tmp_path / "b.json", b)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("3 test cases: 3 same outcome, 0 changed;")


def test_compare_a_vanished_test_case_is_a_change(tmp_path, capsys):
    assert run([write(tmp_path / "a.json", A), write(tmp_path / "b.json", A[:2])]) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("3 test cases: 2 same outcome, 0 changed, 1 only in A;")


def test_compare_different_statistics_are_not_compared(tmp_path):
    b = [dict(B[0], stat_statistic="ratio")]
    (c,) = compare(load_verdicts(write(tmp_path / "a.json", A[:1])), load_verdicts(write(tmp_path / "b.json", b)))
    assert c.delta_halfwidths is None


def test_compare_json_keeps_stdout_json(tmp_path, capsys):
    assert run([write(tmp_path / "a.json", A), write(tmp_path / "b.json", B), "--json"]) == 1
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [r["changed"] for r in rows] == [False, False, True]
    assert captured.err.startswith("3 test cases:")


@pytest.mark.parametrize("make_b, message", [
    (lambda d: d / "nosuch.json", "no file"),
    (lambda d: d, "no verdicts.json in folder"),
    (lambda d: (d / "b.json").write_text("{not json") and d / "b.json", "not a readable JSON"),
    (lambda d: (d / "b.json").write_text('{"profile": "tiny"}') and d / "b.json", "no 'verdicts' list"),
    (lambda d: write(d / "b.json", [{"cell": "x"}]), "has no claim_id"),
    (lambda d: write(d / "b.json", A + A[:1]), "appears twice"),
], ids=["missing-file", "folder-without-verdicts", "bad-json", "no-verdicts-list", "row-without-claim", "duplicate"])
def test_compare_bad_input_exit_2_one_line(tmp_path, capsys, make_b, message):
    a = write(tmp_path / "a.json", A)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run([a, make_b(empty)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0] and captured.out == ""


def test_compare_reads_the_committed_example():
    """The committed reports/example is in the format compare reads: it equals itself."""
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "reports" / "example"
    changes = compare(load_verdicts(example), load_verdicts(example / "verdicts.json"))
    assert changes and not any(c.changed for c in changes)
    # a case without a statistic (premise absent: the rule's statistic is not computed) is not comparable
    comparable = [c.delta_halfwidths for c in changes if c.delta_halfwidths is not None]
    assert comparable and all(d == 0 for d in comparable)
    assert summary_line(changes).startswith(f"{len(changes)} test cases: {len(changes)} same outcome, 0 changed;")

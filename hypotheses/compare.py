"""`python -m hypotheses compare A B`: how two runs of the claim suite differ, test case by test case.

Owns: reading a verdicts file (`verdicts.json` as the plugin and `hypotheses report` write it, or a
report folder holding one), pairing test cases by (claim id, cell), and the comparison: the outcome
(reproduced / contradicted / inconclusive) of each, the change of its statistic in units of its CI
half-width, the change of its stability, and a one-line summary.

The statistic's change is measured against the CI half-width (half of stat_ci_high - stat_ci_low,
averaged over A and B, so `compare A B` and `compare B A` give the same size): 0.3 means the two
statistics differ by a third of the uncertainty either run reports, noise; several half-widths
means the two runs disagree beyond it (another machine, torch build, data).

Exit status: 0 when every test case has the same outcome in A and B, 1 when any outcome changed or
a test case is in one file only, 2 on bad input (one `error:` line).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

VERDICTS_FILE = "verdicts.json"
STATISTIC_FIELDS = ("stat_statistic_value", "stat_ci_low", "stat_ci_high")


class CompareError(ValueError):
    """A verdicts file that cannot be compared; the message is one line naming the file and the fix."""


def _number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def load_verdicts(path: Path | str) -> dict[tuple[str, str], dict]:
    """The test cases of a verdicts file (or of the verdicts.json in a report folder), by (claim id, cell)."""
    path = Path(path)
    file = path / VERDICTS_FILE if path.is_dir() else path
    if not file.is_file():
        where = f"no {VERDICTS_FILE} in folder {path}" if path.is_dir() else f"no file {path}"
        raise CompareError(f"{where}: give a verdicts.json or a report folder holding one (e.g. reports/example)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CompareError(f"{file}: not a readable JSON verdicts file ({e})") from None
    rows = data.get("verdicts") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise CompareError(f"{file}: no 'verdicts' list (is it a verdicts.json written by the claim suite?)")
    cases: dict[tuple[str, str], dict] = {}
    for i, row in enumerate(rows):
        if not (isinstance(row, dict) and isinstance(row.get("claim_id"), str) and "verdict" in row):
            raise CompareError(f"{file}: verdict #{i} has no claim_id/verdict; the file is not the suite's format")
        key = (row["claim_id"], str(row.get("cell", "")))
        if key in cases:
            raise CompareError(f"{file}: test case {key[0]}[{key[1]}] appears twice; a verdicts file has one row "
                               "per test case")
        cases[key] = row
    return cases


def half_width(row: dict) -> float | None:
    lo, hi = _number(row.get("stat_ci_low")), _number(row.get("stat_ci_high"))
    return (hi - lo) / 2 if lo is not None and hi is not None and hi > lo else None


@dataclass(frozen=True)
class CaseChange:
    """One test case in A and B (a side is None where the case is in one file only)."""

    claim_id: str
    cell: str
    outcome_a: str | None
    outcome_b: str | None
    delta_halfwidths: float | None  # (statistic B - statistic A) / mean CI half-width; None: not comparable
    stability_a: float | None
    stability_b: float | None

    @property
    def changed(self) -> bool:
        return self.outcome_a != self.outcome_b

    @property
    def stability_delta(self) -> float | None:
        if self.stability_a is None or self.stability_b is None:
            return None
        return self.stability_b - self.stability_a


def compare_case(key: tuple[str, str], a: dict | None, b: dict | None) -> CaseChange:
    delta = None
    if a is not None and b is not None and a.get("stat_statistic") == b.get("stat_statistic"):
        va, vb = _number(a.get("stat_statistic_value")), _number(b.get("stat_statistic_value"))
        widths = [w for w in (half_width(a), half_width(b)) if w is not None]
        if va is not None and vb is not None and widths:
            delta = (vb - va) / statistics.fmean(widths)
    return CaseChange(key[0], key[1], a.get("verdict") if a else None, b.get("verdict") if b else None, delta,
                      _number(a.get("stability")) if a else None, _number(b.get("stability")) if b else None)


def compare(a: dict[tuple[str, str], dict], b: dict[tuple[str, str], dict]) -> list[CaseChange]:
    """Every test case of A and B, in A's order, then those of B only."""
    keys = list(a) + [k for k in b if k not in a]
    return [compare_case(k, a.get(k), b.get(k)) for k in keys]


def summary_line(changes: list[CaseChange]) -> str:
    """'27 test cases: 26 same outcome, 1 changed; median |Δstatistic| 0.3 half-widths; ...'"""
    both = [c for c in changes if c.outcome_a is not None and c.outcome_b is not None]
    same = sum(not c.changed for c in both)
    parts = [f"{len(changes)} test cases: {same} same outcome, {len(both) - same} changed"]
    only_a = sum(c.outcome_b is None for c in changes)
    only_b = sum(c.outcome_a is None for c in changes)
    if only_a:
        parts[0] += f", {only_a} only in A"
    if only_b:
        parts[0] += f", {only_b} only in B"
    deltas = [abs(c.delta_halfwidths) for c in changes if c.delta_halfwidths is not None]
    if deltas:
        parts.append(f"median |Δstatistic| {statistics.median(deltas):.2g} half-widths (max {max(deltas):.2g})")
    stab = [c.stability_delta for c in changes if c.stability_delta is not None]
    moved = [d for d in stab if d != 0]
    if stab:
        parts.append(f"{len(moved)} stabilities changed" + (f" (max |Δ| {max(map(abs, moved)):.2f})" if moved else ""))
    return "; ".join(parts)


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_changes(changes: list[CaseChange], only_changed: bool = False) -> str:
    """One line per test case (a changed outcome marked `*`): outcome, Δstatistic, stability A -> B."""
    rows = [("", "test case", "outcome A -> B", "Δstat/hw", "stability A -> B")]
    for c in changes:
        if only_changed and not c.changed:
            continue
        outcome = f"{c.outcome_a or '(absent)'} -> {c.outcome_b or '(absent)'}" if c.changed else c.outcome_a
        stab = (f"{_fmt(c.stability_a, '.3f')} -> {_fmt(c.stability_b, '.3f')}"
                if c.stability_a != c.stability_b else _fmt(c.stability_a, ".3f"))
        rows.append(("*" if c.changed else "", f"{c.claim_id}[{c.cell}]", outcome,
                     _fmt(c.delta_halfwidths, "+.2f"), stab))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) if i == 3 else cell.ljust(w) for i, (cell, w) in
                               enumerate(zip(r, widths))).rstrip() for r in rows)


def cmd_compare(args) -> int:
    try:
        a, b = load_verdicts(args.a), load_verdicts(args.b)
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    changes = compare(a, b)
    if args.json:
        print(json.dumps([{**c.__dict__, "changed": c.changed} for c in changes], indent=1))
    else:
        print(f"A: {args.a}\nB: {args.b}")
        print(format_changes(changes, only_changed=args.changed_only))
    print(summary_line(changes), file=sys.stderr if args.json else sys.stdout)  # --json: stdout stays JSON
    return 1 if any(c.changed for c in changes) else 0


def add_compare_parser(subparsers) -> None:
    """Register `compare` on the claim layer's subcommands (hypotheses.cli.build_parser's `sub`)."""
    c = subparsers.add_parser(
        "compare", help="compare two verdict files: outcome, statistic and stability changes per test case",
        description="Compare two runs of the claim suite test case by test case: outcome change, statistic "
                    "change in units of its CI half-width, stability change, and a one-line summary. Exit "
                    "status 0: every outcome the same; 1: some outcome changed (or a test case is in one "
                    "file only); 2: bad input.")
    c.add_argument("a", type=Path, help="verdicts.json, or a report folder holding one (e.g. reports/example)")
    c.add_argument("b", type=Path, help="the other verdicts.json or report folder (e.g. reports/ci)")
    c.add_argument("--changed-only", action="store_true", help="list only the test cases whose outcome changed")
    c.add_argument("--json", action="store_true",
                   help="the per-case comparison as JSON on stdout (the summary line on stderr)")
    c.set_defaults(func=cmd_compare)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hypotheses.compare")
    sub = p.add_subparsers(dest="cmd", required=True)
    add_compare_parser(sub)
    return cmd_compare(p.parse_args(["compare", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())

"""Pipeline check of a claim-suite JUnit XML: `python -m hypotheses.junit_check reports/junit.xml`.

A claim that does not reproduce is data; a pipeline problem is not. Exit 1 if any claim
test errored (setup/teardown), failed without recording a verdict (an exception in the
test body), recorded an unknown verdict, or lacks the required properties; or if a claim
id expected from fixtures/claims.toml never appears. Exit 0 otherwise, whatever the verdicts.

The expected claim ids are every claim in the claims file (`hypotheses.claims.load_claims`,
default fixtures/claims.toml; `--claims-file` names another), so a claim added there (R1-R5
and any later one) whose tests vanish from the suite fails the check without anyone updating
a list here; `--claims C1,C2` narrows the check to the ids named.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

REQUIRED = ("qat_claim_id", "qat_verdict", "qat_profile", "qat_stability", "qat_stat_n_runs", "qat_stat_n_seeds",
            "qat_stat_n_diverged", "qat_stat_seeds", "qat_stat_statistic", "qat_stat_ci_low", "qat_stat_ci_high",
            "qat_stat_region")
VERDICTS = ("reproduced", "contradicted", "inconclusive")


def check(xml_path: Path, expected_claims: set[str]) -> tuple[list[str], Counter]:
    problems: list[str] = []
    counts: Counter = Counter()
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError) as e:
        return [f"cannot read {xml_path}: {e}"], counts
    seen: set[str] = set()
    for case in root.iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if case.find("error") is not None:
            problems.append(f"{name}: ERROR: {(case.find('error').get('message') or '')[:300]}")
            continue
        if case.find("skipped") is not None and "qat_verdict" not in props:
            problems.append(f"{name}: skipped without a verdict (a skip must come from an inconclusive claim)")
            continue
        missing = [k for k in REQUIRED if k not in props]
        if missing:
            failure = case.find("failure")
            why = f" (failed: {(failure.get('message') or '')[:300]})" if failure is not None else ""
            problems.append(f"{name}: no verdict properties {missing}{why}")
            continue
        if props["qat_verdict"] not in VERDICTS:
            problems.append(f"{name}: unknown verdict {props['qat_verdict']!r}")
            continue
        seen.add(props["qat_claim_id"])
        counts[props["qat_verdict"]] += 1
    for cid in sorted(expected_claims - seen):
        problems.append(f"claim {cid}: no test case recorded a verdict")
    return problems, counts


def expected_claims(claims_file: Path | None = None, only: str | None = None) -> set[str]:
    """The claim ids that must appear: all of the claims file's, or those of `only` (comma-separated),
    each of which must be a claim of the file (a typo would otherwise expect a claim that never runs)."""
    from hypotheses.claims import load_claims

    known = set(load_claims(claims_file))
    if only is None:
        return known
    wanted = {c.strip() for c in only.split(",") if c.strip()}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(f"--claims names {unknown}, which are not claims of the claims file; the claims are "
                         f"{sorted(known)}")
    return wanted


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("xml", type=Path)
    p.add_argument("--claims", default=None,
                   help="comma-separated claim ids that must appear (default: every claim of the claims file)")
    p.add_argument("--claims-file", type=Path, default=None,
                   help="claims file the expected ids come from (default: fixtures/claims.toml)")
    args = p.parse_args(argv)
    try:
        expected = expected_claims(args.claims_file, args.claims)
    except ValueError as e:  # includes a claims file that does not load (ClaimsFileError)
        print(f"error: {e}", file=sys.stderr)
        return 2
    problems, counts = check(args.xml, expected)
    total = sum(counts.values())
    print(f"claim suite: {total} verdicts: {counts['reproduced']} reproduced, {counts['contradicted']} "
          f"contradicted, {counts['inconclusive']} inconclusive; {len(problems)} pipeline problem(s)")
    for prob in problems:
        print(f"  PIPELINE PROBLEM {prob}", file=sys.stderr)
    return 1 if problems or total == 0 else 0


if __name__ == "__main__":
    sys.exit(main())

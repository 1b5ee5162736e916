"""hypotheses/junit_check.py: the expected claim ids come from fixtures/claims.toml, so a claim whose
test cases vanish from the suite's JUnit file (R2 here) fails the pipeline check."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from hypotheses.claims import load_claims
from hypotheses.junit_check import expected_claims, main

EXAMPLE = Path(__file__).resolve().parents[2] / "reports" / "example" / "junit.xml"


def without_claim(src: Path, dest: Path, claim_id: str) -> Path:
    """`src` with every test case of `claim_id` removed."""
    tree = ET.parse(src)
    for suite in tree.getroot().iter("testsuite"):
        for case in list(suite.findall("testcase")):
            if any(p.get("name") == "qat_claim_id" and p.get("value") == claim_id for p in case.iter("property")):
                suite.remove(case)
    tree.write(dest)
    return dest


def test_expected_claims_are_the_claims_file_ids():
    assert expected_claims() == set(load_claims())
    assert {"R1", "R2", "R3", "R4", "R5"} <= expected_claims()  # not only the paper's C1-C9


def test_the_committed_example_passes():
    assert main([str(EXAMPLE)]) == 0


def test_a_junit_file_missing_r2_fails(tmp_path, capsys):
    xml = without_claim(EXAMPLE, tmp_path / "junit.xml", "R2")
    assert 'value="R2"' not in xml.read_text() and 'value="R1"' in xml.read_text()
    assert main([str(xml)]) == 1
    assert re.search(r"claim R2: no test case recorded a verdict", capsys.readouterr().err)


def test_claims_narrows_and_rejects_unknown_ids(tmp_path, capsys):
    xml = without_claim(EXAMPLE, tmp_path / "junit.xml", "R2")
    assert main([str(xml), "--claims", "C1,C2"]) == 0  # R2 not asked for
    assert main([str(xml), "--claims", "C1,R9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "R9" in err[0]


def test_claims_file_option(tmp_path):
    """Another claims file: its ids are the expected ones (here the shipped file cut after C1)."""
    from hypotheses.claims import DEFAULT_CLAIMS_PATH

    text = DEFAULT_CLAIMS_PATH.read_text()
    one = tmp_path / "claims.toml"
    one.write_text(text[:text.index("\n[C2]\n")])
    assert expected_claims(one) == {"C1"}
    assert main([str(without_claim(EXAMPLE, tmp_path / "j.xml", "R2")), "--claims-file", str(one)]) == 0

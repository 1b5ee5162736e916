"""Each rule written once (issue 23): the decision rules live in fixtures/claims.toml; docs/claims.md
carries a generated copy, and the deciders' docstrings point to the claims file instead of
repeating the rule."""

from __future__ import annotations

import inspect
from pathlib import Path

from hypotheses.claims import RULES_BEGIN, RULES_END, load_claims, rules_markdown
from hypotheses.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "claims.md"


def test_the_docs_rule_block_is_the_claims_files():
    text = DOC.read_text()
    assert text.count(RULES_BEGIN) == 1 and text.count(RULES_END) == 1
    block = text[text.index(RULES_BEGIN): text.index(RULES_END) + len(RULES_END)]
    assert block == rules_markdown(load_claims()), (
        "docs/claims.md's rule block differs from fixtures/claims.toml: regenerate it with "
        "`python -m hypotheses rules --markdown` (replace the block between the two markers)")


def test_rules_command_prints_the_block(capsys):
    assert main(["rules", "--markdown"]) == 0
    assert capsys.readouterr().out.strip() == rules_markdown(load_claims())


def test_every_decider_docstring_points_to_its_rule_in_the_claims_file():
    for claim in load_claims().values():
        doc = inspect.getdoc(claim.decide_fn()) or ""
        assert "fixtures/claims.toml" in doc, f"{claim.id}: {claim.decider}'s docstring does not point to its rule"

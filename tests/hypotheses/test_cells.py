"""Claim cells generated from fixtures/claims.toml (hypotheses/cells.py)."""

from __future__ import annotations

import dataclasses

import pytest

from engine.design import ProfileError, load_profile
from hypotheses.cells import cell_specs, cells_for
from hypotheses.claims import load_claims


@pytest.fixture(scope="module")
def tiny():
    return load_profile("tiny")


@pytest.fixture(scope="module")
def claims():
    return load_claims()


def ids(claim, profile):
    return [c.id for c in cells_for(claim, profile)]


def test_ids_read_like_the_thing_they_test(claims, tiny):
    assert ids(claims["C1"], tiny) == [f"{b}-{s}" for b in ("fp16", "int8", "int6") for s in ("t20k", "t45k", "t60k")]
    assert ids(claims["C2"], tiny) == ["t20k", "t45k", "t60k"]
    assert [ids(claims[c], tiny) for c in ("C3", "C4", "C5", "C6", "C8", "C9")] == [
        ["adamw"], ["cosine"], ["long"], ["phase2-fit-heldout"], ["small-sizes"], ["probe"]]
    assert ids(claims["C7"], tiny) == ["t60k", "t100k"]  # the int4_large role, ladder order


def test_cells_carry_the_decider_arguments(claims, tiny):
    c1 = cells_for(claims["C1"], tiny)[0]
    assert c1.args == {"bits": 16, "size": "t20k"} and c1.filters["bits"] == 16
    c6 = cells_for(claims["C6"], tiny)[0]
    assert c6.args == {"fit_sizes": ["t20k", "t45k", "t60k"], "heldout_sizes": ["t10k", "t100k"]}
    assert c6.designs == ("phase2", "phase5_sizes")


def test_cell_specs_follow_filters_and_roles(claims, tiny):
    c8 = cells_for(claims["C8"], tiny)[0]
    assert {s.size for s in cell_specs(tiny, c8)} == {"t10k", "t20k"}
    c2 = cells_for(claims["C2"], tiny)[0]
    specs = cell_specs(tiny, c2)
    assert {s.bits for s in specs} == {16, 8, 6} and {s.size for s in specs} == {"t20k"}
    assert len(specs) == 3 * 3 * 6


def test_a_claim_is_data_plus_a_decider(claims, tiny):
    """A new claim needs no code in cells.py: a cells table is enough."""
    new = dataclasses.replace(claims["C1"], id="C10", cells={"by": ["size"], "filters": {"bits": 6}})
    assert ids(new, tiny) == ["t20k", "t45k", "t60k"]
    assert all(s.bits == 6 for c in cells_for(new, tiny) for s in cell_specs(tiny, c))


def test_a_profile_without_the_design_is_a_profile_error(claims, tiny):
    lean = dataclasses.replace(tiny, designs={"phase2": tiny.designs["phase2"]})
    with pytest.raises(ProfileError, match="phase5_int4"):
        cells_for(claims["C7"], lean)

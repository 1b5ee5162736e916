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
    # tiny's Phase 2 trains INT4/INT3 for the paper's INT8/INT6 ([verdicts.bit_substitution])
    assert ids(claims["C1"], tiny) == [f"{b}-{s}" for b in ("fp16", "int4", "int3") for s in ("t20k", "t45k", "t60k")]
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
    c2 = cells_for(claims["C2"].at_profile(tiny), tiny)[0]  # at tiny's stand-in bit-widths
    specs = cell_specs(tiny, c2)
    assert {s.bits for s in specs} == {16, 4, 3} and {s.size for s in specs} == {"t20k"}
    assert len(specs) == 3 * 3 * len(tiny.design("phase2").seeds)  # bits x wd x the profile's seeds
    assert {s.seed for s in specs} == set(tiny.design("phase2").seeds)


def test_a_claim_is_data_plus_a_decider(claims, tiny):
    """A new claim needs no code in cells.py: a cells table is enough."""
    new = dataclasses.replace(claims["C1"], id="C10", cells={"by": ["size"], "filters": {"bits": 3}})
    assert ids(new, tiny) == ["t20k", "t45k", "t60k"]
    assert all(s.bits == 3 for c in cells_for(new, tiny) for s in cell_specs(tiny, c))


def test_a_profile_without_the_design_is_a_profile_error(claims, tiny):
    lean = dataclasses.replace(tiny, designs={"phase2": tiny.designs["phase2"]})
    with pytest.raises(ProfileError, match="phase5_int4"):
        cells_for(claims["C7"], lean)


def test_named_sub_claims_get_one_case_each_on_their_own_designs(claims, tiny):
    """R3 and R5 are two sub-claims each (`cells.cases`): own id, designs and decider argument."""
    r3 = cells_for(claims["R3"], tiny)
    assert [(c.id, c.designs, c.args) for c in r3] == [
        ("shape", ("r3_shape",), {"part": "shape"}),
        ("beta2", ("r3_beta2_ref", "r3_beta2"), {"part": "beta2"})]
    beta2 = cell_specs(tiny, r3[1])
    assert {s.optimizer for s in beta2} == {"adamw"} and {s.cooldown_beta2 for s in beta2} == {None, 0.995}
    matched = cells_for(claims["R5"], tiny)[0]
    assert {(s.size, s.bits) for s in cell_specs(tiny, matched)} == {("t100k", 6), ("t120k", 5)}


def test_related_designs_share_runs_with_the_paper_designs(claims, tiny):
    """R3's linear arm and R4's default warmdown are Phase 2's runs (same spec, same run id)."""
    phase2 = {s.run_id for s in tiny.design("phase2").specs}
    shape = cell_specs(tiny, cells_for(claims["R3"], tiny)[0])
    assert {s.run_id for s in shape if s.warmdown_shape == "linear"} <= phase2
    r4 = cell_specs(tiny, cells_for(claims["R4"], tiny)[0])
    assert {s.run_id for s in r4 if s.warmdown == 0.10} <= phase2


@pytest.mark.parametrize("cells,match", [
    ({"cases": [{"id": "a", "design": "nope"}]}, "not in"),
    ({"cases": [{"id": "a"}, {"id": "a"}]}, "repeats"),
    ({"cases": [{"id": "a", "colour": 1}]}, "only keys"),
    ({"cases": [{"id": "a"}], "id": "x"}, "not both"),
    ({"cases": []}, "non-empty list"),
])
def test_malformed_cases_are_named(tmp_path, cells, match):
    import json
    import tomllib

    from hypotheses.claims import DEFAULT_CLAIMS_PATH, ClaimsFileError

    src = tmp_path / "claims.toml"
    body = tomllib.loads(DEFAULT_CLAIMS_PATH.read_text())["R3"]
    lines = ["[R3]"]
    for k in ("statement", "source", "design", "rule"):
        lines.append(f"{k} = {json.dumps(body[k])}")
    lines.append("[R3.thresholds]\nalpha = 0.05")
    lines.append("[R3.cells]\n" + "\n".join(f"{k} = {_toml(v)}" for k, v in cells.items()))
    src.write_text("\n".join(lines))
    with pytest.raises(ClaimsFileError, match=match):
        load_claims(src)


def _toml(v) -> str:
    import json

    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    return json.dumps(v)


def test_a_run_two_designs_of_a_cell_share_counts_once(claims, tiny):
    """tiny's INT4 runs at t20k/t60k (wd 0.10, 0.33, seeds 0-7) are phase2's and phase5_int4's:
    C7/C8 join both designs (FP16 partners for the premise) and must see each run once."""
    c8 = cells_for(claims["C8"], tiny)[0]
    specs = cell_specs(tiny, c8)
    assert len({s.run_id for s in specs}) == len(specs)
    small = set(tiny.role("int4_small"))
    shared = ({s.run_id for s in tiny.design("phase2").specs if s.size in small}
              & {s.run_id for s in tiny.design("phase5_int4").specs})
    assert shared and shared <= {s.run_id for s in specs}

"""A profile and the claims checked against each other (hypotheses/checks.py), before any training.

Each broken input here once passed collection and surfaced only after every run had trained, as a
FAILED test (or not at all); now each is one error naming the file and the key.
"""

from __future__ import annotations

import dataclasses

import pytest

from engine.design import ProfileError, available_profiles, load_profile
from hypotheses.checks import check_claim, check_verdicts, stability_draws
from hypotheses.claims import ClaimsFileError, load_claims


@pytest.fixture(scope="module")
def claims():
    return load_claims()


def _with_verdicts(path, profile, **verdicts):
    return dataclasses.replace(profile, verdicts={**profile.verdicts, **verdicts}, path=path)


@pytest.mark.parametrize("name", available_profiles())
def test_every_shipped_profile_passes_every_check(claims, name):
    profile = load_profile(name)
    check_verdicts(profile, claims)
    for claim in claims.values():
        check_claim(claim, profile)


@pytest.mark.parametrize(
    "verdicts, needle",
    [
        ({"stability_draws": -1}, "[verdicts] stability_draws must be an integer >= 0"),
        ({"stability_draws": 2.5}, "[verdicts] stability_draws must be an integer >= 0"),
        ({"stabilty_draws": 10}, "[verdicts] has unknown key(s) ['stabilty_draws']"),
        ({"delta": {"C10": 0.1}}, "[verdicts.delta] C10 is not a claim"),
        ({"delta": {"C1": 0}}, "[verdicts.delta] C1 = 0 must be a positive number"),
        ({"delta": {"C1": "0.1"}}, "[verdicts.delta] C1 = '0.1' must be a positive number"),
        ({"noise": {"val_bpb_q": {"seed": -1, "seed_wd": 0, "run": 0}}}, "[verdicts.noise.val_bpb_q]"),
        ({"noise": {"val_bpb_q": {"seed": 0.1}}}, "[verdicts.noise.val_bpb_q]: missing 'seed_wd'"),
    ],
    ids=["negative-draws", "fractional-draws", "misspelt-key", "unknown-claim", "zero-delta", "string-delta",
         "negative-noise", "incomplete-noise"],
)
def test_a_bad_verdicts_section_names_the_file_and_key(claims, unit, tmp_path, verdicts, needle):
    path, profile, _ = unit
    bad = _with_verdicts(tmp_path / "broken.toml", profile, **verdicts)
    with pytest.raises(ProfileError) as err:
        check_verdicts(bad, claims)
    assert "broken.toml" in str(err.value) and needle in str(err.value)


def test_stability_draws_default_and_zero(unit):
    _, profile, _ = unit
    assert stability_draws(profile) == 30
    assert stability_draws(dataclasses.replace(profile, verdicts={})) == 200
    assert stability_draws(dataclasses.replace(profile, verdicts={"stability_draws": 0})) == 0


def test_a_claim_without_its_delta_is_an_error_naming_the_profile(claims, unit, tmp_path):
    _, profile, _ = unit
    bad = _with_verdicts(tmp_path / "nodelta.toml", profile, delta={"C2": 0.01})
    with pytest.raises(ProfileError) as err:
        check_claim(claims["C1"], bad)
    assert "nodelta.toml: [verdicts.delta] has no entry for C1" in str(err.value)
    check_claim(claims["C2"], bad)


def test_a_decider_with_its_own_margin_needs_no_delta(claims):
    """C9 decides on its band: the check asks the decider (`@decider(uses_delta=False)`), not a list of ids."""
    tiny = load_profile("tiny")
    assert claims["C9"].decide_fn().uses_delta is False and claims["C1"].decide_fn().uses_delta is True
    check_claim(claims["C9"], dataclasses.replace(tiny, verdicts={}))


def _claims_file(tmp_path, edit) -> dict:
    from hypotheses.claims import DEFAULT_CLAIMS_PATH

    path = tmp_path / "claims.toml"
    text = DEFAULT_CLAIMS_PATH.read_text()
    edited = edit(text)
    assert edited != text
    path.write_text(edited)
    return load_claims(path)


def test_a_claim_without_a_registered_decider_names_the_claims_file(tmp_path):
    """A claim whose id no @decider registers (here C1 renamed C1x) is an error naming the file and
    the decorator to add, found by the check before anything trains."""
    claims = _claims_file(tmp_path, lambda s: s.replace("[C1]", "[C1x]").replace("[C1.", "[C1x."))
    with pytest.raises(ClaimsFileError) as err:
        check_claim(claims["C1x"], load_profile("tiny"))
    assert str(tmp_path / "claims.toml") in str(err.value) and "@decider('C1x')" in str(err.value)


def test_a_role_size_the_claims_design_does_not_train_is_an_error(claims, tmp_path):
    """t45k is a tiny size (phase2 trains it), but not one phase5_int4 trains: C7 would have no case for it."""
    tiny = load_profile("tiny")
    bad = dataclasses.replace(tiny, roles={**tiny.roles, "int4_large": ["t60k", "t45k"]}, path=tmp_path / "t.toml")
    with pytest.raises(ProfileError) as err:
        check_claim(claims["C7"], bad)
    assert "t.toml: [roles] int4_large names size(s) ['t45k']" in str(err.value) and "phase5_int4" in str(err.value)

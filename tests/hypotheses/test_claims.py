"""Tests of the claim records (fixtures/claims.toml via hypotheses/claims.py) and Verdict."""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib

import numpy as np
import pytest

from hypotheses.claims import DEFAULT_CLAIMS_PATH, Claim, ClaimsFileError, load_claims
from engine.design import load_profile
from hypotheses.verdict import INCONCLUSIVE, Verdict, decider, Inconclusive, three_way

CLAIM_IDS = [f"C{i}" for i in range(1, 10)] + [f"R{i}" for i in range(1, 6)]  # the paper's claims, then the related ones
GOOD = '''
[C1]
statement = "s"
source = "arXiv:0000.00000, sec 1"
design = "phase2"
rule = "r"
paper_ratio = 1.04

[C1.cells]
by = ["bits", "size"]

[C1.thresholds]
alpha = 0.05
'''


@pytest.fixture(scope="module")
def claims():
    return load_claims()


def test_every_claim_of_the_study_is_present(claims):
    assert list(claims) == CLAIM_IDS


@pytest.mark.parametrize("claim_id", CLAIM_IDS)
def test_claim_record_is_complete(claims, claim_id):
    c = claims[claim_id]
    assert c.id == claim_id
    assert c.statement and c.rule and c.design
    related = ("arXiv:2509.22935", "arXiv:2508.01483", "parameter-golf PR #")  # R1-R5's sources (STUDY.md section 2)
    assert "2605.25966" in c.source if claim_id.startswith("C") else any(s in c.source for s in related)
    assert c.thresholds, "every claim has decision thresholds"
    assert "metric" in c.thresholds


def test_paper_figures_are_recorded(claims):
    assert claims["C7"].paper["paper_z"] == [12, 15]
    assert claims["C7"].paper["paper_wins"] == "10/10"
    assert claims["C6"].paper["paper_inside"] == "5/5"
    assert claims["C9"].paper["paper_ratio"] == 1.04


def test_int4_claims_name_their_size_role(claims):
    # the INT4 sweep first (it makes the cells), then the designs whose FP16 runs are the premise's partners
    assert (claims["C7"].designs, claims["C7"].role) == (["phase5_int4", "phase2", "phase5_sizes"], "int4_large")
    assert (claims["C8"].designs, claims["C8"].role) == (["phase5_int4", "phase2", "phase5_sizes"], "int4_small")
    assert all(list(claims[c].cells["filters"]["bits"]) == [4, 16] for c in ("C7", "C8"))
    assert claims["C1"].role == ""


@pytest.mark.parametrize("profile", sorted(DEFAULT_CLAIMS_PATH.parent.glob("profiles/*.toml")), ids=lambda p: p.stem)
def test_claim_designs_and_roles_exist_in_every_profile(claims, profile):
    raw = tomllib.loads(profile.read_text())
    for c in claims.values():
        for design in c.design.split("+"):
            assert design in raw["designs"], (c.id, design, profile.name)
        if c.role:
            assert c.role in raw["roles"], (c.id, c.role, profile.name)


def test_schedule_claims_share_the_null_rule_parameters(claims):
    for cid in ("C3", "C4", "C5"):
        assert dict(claims[cid].thresholds) == dict(claims["C2"].thresholds)


@pytest.mark.parametrize("key", ["alpha", "band_low", "band_high", "min_pairs", "wd_tol", "ref_wd", "paper_dz"])
def test_open_numbers_carry_a_why_comment(key):
    lines = [l for l in DEFAULT_CLAIMS_PATH.read_text().splitlines() if re.match(rf"{key}\s*=", l)]
    assert lines, key
    assert all("# why" in l for l in lines), lines


def test_claim_is_frozen_and_read_only(claims):
    c = claims["C1"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.rule = "x"
    with pytest.raises(TypeError):
        c.thresholds["expected_wd"] = 0.2


def test_missing_threshold_names_the_claim(claims):
    with pytest.raises(ValueError, match=r"C1.*'z_threshold'"):
        claims["C1"].threshold("z_threshold")


def test_replaced_thresholds_give_a_variant_claim(claims):
    c = dataclasses.replace(claims["C7"], thresholds={**claims["C7"].thresholds, "alpha": 0.01})
    assert c.threshold("alpha") == 0.01 and claims["C7"].threshold("alpha") == 0.05


@pytest.mark.parametrize("profile", ["tiny", "small", "paper"])
def test_every_profile_gives_every_claim_that_needs_it_a_delta(claims, profile):
    p = load_profile(profile)
    for c in claims.values():
        at = c.at_profile(p)
        if c.id != "C9":  # C9's band is its margin
            assert at.threshold("delta") > 0, (profile, c.id)
        assert "delta" not in c.thresholds  # the claim file itself stays scale-free


def test_profile_delta_must_be_positive(claims, tmp_path):
    p = dataclasses.replace(load_profile("tiny"), verdicts={"delta": {"C1": -1}}, path=tmp_path / "x.toml")
    with pytest.raises(ValueError, match=r"x.toml.*verdicts.delta.*C1"):
        claims["C1"].at_profile(p)


def test_a_claim_without_delta_at_a_profile_stops_its_decider(claims):
    p = dataclasses.replace(load_profile("tiny"), verdicts={})
    with pytest.raises(ValueError, match="delta"):
        claims["C1"].at_profile(p).threshold("delta")


def test_a_missing_delta_names_the_profile_file_not_the_claims_thresholds(claims, tmp_path):
    """The message once said `expected in [R2.thresholds]`: delta belongs to the profile."""
    p = dataclasses.replace(load_profile("tiny"), verdicts={"delta": {}}, path=tmp_path / "mine.toml")
    with pytest.raises(ValueError) as err:
        claims["R2"].at_profile(p).threshold("delta")
    assert "mine.toml: [verdicts.delta] has no entry for R2" in str(err.value)
    assert "R2.thresholds" not in str(err.value)


@pytest.mark.parametrize("claim_id", CLAIM_IDS)
def test_decider_and_scenarios_resolve(claims, claim_id):
    assert callable(claims[claim_id].decide_fn()) and getattr(claims[claim_id].decide_fn(), "is_decider", False)
    assert claim_id in claims[claim_id].decide_fn().claim_ids  # registered by @decider("<id>")
    assert callable(claims[claim_id].scenarios_fn())
    assert claims[claim_id].decider.startswith("hypotheses.") and claims[claim_id].scenarios.startswith("hypotheses.")


def test_the_claims_file_names_no_python_functions():
    """The claim id is the link to the decider (issue 23): no "module:function" string to keep in step."""
    assert not re.search(r"^(decider|scenarios)\s*=", DEFAULT_CLAIMS_PATH.read_text(), flags=re.M)


def test_a_claim_without_a_registered_decider_names_the_decorator(tmp_path):
    from hypotheses.verdict import decider as register, scenarios, unregister

    path = tmp_path / "claims.toml"
    path.write_text(GOOD.replace("[C1", "[Z9"))
    claim = load_claims(path)["Z9"]
    with pytest.raises(ClaimsFileError, match=r"claims.toml: claim Z9 has no registered decider; .*@decider\('Z9'\)"):
        claim.decide_fn()
    assert claim.decider == ""
    try:
        fn = register("Z9")(lambda table, claim: None)
        scen = scenarios("Z9")(lambda claim, arms, noise=None: {})
        assert claim.decide_fn() is fn and claim.scenarios_fn() is scen and fn.claim_ids == ("Z9",)
        def another(table, claim):
            return None

        with pytest.raises(ValueError, match="both claim it"):
            register("Z9")(another)
    finally:
        unregister("Z9")
    with pytest.raises(ClaimsFileError):
        claim.scenarios_fn()


def test_custom_file_loads(tmp_path):
    path = tmp_path / "claims.toml"
    path.write_text(GOOD)
    c = load_claims(path)["C1"]
    assert isinstance(c, Claim)
    assert c.paper == {"paper_ratio": 1.04} and c.thresholds == {"alpha": 0.05}


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda s: s.replace('rule = "r"\n', ""), "C1.rule"),
        (lambda s: s.replace('design = "phase2"', 'design = ""'), "C1.design"),
        (lambda s: s.replace("[C1.thresholds]\nalpha = 0.05\n", ""), "C1.thresholds"),
        (lambda s: s.replace("paper_ratio", "ratio"), "C1.ratio"),
        (lambda s: s.replace("alpha = 0.05", "alpha = {x = 1}"), "C1.thresholds.alpha"),
        (lambda s: s.replace('statement = "s"', "statement = 3"), "C1.statement"),
        (lambda s: s.replace('rule = "r"', 'rule = "r"\nrole = 5'), "C1.role"),
        # deciders are registered in Python under the claim id; a stale "module:function" key is named
        (lambda s: s.replace('rule = "r"', 'rule = "r"\ndecider = "hypotheses.schedule:decide_c1"'), "C1.decider"),
        (lambda s: s.replace('by = ["bits", "size"]', 'by = ["colour"]'), "C1.cells.by"),
        # a misspelt filter field once crashed the suite's collection (INTERNALERROR) with an AttributeError
        (lambda s: s.replace('by = ["bits", "size"]', 'by = ["bits", "size"]\nfilters = { bitz = [16, 8] }'),
         "C1.cells.filters has unknown RunSpec field(s) ['bitz']"),
    ],
    ids=["missing-rule", "empty-design", "missing-thresholds", "unknown-key", "nested-threshold",
         "non-string", "bad-role", "bad-decider", "bad-cells", "misspelt-filter"],
)
def test_malformed_file_names_file_and_key(tmp_path, edit, key):
    path = tmp_path / "bad.toml"
    path.write_text(edit(GOOD))
    with pytest.raises(ClaimsFileError) as err:
        load_claims(path)
    assert str(path) in str(err.value) and key in str(err.value)


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[C1\nstatement = ")
    with pytest.raises(ValueError, match="broken.toml"):
        load_claims(path)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(ValueError, match="nope.toml"):
        load_claims(tmp_path / "nope.toml")


# --------------------------------------------------------------------------- Verdict

COUNTS = {"n_runs": 4, "n_seeds": 2, "n_diverged": 0, "statistic": "x", "statistic_value": 0.0,
          "ci_low": -1.0, "ci_high": 1.0, "ci_level": 0.9, "region": "[-1, 1]"}


def test_verdict_unwraps_numpy_scalars():
    v = Verdict("C1", "reproduced", "s", "o", {**COUNTS, "t": np.float64(2.5), "k": np.int64(3), "ok": np.bool_(True)})
    assert type(v.stats["t"]) is float and type(v.stats["k"]) is int and v.stats["ok"] == 1
    assert v.decided


def test_verdict_rejects_unknown_outcome():
    with pytest.raises(ValueError, match="outcome"):
        Verdict("C1", "maybe", "s", "o", COUNTS)


def test_inconclusive_verdict_needs_a_reason():
    with pytest.raises(ValueError, match="reason"):
        Verdict("C1", "inconclusive", "s", "o", COUNTS)
    assert not Verdict("C1", "inconclusive", "s", "o", COUNTS, reason="one seed").decided


def test_every_verdict_carries_bounds_and_region():
    with pytest.raises(ValueError, match="region"):
        Verdict("C1", "reproduced", "s", "o", {k: v for k, v in COUNTS.items() if k != "region"})


def test_stability_flags_fragile_verdicts():
    v = Verdict("C1", "reproduced", "s", "o", COUNTS)
    assert not v.fragile and math.isnan(v.stability)
    assert v.with_stability(0.6).fragile and not v.with_stability(0.95).fragile


def test_decider_turns_inconclusive_into_a_verdict_and_lets_errors_through(claims):
    @decider
    def rule(table, claim, *, fail):
        if fail:
            raise ValueError("malformed table")
        raise Inconclusive("saw little", "too few seeds", {"n_runs": 1, "n_seeds": 1, "n_diverged": 0, "seeds": "0"})

    v = rule(None, claims["C1"], fail=False)
    assert v.outcome == INCONCLUSIVE and v.reason == "too few seeds" and math.isnan(v.stats["ci_low"])
    assert v.stats["paper_optimal_wd"] == 0.33
    with pytest.raises(ValueError, match="malformed"):
        rule(None, claims["C1"], fail=True)


def test_three_way_refuses_a_rule_that_says_both():
    assert three_way(True, False) == "reproduced" and three_way(False, True) == "contradicted"
    assert three_way(False, False) == "inconclusive"
    with pytest.raises(AssertionError):
        three_way(True, True)


def test_verdict_stats_are_flat_and_counted():
    with pytest.raises(TypeError):
        Verdict("C1", "reproduced", "s", "o", {**COUNTS, "per_size": {"15M": 1.0}})
    with pytest.raises(ValueError, match="n_diverged"):
        Verdict("C1", "reproduced", "s", "o", {"n_runs": 1, "n_seeds": 1})


def test_verdict_is_frozen():
    v = Verdict("C1", "reproduced", "s", "o", {**COUNTS, "p_value": math.nan})
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.outcome = "contradicted"

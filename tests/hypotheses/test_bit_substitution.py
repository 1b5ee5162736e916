"""A profile's stand-in bit-widths ([verdicts.bit_substitution]): thresholds and cell filters
rewritten for the named claims only, every verdict stamped, malformed tables one error."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from engine.design import load_profile
from hypotheses.cells import cell_decider, cells_for
from hypotheses.claims import bit_substitution, load_claims

SUB = {"claims": ["C2", "C6"], "map": {"8": 4, "6": 3}, "reason": "INT8/INT6 cost nothing at toy scale"}


@pytest.fixture(scope="module")
def claims():
    return load_claims()


def _with(profile, sub):
    return dataclasses.replace(profile, verdicts={**profile.verdicts, "bit_substitution": sub})


def test_named_claims_get_the_profiles_bit_widths(claims):
    p = _with(load_profile("small"), SUB)
    c2, c6 = claims["C2"].at_profile(p), claims["C6"].at_profile(p)
    assert list(c2.threshold("bits")) == [16, 4, 3] and list(c2.cells["filters"]["bits"]) == [16, 4, 3]
    assert c6.threshold("quant_bits") == 3 and list(c6.cells["filters"]["bits"]) == [16, 3]
    assert c2.threshold("bits_substitution").startswith("INT8 -> INT4, INT6 -> INT3")
    # the claim file itself is untouched, and a claim not named keeps the paper's bit-widths
    assert list(claims["C2"].threshold("bits")) == [16, 8, 6]
    assert claims["C7"].at_profile(p).threshold("bits") == 4
    assert "bits_substitution" not in claims["C3"].at_profile(p).thresholds


def test_at_profile_twice_substitutes_once(claims):
    chained = {**SUB, "map": {"8": 6, "6": 3}}
    p = _with(load_profile("small"), chained)
    twice = claims["C2"].at_profile(p).at_profile(p)
    assert list(twice.threshold("bits")) == [16, 6, 3]


def test_every_verdict_says_its_bit_widths_were_substituted(claims):
    """A real C2 decision on a table at the substituted bit-widths carries the note."""
    p = _with(load_profile("small"), SUB)
    claim = claims["C2"].at_profile(p)
    cell = cells_for(claim, p)[0]
    rng = np.random.default_rng(0)
    rows = [{"size": cell.filters["size"], "bits": b, "warmdown": w, "lr_mult": 1.0, "seed": s, "finite": True,
             "status": "ok", "val_bpb_q": 3.0 + (0.1 if b == 3 else 0.0) + rng.normal(0, 0.005)}
            for b in (16, 4, 3) for w in (0.1, 0.33, 0.5) for s in range(6)]
    v = cell_decider(claim, cell)(pd.DataFrame(rows))
    assert v.stats["bits_substitution"] == claim.threshold("bits_substitution")
    assert "INT3" in v.observed or "INT3" in v.reason or "int3" in str(v.stats).lower()


@pytest.mark.parametrize("bad, match", [
    ({"claims": ["C2"], "map": {"6": 3}}, "reason"),
    ({**SUB, "reason": " "}, "reason must say why"),
    ({**SUB, "map": {"6": 2}}, "map '6' = 2"),
    ({**SUB, "map": {"16": 4}}, "quantised bit-widths"),
    ({**SUB, "map": {"6": True}}, "quantised bit-widths"),
])
def test_a_malformed_substitution_is_one_error_naming_the_table(bad, match, tmp_path):
    p = dataclasses.replace(_with(load_profile("small"), bad), path=tmp_path / "mine.toml")
    with pytest.raises(ValueError, match=match) as err:
        bit_substitution(p, "C2")
    assert "mine.toml: [verdicts.bit_substitution]" in str(err.value)


def test_no_table_no_substitution():
    assert bit_substitution(load_profile("paper"), "C2") == {}


def test_the_profile_check_names_an_unknown_claim_before_anything_trains(claims, tmp_path):
    from engine.design import ProfileError
    from hypotheses.checks import check_verdicts

    p = dataclasses.replace(_with(load_profile("small"), {**SUB, "claims": ["C2", "C22"]}), path=tmp_path / "m.toml")
    with pytest.raises(ProfileError, match=r"m.toml: \[verdicts.bit_substitution\] claims \['C22'\]"):
        check_verdicts(p, claims)
    p = dataclasses.replace(_with(load_profile("small"), {**SUB, "map": {"6": 7}}), path=tmp_path / "m.toml")
    with pytest.raises(ProfileError, match="map '6' = 7"):
        check_verdicts(p, claims)

"""Per-group statistics are written by the deciders and read back by the report through one
dataclass each (hypotheses/groupstats.py): the schema and what the deciders write cannot drift."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hypotheses.groupstats import (
    ContrastStats,
    HeldOutStats,
    SizeDifference,
    optimum_key,
    read_optima,
    read_settings,
    settings_text,
)

GOLDEN = json.loads((Path(__file__).parent / "golden" / "verdicts.json").read_text())
# the claim whose decider writes each schema, and the stats value naming the groups it must write
SCHEMAS = {
    ContrastStats: (("C2", "C3", "C4", "C5"), None),
    SizeDifference: (("C8",), "sizes"),
    HeldOutStats: (("C6",), "heldout_compared"),
}


def _records(claims):
    return [(k, r) for k, r in GOLDEN.items() if k.split("/")[1] in claims and "stats" in r]


def test_a_group_round_trips_through_the_flat_stats_with_a_prefix():
    d = SizeDifference("t20k", mean_diff=-0.01, sd_diff=0.02, dz=-0.5, ci_low=-0.03, ci_high=0.01,
                       ci_low_bonf=-0.04, ci_high_bonf=0.02, p=0.2)
    row = {f"stat_{k}": v for k, v in d.as_stats().items()} | {"stat_t20k:n_pairs": 8, "stat_delta": 0.025}
    assert SizeDifference.read(row, "stat_") == {"t20k": d}
    assert list(d.as_stats())[:2] == ["t20k:mean_diff", "t20k:sd_diff"]  # the keys verdicts always carried


def test_a_missing_or_nan_field_reads_as_none_not_as_a_number():
    # a JUnit property carries text: "0.01" reads as the number it is
    got = ContrastStats.read({"t20k INT3 wd0.1:mean": "0.01", "t20k INT3 wd0.1:ci90_low": math.nan})
    assert got["t20k INT3 wd0.1"] == ContrastStats("t20k INT3 wd0.1", 0.01, None, None)
    assert got["t20k INT3 wd0.1"].bits == 3 and got["t20k INT3 wd0.1"].cell_group == "t20k"


@pytest.mark.parametrize("schema", list(SCHEMAS), ids=lambda s: s.__name__)
def test_every_group_a_decider_wrote_reads_back_whole(schema):
    """For every golden verdict of the claims that write this schema: each group read back has
    every field the decider wrote (no None where the stats hold a number), its values are the
    stats' own, and (on the true tables) the groups are the ones the verdict names."""
    claims, names_key = SCHEMAS[schema]
    seen = 0
    for key, rec in _records(claims):
        stats = rec["stats"]
        groups = schema.read(stats)
        for g in groups.values():
            for k, v in g.as_stats().items():
                assert k in stats, f"{key}: {schema.__name__} field {k!r} was not written"
                want = stats[k]
                if isinstance(want, (int, float)) and math.isfinite(want):
                    assert v == pytest.approx(want, rel=0, abs=0), (key, k)
                else:
                    assert v is None, (key, k)
        if names_key and key.endswith("/true"):  # every group computed (other variants may stop early)
            named = {s for s in str(stats[names_key]).split(",") if s}
            assert named <= set(groups), f"{key}: {names_key} names {named - set(groups)} without their numbers"
        seen += len(groups)
    assert seen > 0, f"no golden verdict of {claims} carries a {schema.__name__}"


def test_the_contrasts_read_back_are_every_contrast_the_decider_wrote():
    for key, rec in _records(("C2", "C3", "C4", "C5")):
        written = {k.rsplit(":", 1)[0] for k in rec["stats"] if k.endswith(":ci90_low")}
        assert set(ContrastStats.read(rec["stats"])) == written, key


def test_optima_and_settings_read_what_was_written():
    stats = {optimum_key("t20k", "FP16"): 0.33, optimum_key("t20k", "INT3"): 0.1, "t20k:same_optimal_wd": 0}
    assert read_optima(stats) == {"t20k": {"FP16": 0.33, "INT3": 0.1}}
    settings = [(0.33, 1.0), (0.5, 0.5)]
    assert read_settings(settings_text(settings)) == settings
    assert read_settings("") == [] and read_settings("garbage;wdx/lr1") == []

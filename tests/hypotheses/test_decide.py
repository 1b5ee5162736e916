"""decide_all / decide_cell / verdict_row (hypotheses/decide.py): verdicts without pytest."""

from __future__ import annotations

import math

import numpy as np

from engine.cache import ResultsCache
from hypotheses.decide import decide_all, verdict_row


def _fill(cache: ResultsCache, profile, best_wd: float, skip: int = 0) -> None:
    rng = np.random.default_rng(0)
    for i, s in enumerate(profile.design("phase2").specs):
        if i < skip:
            continue
        bpb = 2.0 + 0.2 * abs(s.warmdown - best_wd) + 0.001 * rng.standard_normal()
        # a quantisation penalty well above delta (0.01): C2's premise (issue 22) holds
        penalty = {16: 0.0, 8: 0.02, 6: 0.05}[s.bits]
        cache.put(s, {"status": "ok", "diverged_step": None, "val_bpb": bpb, "val_bpb_q": bpb + penalty,
                      "val_bpb_int8": bpb, "quant_penalty": penalty, "n_params": 10_000})


def test_decide_all_decides_from_the_cache_alone(unit, tmp_path):
    _, profile, cache = unit
    _fill(cache, profile, best_wd=0.10)
    results = decide_all(profile, cache)
    by = {(r.claim_id, r.cell_id): r for r in results}
    assert by[("C1", "fp16-t10k")].verdict.outcome == "contradicted"
    assert by[("C2", "t10k")].verdict.outcome == "reproduced"
    assert all(0 <= r.verdict.stability <= 1 for r in results if r.verdict)
    # claims whose designs the profile lacks are error rows, never verdicts
    missing = [r for r in results if r.claim_id in ("C3", "C7", "C9")]
    assert missing and all(r.verdict is None and "has no design" in r.error for r in missing)
    assert not any(p.suffix == ".json" and "verdicts" in p.name for p in tmp_path.iterdir())  # pure: writes nothing


def test_missing_runs_are_error_rows_naming_the_sweep(unit):
    _, profile, cache = unit
    _fill(cache, profile, best_wd=0.33, skip=3)
    c1 = [r for r in decide_all(profile, cache) if r.claim_id == "C1"]
    assert any(r.verdict is None and "python -m engine sweep --profile" in r.error and "unit.toml --design phase2"
               in r.error and "--cache-dir" in r.error for r in c1)


def test_verdict_row_is_flat_and_complete(unit):
    _, profile, cache = unit
    _fill(cache, profile, best_wd=0.33)
    r = next(r for r in decide_all(profile, cache) if r.claim_id == "C1")
    row = verdict_row(r.verdict, profile, r.cell_id)
    assert row["verdict"] == "reproduced" and row["profile"] == "unit" and row["cell"] == r.cell_id
    assert row["stat_seeds"] == "0,1,2,3" and row["stat_region"] == "<= 0.01"
    assert all(isinstance(v, (int, float, str)) for v in row.values())
    assert math.isfinite(row["stat_ci_high"]) and row["fragile"] in (0, 1)


def test_a_claim_that_cannot_be_decided_is_an_error_row_per_cell(unit):
    """Found before its runs are read (the report, `plan`): here C2 has no delta at the profile."""
    import dataclasses

    _, profile, cache = unit
    profile = dataclasses.replace(profile, verdicts={**profile.verdicts, "delta": {"C1": 0.01}})
    rows = [r for r in decide_all(profile, cache) if r.claim_id == "C2"]
    assert [r.cell_id for r in rows] == ["t10k"]
    assert all(r.verdict is None and "[verdicts.delta] has no entry for C2" in r.error for r in rows)


def test_a_verdict_carries_the_outcomes_a_rerun_gives(unit):
    """Issue 23 item 4: the report names the outcome a re-run most likely gives; the split
    comes from the stability draws themselves (stability = the verdict's own outcome's share)."""
    _, profile, cache = unit
    _fill(cache, profile, best_wd=0.33)
    for r in (r for r in decide_all(profile, cache) if r.verdict):
        v = r.verdict
        assert v.rerun and abs(sum(v.rerun.values()) - 1) < 1e-9 and set(v.rerun) <= {
            "reproduced", "contradicted", "inconclusive"}
        assert v.stability == v.rerun.get(v.outcome, 0.0)
        row = verdict_row(v, profile, r.cell_id)
        assert {k: row[f"stability_{k}"] for k in v.rerun} == v.rerun

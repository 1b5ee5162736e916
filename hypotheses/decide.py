"""From a profile and a results cache to verdicts, without pytest.

Owns the one path from a claim's cell to its verdict, used both by the pytest plugin
(one test case per cell) and by ``decide_all`` (the report command, scripts):
- ``decide_cell``: the claim's decider on the cell's table, then the verdict's stability
  (the probability that a re-run with new seeds repeats the outcome);
- ``verdict_row``: the verdict as one flat row (JUnit properties, verdicts.json, report);
- ``decide_all``: every cell of every claim from the cache alone (never trains); a cell
  whose runs are missing is an error row naming the sweep command, never a verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.cache import ResultsCache, records_to_table
from engine.design import Profile, ProfileError, sweep_command
from hypotheses.cells import Cell, cell_decider, cell_specs, cells_for
from hypotheses.checks import check_claim, stability_draws
from hypotheses.claims import Claim, load_claims
from hypotheses.simulate import rerun_outcomes
from hypotheses.verdict import Verdict


def decide_cell(claim: Claim, cell: Cell, table, profile: Profile) -> Verdict:
    """``claim`` (already ``at_profile``) decided on one cell's table, with its stability."""
    decide = cell_decider(claim, cell)
    verdict = decide(table)
    draws = stability_draws(profile)
    if draws == 0:
        return verdict
    split = rerun_outcomes(decide, table, claim.threshold("metric"), draws, rng_seed=0)
    if not split:  # too few finite seeds to fit the noise
        return verdict.with_stability(math.nan)
    return verdict.with_stability(split.get(verdict.outcome, 0.0), split)


def verdict_row(verdict: Verdict, profile: Profile, cell_id: str) -> dict:
    """The flat row every output shows: JUnit properties (prefixed), verdicts.json, report."""
    return {
        "claim_id": verdict.claim_id,
        "verdict": verdict.outcome,
        "profile": profile.name,
        "cell": cell_id,
        "statement": verdict.statement,
        "observed": verdict.observed,
        "reason": verdict.reason,
        "stability": verdict.stability,
        "fragile": int(verdict.fragile),
        **{f"stability_{k}": p for k, p in sorted(verdict.rerun.items())},
        **{f"stat_{k}": v for k, v in verdict.stats.items()},
    }


def stability_text(p: float) -> str:
    return "n/a" if not math.isfinite(p) else f"{p:.0%}"


@dataclass(frozen=True)
class CellResult:
    claim_id: str
    cell_id: str
    verdict: Verdict | None
    error: str = ""


def decide_all(profile: Profile, cache: ResultsCache, claims: dict[str, Claim] | None = None) -> list[CellResult]:
    """Every claim cell of ``profile`` decided from ``cache`` alone (nothing is trained)."""
    claims = claims if claims is not None else load_claims()
    out = []
    for claim in claims.values():
        claim = claim.at_profile(profile)
        try:
            cells = cells_for(claim, profile)
        except ProfileError as e:
            out.append(CellResult(claim.id, "missing-design", None, str(e)))
            continue
        try:
            check_claim(claim, profile)
        except ValueError as e:  # the claim cannot be decided at this profile: every cell says why
            out += [CellResult(claim.id, cell.id, None, str(e)) for cell in cells]
            continue
        for cell in cells:
            specs = cell_specs(profile, cell)
            records, missing = [], 0
            for s in specs:
                rec = cache.get(s)
                if rec is None:
                    missing += 1
                else:
                    records.append(rec)
            if missing or not specs:
                out.append(CellResult(claim.id, cell.id, None,
                                      f"{missing} of {len(specs)} runs missing; produce them with: "
                                      f"{sweep_command(profile, list(cell.designs), cache.root)}"))
                continue
            try:
                out.append(CellResult(claim.id, cell.id, decide_cell(claim, cell, records_to_table(records), profile)))
            except (ValueError, KeyError) as e:  # a pipeline error is reported, never a verdict
                out.append(CellResult(claim.id, cell.id, None, f"{type(e).__name__}: {e}"))
    return out

"""Golden verdicts: every decider on deterministic tables, pinned to a committed JSON file.

What it proves: a restructure of the decider layer (registry, pairing helper, split deciders)
changes no verdict. For every claim and every test case of the tiny and small profiles, tables
are drawn from the claim's own calibration scenarios with the profile's noise prior and fixed
RNG seeds, in several variants that reach every branch a real table reaches:

- ``true`` / ``boundary`` / ``violation``: the three calibration scenarios, every seed;
- ``flat``: every arm's true mean 0 (no landscape, no penalty, no effect: the premises absent);
- ``diverged``: the violation table with ~15 % of its runs diverged and one arm diverged at
  all but one seed (the shared diverged-run rule: ranks last, dropped pairs, counted runs);
- ``few``: the true table at its first two seeds (too few seeds);
- C7/C8 ``fp16-*``: the true table joined with FP16 partners (their premise checked: a
  penalty of 0, absent; of 3 delta, met).

Each verdict's outcome, reason, observed sentence and every stats key/value (floats to
1e-12) must equal the golden file; the ``true`` tables also pin their stability (8 re-run
draws). Regenerate (only when a verdict is meant to change, and say why in the commit):

    QAT_GOLDEN_REGEN=1 .venv/bin/pytest tests/hypotheses/test_golden_verdicts.py -q -p no:cacheprovider
"""

from __future__ import annotations

import json
import math
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.design import load_profile
from hypotheses.calibration import cell_arms, noise_prior
from hypotheses.cells import cell_decider, cells_for
from hypotheses.claims import load_claims
from hypotheses.simulate import simulate_table, stability

GOLDEN = Path(__file__).parent / "golden" / "verdicts.json"
PROFILES = ("tiny", "small")
STABILITY_DRAWS = 8
TOL = 1e-12


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(key.encode()))


def _diverge(table, metric: str, key: str):
    """~15 % of the runs diverged, and the first arm diverged at all but its first seed."""
    t = table.copy()
    rng = _rng(key + "/diverge")
    hit = rng.random(len(t)) < 0.15
    seeds = sorted(t["seed"].unique())
    arm_cols = [c for c in t.columns if c not in ("seed", "status", metric)]
    first = t.iloc[0]
    same_arm = np.ones(len(t), dtype=bool)
    for c in arm_cols:
        col = t[c].to_numpy()
        same_arm &= np.array([a == first[c] or (a != a and first[c] != first[c]) for a in col])
    hit |= same_arm & (t["seed"].to_numpy() != seeds[0])
    t.loc[hit, "status"] = "diverged"
    t.loc[hit, metric] = np.nan
    return t


def golden_tables():
    """(key, claim, cell, table, with_stability) for every variant of every test case."""
    claims = load_claims()
    for pname in PROFILES:
        profile = load_profile(pname)
        for claim in claims.values():
            claim = claim.at_profile(profile)
            metric = claim.threshold("metric")
            noise = noise_prior(profile, metric)
            for cell in cells_for(claim, profile):
                arms, seeds = cell_arms(profile, cell)
                scen = claim.scenarios_fn()(claim, arms, noise)
                base = f"{pname}/{claim.id}/{cell.id}"

                def draw(mu_arms, name, use_seeds=seeds):
                    return simulate_table(mu_arms, use_seeds, noise, metric, _rng(f"{base}/{name}"))

                yield f"{base}/true", claim, cell, draw(scen["true"].arms, "true"), True
                yield f"{base}/boundary", claim, cell, draw(scen["boundary"].arms, "boundary"), False
                violation = draw(scen["violation"].arms, "violation")
                yield f"{base}/violation", claim, cell, violation, False
                yield f"{base}/flat", claim, cell, draw(scen["true"].arms.assign(mu=0.0), "flat"), False
                yield f"{base}/diverged", claim, cell, _diverge(violation, metric, base), False
                yield f"{base}/few", claim, cell, draw(scen["true"].arms, "true", seeds[:2]), False
                if claim.id in ("C7", "C8"):
                    delta = claim.threshold("delta")
                    for name, pen in (("fp16-nopenalty", 0.0), ("fp16-penalty", 3 * delta)):
                        joined = pd.concat([scen["true"].arms, scen["true"].arms.assign(
                            bits=16, mu=scen["true"].arms["mu"] - pen)], ignore_index=True)
                        yield f"{base}/{name}", claim, cell, draw(joined, name), False


def _record(claim, cell, table, with_stability: bool) -> dict:
    decide = cell_decider(claim, cell)
    try:
        v = decide(table)
    except ValueError as e:  # a pipeline error is pinned too (its message)
        return {"error": str(e)}
    out = {"outcome": v.outcome, "reason": v.reason, "observed": v.observed, "stats": dict(v.stats)}
    if with_stability:
        out["stability"] = stability(decide, table, claim.threshold("metric"), v.outcome, STABILITY_DRAWS, rng_seed=0)
    return out


def build() -> dict:
    return {key: _record(claim, cell, table, stab) for key, claim, cell, table, stab in golden_tables()}


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            return False
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        if math.isinf(a) or math.isinf(b):
            return a == b
        return abs(a - b) <= TOL * max(1.0, abs(a), abs(b))
    return a == b


def _diff(key: str, want: dict, got: dict) -> list[str]:
    if "error" in want or "error" in got:
        return [] if want == got else [f"{key}: {want.get('error', want.get('outcome'))!r} -> "
                                       f"{got.get('error', got.get('outcome'))!r}"]
    out = []
    for field in ("outcome", "reason", "observed"):
        if want[field] != got[field]:
            out.append(f"{key}: {field}\n  golden: {want[field]!r}\n  now:    {got[field]!r}")
    if "stability" in want and not _same(want["stability"], got.get("stability")):
        out.append(f"{key}: stability {want['stability']!r} -> {got.get('stability')!r}")
    ws, gs = want["stats"], got["stats"]
    for k in sorted(set(ws) | set(gs)):
        if k not in gs or k not in ws:
            out.append(f"{key}: stats[{k!r}] {'lost' if k not in gs else 'added'}")
        elif not _same(ws[k], gs[k]):
            out.append(f"{key}: stats[{k!r}] {ws[k]!r} -> {gs[k]!r}")
    return out


def test_every_verdict_matches_the_golden_file():
    got = build()
    if os.environ.get("QAT_GOLDEN_REGEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=0, sort_keys=True) + "\n")
        pytest.skip(f"wrote {GOLDEN} ({len(got)} verdicts)")
    want = json.loads(GOLDEN.read_text())
    assert sorted(want) == sorted(got), (f"cases lost {sorted(set(want) - set(got))[:5]}, "
                                         f"added {sorted(set(got) - set(want))[:5]}")
    problems = [p for key in sorted(want) for p in _diff(key, want[key], got[key])]
    assert not problems, f"{len(problems)} difference(s):\n" + "\n".join(problems[:40])


def test_the_golden_tables_reach_every_outcome_and_kind():
    """The golden file is only worth what it covers: every claim reaches at least two outcomes,
    and the variants reach premise-absent, too-few-seeds and diverged runs."""
    want = json.loads(GOLDEN.read_text())
    by_claim: dict[str, set] = {}
    for key, rec in want.items():
        if "error" in rec:
            continue
        by_claim.setdefault(key.split("/")[1], set()).add(rec["outcome"])
    assert set(by_claim) == set(load_claims())
    assert all(len(o) >= 2 for o in by_claim.values()), by_claim
    decided = [rec for rec in want.values() if "error" not in rec]
    kinds = {rec["stats"].get("inconclusive_kind") for rec in decided}
    assert {"premise", "seeds"} <= kinds
    assert any(rec["stats"].get("n_diverged", 0) > 0 and rec["outcome"] != "inconclusive" for rec in decided)

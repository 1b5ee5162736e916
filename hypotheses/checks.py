"""A profile and the claims checked against each other before anything trains.

The engine validates a profile's runs (engine.design: fields, grids, role sizes that no design
trains). What the claim layer reads from a profile, and what the claims name, is checked here,
so that each mistake is one error naming the file and the key when the suite collects (or a
command loads the profile), never a FAILED test after every run has trained:
- `check_verdicts(profile, claims)`: `[verdicts]` holds only known keys; `stability_draws` is
  an integer >= 0; `[verdicts.delta]` maps known claim ids to positive numbers; each
  `[verdicts.noise.<metric>]` holds seed, seed_wd and run SDs >= 0; a
  `[verdicts.bit_substitution]` names known claims, allowed bit-widths and its reason;
- `check_claim(claim, profile)`: the claim's decider (and its calibration scenarios) import
  and are callable; a decider that uses the smallest effect of interest has the profile's
  `[verdicts.delta]` entry; every size of the claim's role is a size its first design (the one
  its cases are made of) trains.
Both raise `ProfileError` (the profile is wrong) or `ClaimsFileError` (the claims file is).
"""

from __future__ import annotations

import math
from typing import Mapping

from engine.design import Profile, ProfileError
from hypotheses.claims import Claim, bit_substitution
from hypotheses.simulate import Noise

VERDICTS_KEYS = ("stability_draws", "delta", "noise", "bit_substitution")
DEFAULT_STABILITY_DRAWS = 200  # SE of a stability near 0.9 is 0.02 at 200 draws


def stability_draws(profile: Profile) -> int:
    """`[verdicts] stability_draws`: re-run draws per verdict (0 = no stability)."""
    n = (profile.verdicts or {}).get("stability_draws", DEFAULT_STABILITY_DRAWS)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ProfileError(f"{profile.path}: [verdicts] stability_draws must be an integer >= 0 "
                           f"(0 = no stability), got {n!r}")
    return n


def check_verdicts(profile: Profile, claims: Mapping[str, Claim]) -> None:
    """The profile's `[verdicts]` section, whole; ProfileError naming the file and the key."""
    verdicts = profile.verdicts or {}
    unknown = [k for k in verdicts if k not in VERDICTS_KEYS]
    if unknown:
        raise ProfileError(f"{profile.path}: [verdicts] has unknown key(s) {unknown} (misspelt?); "
                           f"allowed: {list(VERDICTS_KEYS)}")
    stability_draws(profile)
    deltas = verdicts.get("delta", {})
    if not isinstance(deltas, Mapping):
        raise ProfileError(f"{profile.path}: [verdicts.delta] must be a table of claim id = smallest effect")
    for claim_id, value in deltas.items():
        if claim_id not in claims:
            raise ProfileError(f"{profile.path}: [verdicts.delta] {claim_id} is not a claim (misspelt?); "
                               f"the claims are {list(claims)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise ProfileError(f"{profile.path}: [verdicts.delta] {claim_id} = {value!r} must be a positive number "
                               "(the smallest effect of interest, in the claim's metric)")
    sub = verdicts.get("bit_substitution")
    if sub:
        unknown = [c for c in (sub.get("claims", []) if isinstance(sub, Mapping) else []) if c not in claims]
        if unknown:
            raise ProfileError(f"{profile.path}: [verdicts.bit_substitution] claims {unknown} are not claims "
                               f"(misspelt?); the claims are {list(claims)}")
        try:
            for claim_id in claims:
                bit_substitution(profile, claim_id)
        except ValueError as e:
            raise ProfileError(str(e)) from None
    noise = verdicts.get("noise", {})
    if not isinstance(noise, Mapping) or not all(isinstance(t, Mapping) for t in noise.values()):
        raise ProfileError(f"{profile.path}: [verdicts.noise.<metric>] must be tables of seed, seed_wd, run SDs")
    for metric, table in noise.items():
        try:
            Noise.from_mapping(table, f"{profile.path}: [verdicts.noise.{metric}]")
        except ValueError as e:
            raise ProfileError(str(e)) from None


def check_claim(claim: Claim, profile: Profile) -> None:
    """Everything `claim` needs from `profile` and from its own file, found before any run trains.

    Assumes the claim's designs exist in the profile (a missing design is reported on its own,
    `hypotheses.cells.cells_for`).
    """
    decide = claim.decide_fn()
    if claim.scenarios:
        claim.scenarios_fn()
    deltas = (profile.verdicts or {}).get("delta", {})
    if getattr(decide, "uses_delta", True) and claim.id not in deltas:
        raise ProfileError(f"{profile.path}: [verdicts.delta] has no entry for {claim.id}, whose decider "
                           f"{claim.decider} needs the smallest effect of interest; add `{claim.id} = <value>`")
    if claim.role:  # the cases are made of the first design's sizes (the others may only add partners)
        trained = profile.design(claim.designs[0]).sizes
        outside = [s for s in profile.role(claim.role) if s not in trained]
        if outside:
            raise ProfileError(f"{profile.path}: [roles] {claim.role} names size(s) {outside} that claim "
                               f"{claim.id}'s design {claim.designs[0]} (its cases') does not train; it trains {trained}")

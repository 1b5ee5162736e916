"""How a claim is cut into test cases for a profile, generated from the claim's own data.

A `Cell` names the design slice one test case needs (designs + spec-field filters) and the
keyword arguments of the claim's decider. `cells_for(claim, profile)` reads the claim's
`cells` table in fixtures/claims.toml (as scikit-learn's `parametrize_with_checks`
generates checks from an estimator's declared tags): `by = ["bits", "size"]` gives one
case per combination present in the design, `id = "..."` one case for the whole slice;
`role` restricts sizes, `filters` restricts other fields; `cases = [{id, design, filters,
args}, ...]` gives one case per named sub-claim (R3's shape and beta2 parts), each on its own
designs with its own filters and decider arguments. Adding a claim means data plus a
decider, not edits here. Ids read like the thing they test: `int6-t20k`, `t100k`, `probe`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from engine.design import Profile, ProfileError
from engine.spec import RunSpec


@dataclass(frozen=True)
class Cell:
    id: str
    designs: tuple[str, ...]
    filters: dict = field(default_factory=dict)  # RunSpec field -> value or list of values
    args: dict = field(default_factory=dict)  # keyword arguments for the decider


def bits_id(bits: int) -> str:
    return "fp16" if int(bits) == 16 else f"int{int(bits)}"


def _as_list(v) -> list:
    return list(v) if isinstance(v, (list, tuple, set)) else [v]


def _matches(spec: RunSpec, filters: dict) -> bool:
    return all(getattr(spec, k) in _as_list(v) for k, v in filters.items())


def cell_specs(profile: Profile, cell: Cell) -> list[RunSpec]:
    """The specs of the profile that one cell's table is made of; a run two of its designs share
    (same spec, same run id: e.g. tiny's INT4 runs of phase2 and phase5_int4) counts once."""
    seen: dict[str, RunSpec] = {}
    for d in cell.designs:
        for s in profile.design(d).specs:
            if _matches(s, cell.filters):
                seen.setdefault(s.run_id, s)
    return list(seen.values())


def cell_decider(claim, cell: Cell):
    """``table -> Verdict``: the claim's decider bound to one cell's arguments (what the suite,
    the stability draw, calibration and the plan all call)."""
    fn = claim.decide_fn()
    note = claim.thresholds.get("bits_substitution")  # the profile tests other bit-widths: every verdict says so

    def decide(table):
        v = fn(table, claim, **cell.args)
        return replace(v, stats={**v.stats, "bits_substitution": note}) if note else v

    return decide


def cells_for(claim, profile: Profile) -> list[Cell]:
    """The test cases of ``claim`` at ``profile``; ``ProfileError`` if a design is absent."""
    spec = claim.cells
    designs = tuple(claim.designs)
    for d in designs:
        profile.design(d)  # raises ProfileError naming the profile and its designs
    filters = dict(spec.get("filters", {}))
    if claim.role:
        filters["size"] = profile.role(claim.role)
    if "cases" in spec:
        out = []
        for case in spec["cases"]:
            own = tuple(d.strip() for d in str(case.get("design", claim.design)).split("+"))
            out.append(Cell(str(case["id"]), own, {**filters, **dict(case.get("filters", {}))},
                            dict(case.get("args", {}))))
        return out
    by = list(spec.get("by", []))
    if not by:
        args = {}
        if spec.get("args") == "fit_heldout":
            if len(designs) != 2:
                raise ProfileError(f"claim {claim.id}: args 'fit_heldout' needs two designs, got {designs}")
            args = {"fit_sizes": profile.design(designs[0]).sizes, "heldout_sizes": profile.design(designs[1]).sizes}
        return [Cell(str(spec["id"]), designs, filters, args)]
    specs = [s for s in profile.design(designs[0]).specs if _matches(s, filters)]
    values = {
        "bits": sorted({s.bits for s in specs}, reverse=True),  # FP16 first, as the paper's tables
        "size": list(dict.fromkeys(s.size for s in specs)),  # design (ladder) order
    }
    cells = [{}]
    for key in by:
        cells = [{**c, key: v} for c in cells for v in values[key]]
    out = []
    for combo in cells:
        cid = "-".join(bits_id(v) if k == "bits" else str(v) for k, v in combo.items())
        out.append(Cell(cid, designs, {**filters, **combo}, dict(combo)))
    return out

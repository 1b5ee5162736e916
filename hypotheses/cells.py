"""How each claim is cut into test cases for a profile: `profile -> [pytest.param(Cell)]`.

A `Cell` names the design slice a test case needs (designs + spec-field filters), which the
`table` fixture fetches at setup time, and the keyword arguments of the claim's decider.
Ids read like the thing they test: `int6-t20k`, `t100k`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from engine.design import Profile

PHASE2_BITS = [16, 8, 6]  # the paper's Phase 2 precisions


@dataclass(frozen=True)
class Cell:
    designs: tuple[str, ...]
    filters: dict = field(default_factory=dict)  # RunSpec field -> value or list of values
    args: dict = field(default_factory=dict)  # keyword arguments for the decider


def bits_id(bits: int) -> str:
    return "fp16" if bits == 16 else f"int{bits}"


def c1_cells(profile: Profile) -> list:
    d = profile.design("phase2")
    bits = sorted({s.bits for s in d.specs}, reverse=True)
    return [
        pytest.param(Cell(("phase2",), {"bits": b, "size": size}, {"bits": b, "size": size}), id=f"{bits_id(b)}-{size}")
        for b in bits
        for size in d.sizes
    ]


def c2_cells(profile: Profile) -> list:
    return [
        pytest.param(Cell(("phase2",), {"size": size, "bits": PHASE2_BITS}, {"size": size}), id=size)
        for size in profile.design("phase2").sizes
    ]


def arm_cells(design: str, label: str):
    def cells(profile: Profile) -> list:
        return [pytest.param(Cell((design,), {"bits": PHASE2_BITS}), id=label)]

    return cells


def c6_cells(profile: Profile) -> list:
    fit, heldout = profile.design("phase2").sizes, profile.design("phase5_sizes").sizes
    cell = Cell(("phase2", "phase5_sizes"), {"bits": [16, 6]}, {"fit_sizes": fit, "heldout_sizes": heldout})
    return [pytest.param(cell, id="phase2-fit-heldout")]


def c7_cells(profile: Profile) -> list:
    return [pytest.param(Cell(("phase5_int4",), {"size": s}, {"size": s}), id=s) for s in profile.role("int4_large")]


def c8_cells(profile: Profile) -> list:
    return [pytest.param(Cell(("phase5_int4",), {"size": profile.role("int4_small")}), id="small-sizes")]


def c9_cells(profile: Profile) -> list:
    return [pytest.param(Cell(("mechanism_probe",), {"bits": [16, 6]}), id="probe")]

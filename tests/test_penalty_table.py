"""scripts/penalty_table.py: the measurement behind the tiny profile's bit-widths pairs runs by
seed through the deciders' ArmTable, within one slice of every other run factor (synthetic
tables: unit test only)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "penalty_table.py"


@pytest.fixture(scope="module")
def penalty_rows():
    spec = importlib.util.spec_from_file_location("penalty_table", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.penalty_rows


def _table(penalty: dict[int, float], optimizer: str = "muon", seeds=range(6), noise=0.002) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for seed in seeds:
        base = 2.0 + 0.01 * seed  # a seed effect shared by the arms: pairing removes it
        for bits, pen in penalty.items():
            rows.append({"size": "t20k", "steps": 120, "warmdown": 0.33, "lr_mult": 1.0, "bits": bits,
                         "optimizer": optimizer, "seed": seed, "batch_tokens": 1024, "status": "ok",
                         "val_bpb_q": base + pen + rng.normal(0, noise)})
    return pd.DataFrame(rows)


def test_the_penalty_is_paired_by_seed_and_its_premise_judged(penalty_rows):
    rows = penalty_rows(_table({16: 0.0, 4: 0.05, 3: 0.0}), alpha=0.05, delta=0.025)
    by_bits = {r["bits"]: r for r in rows}
    assert set(by_bits) == {4, 3} and all(r["pairs"] == 6 for r in rows)
    assert by_bits[4]["penalty"] == pytest.approx(0.05, abs=0.004) and by_bits[4]["premise"] == "met"
    assert abs(by_bits[3]["penalty"]) < 0.004 and by_bits[3]["premise"] == "absent"
    assert by_bits[4]["lower95"] < by_bits[4]["penalty"]


def test_a_diverged_run_leaves_its_seed_out_and_slices_stay_apart(penalty_rows):
    t = pd.concat([_table({16: 0.0, 3: 0.1}), _table({16: 0.0, 3: 0.0}, optimizer="adamw", seeds=range(4))],
                  ignore_index=True)  # the muon slice has more runs: it is the usual one, named "-"
    t.loc[(t["bits"] == 3) & (t["seed"] == 0) & (t["optimizer"] == "muon"), ["status", "val_bpb_q"]] = ["diverged", np.nan]
    rows = {r["slice"]: r for r in penalty_rows(t, alpha=0.05, delta=0.025)}
    assert rows["-"]["pairs"] == 5 and rows["-"]["penalty"] == pytest.approx(0.1, abs=0.004)
    assert rows["optimizer=adamw"]["pairs"] == 4 and abs(rows["optimizer=adamw"]["penalty"]) < 0.004

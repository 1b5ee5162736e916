"""Fixtures shared by the unit tests: pinned CPU threads, a fake run record, a tmp cache.

- `one_thread` / `one_thread_module`: torch on one CPU thread for a test / a test module
  (bit-identity tests compare runs whose float reductions must split the same way);
- `fake_result`: a function `(spec, diverged=False) -> result` shaped like engine.train's
  record, with numbers that vary sensibly with the spec (no training);
- `tmp_cache`: an empty `ResultsCache` under the test's tmp dir (its data dir goes with it);
- `unit`: a one-design profile (Phase 2 at t10k: 3 bit-widths x 3 warmdowns x 4 seeds, C1/C2
  deltas, a noise prior), its path and an empty cache beside it, for decide/plan tests.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import pytest

PENALTY = {16: 0.0, 8: 0.01, 6: 0.05, 5: 0.1, 4: 0.2}  # quantisation penalty by bits, at 20k params


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def one_thread_module() -> Iterator[None]:
    with torch_threads(1):
        yield


def make_fake_result(spec, diverged: bool = False) -> dict:
    """A result record shaped like engine.train's, deterministic per run id (module level: picklable)."""
    from engine.ladder import count_params, get_config

    rng = np.random.default_rng(int(spec.run_id[:8], 16))
    n = count_params(get_config(spec.size), 256)
    base = 3.2 - 0.08 * math.log(n) + 0.3 * (spec.warmdown - 0.33) ** 2 + rng.normal(0, 0.005)
    pen = PENALTY[spec.bits] * (20_000 / n) ** 0.3
    curve = [[s, 5.5 * math.exp(-s / 8) + base + 0.1 * rng.random()] for s in range(0, spec.steps, 4)]
    common = {"run_id": spec.run_id, "n_params": n, "device": "cpu (synthetic)", "loss_curve": curve,
              "tokens_seen": spec.tokens, "train_time_s": 1.5, "wall_time_s": 2.0}
    if diverged:
        return {**common, "status": "diverged", "diverged_step": 7}
    mats = {f"blocks.{i}.{m}": {"int6": 0.245 + rng.normal(0, 0.003) - (0.01 if spec.quantised else 0),
                                "own": 0.24}
            for i in range(2) for m in ("attn.q", "attn.k", "mlp.fc", "mlp.proj")}
    probe = {"step": spec.warmdown_start, "label": "pre_warmdown", "per_matrix": mats,
             "int6_mean": float(np.mean([v["int6"] for v in mats.values()])), "own_mean": 0.24}
    return {**common, "status": "ok", "diverged_step": None, "val_bpb": base, "val_bpb_q": base + pen,
            "val_bpb_int8": base + 0.001, "quant_penalty": pen, "grid_dist_int6_prewd": probe["int6_mean"],
            "grid_dist_own_prewd": 0.24, "grid_probes": [probe]}


@pytest.fixture(scope="session")
def fake_result():
    return make_fake_result


@pytest.fixture
def tmp_cache(tmp_path):
    from engine.cache import ResultsCache

    return ResultsCache(tmp_path / "cache")


UNIT_PROFILE = """
[profile]
name = "unit"
description = "test profile: one phase-2 slice, 4 seeds"

[defaults]
steps = 10
batch_tokens = 128
seq_len = 16

[designs.phase2]
grid = { size = ["t10k"], bits = [16, 8, 6], warmdown = [0.10, 0.33, 0.50], seed = [0, 1, 2, 3] }

[verdicts]
stability_draws = 30

[verdicts.delta]
C1 = 0.01
C2 = 0.01

[verdicts.noise.val_bpb_q]
seed = 0.02
seed_wd = 0.006
run = 0.004
"""


@pytest.fixture
def unit(tmp_path):
    """(path, profile, cache): the one-design test profile and an empty cache beside it."""
    from engine.cache import ResultsCache
    from engine.design import load_profile

    path = tmp_path / "unit.toml"
    path.write_text(UNIT_PROFILE)
    return path, load_profile(path), ResultsCache(tmp_path / "cache")

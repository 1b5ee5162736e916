"""engine.optim: parameter groups, the schedule hook, and a state round trip that resumes exactly.

A checkpoint restores the model and the optimiser through `state_dict` / `load_state_dict`;
the run it resumes must take bit-identical next steps, for both arms (Muon + Adam, AdamW).
"""

from __future__ import annotations

import io

import pytest
import torch

from engine.ladder import get_config
from engine.model import GPT
from engine.optim import ChainedOptimizer, apply_schedule, build_optimizer, split_params
from engine.spec import RunSpec

VOCAB = 256


def _setup(spec: RunSpec, seed: int = 0) -> tuple[GPT, ChainedOptimizer]:
    torch.manual_seed(seed)
    model = GPT(get_config(spec.size), VOCAB)
    model.set_qat(spec.bits)
    return model, build_optimizer(model, spec)


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randint(0, VOCAB, (2, 16), generator=g)  # (B, T)
    return x, torch.roll(x, -1, dims=1)


def _step(model: GPT, opt: ChainedOptimizer, step: int, factor: float) -> None:
    apply_schedule(opt, factor, momentum=0.9, beta2=0.95)
    x, y = _batch(step)
    model(x, y).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def _round_trip(obj: dict) -> dict:
    """Through bytes, as a checkpoint on disk would be."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


@pytest.mark.parametrize("optimizer", ["muon", "adamw"])
def test_state_round_trip_gives_identical_next_steps(optimizer, one_thread):
    spec = RunSpec(size="t10k", optimizer=optimizer, bits=6)
    model, opt = _setup(spec)
    for step in range(3):
        _step(model, opt, step, factor=1.0)
    saved_model, saved_opt = _round_trip(model.state_dict()), _round_trip(opt.state_dict())

    resumed, resumed_opt = _setup(spec, seed=123)  # other init: everything must come from the state
    resumed.load_state_dict(saved_model)
    resumed_opt.load_state_dict(saved_opt)
    for step in range(3, 6):  # a decaying LR: the schedule must reach the restored groups
        _step(model, opt, step, factor=1.0 - 0.2 * (step - 2))
        _step(resumed, resumed_opt, step, factor=1.0 - 0.2 * (step - 2))
    for (name, a), b in zip(model.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in resumed_opt.param_groups]


def test_chained_groups_are_the_childrens_before_and_after_loading():
    spec = RunSpec(size="t10k")
    model, opt = _setup(spec)
    opt.load_state_dict(opt.state_dict())
    child_groups = [g for o in opt.optimizers for g in o.param_groups]
    assert all(a is b for a, b in zip(opt.param_groups, child_groups, strict=True))
    apply_schedule(opt, 0.5, momentum=0.9, beta2=0.99)
    for g in child_groups:
        assert g["lr"] == g["base_lr"] * 0.5
        assert g["momentum"] == 0.9 if g["kind"] == "muon" else g["betas"][1] == 0.99


def test_groups_split_every_parameter_once_with_the_spec_learning_rates():
    spec = RunSpec(size="t10k", lr_mult=2.0)
    model, opt = _setup(spec)
    groups = split_params(model)
    ids = [id(p) for ps in groups.values() for p in ps]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each parameter in exactly one group
    by_kind = {(g["kind"], g["base_lr"]) for g in opt.param_groups}
    assert by_kind == {("muon", spec.matrix_lr * 2), ("adam", spec.embed_lr * 2), ("adam", spec.scalar_lr * 2)}
    adamw = build_optimizer(model, spec.replace(optimizer="adamw"))
    decays = sorted(g["weight_decay"] for g in adamw.param_groups)
    assert decays == [0.0, 0.0, spec.adamw_weight_decay]  # weight decay on matrices only

"""The GPT: shapes, initial loss, QAT switch, which weights are quantised."""

import math

import torch

from engine.ladder import get_config
from engine.model import GPT, QATLinear


def _model(**kw):
    torch.manual_seed(0)
    return GPT(get_config("t20k"), 256, **kw)


def test_initial_loss_is_uniform_guess():
    m = _model()
    x, y = torch.randint(0, 256, (2, 16)), torch.randint(0, 256, (2, 16))
    loss = m(x, y)
    # zero-initialised output projections + tiny tied embedding: ~ln(256) at init
    assert abs(loss.item() - math.log(256)) < 0.05
    assert abs(m(x, y, reduction="sum").item() - 32 * loss.item()) < 1e-3
    assert m(x, y, reduction="none").shape == (32,)


def test_qat_switch_changes_forward_and_names():
    m = _model()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = torch.randint(0, 256, (2, 16))
    base = m(x, x).item()
    m.set_qat(4)
    assert all(mod.qat_bits == 4 for mod in m.modules() if isinstance(mod, QATLinear))
    assert m(x, x).item() != base
    m.set_qat(16)
    assert m(x, x).item() == base
    names = m.quantized_weight_names()
    assert "tok_emb.weight" not in names and all(n.endswith(".weight") for n in names)
    assert len(names) == 6 * get_config("t20k").n_layers
    assert "tok_emb.weight" in _model(quantize_embeddings=True).quantized_weight_names()


def test_gradients_flow_to_every_parameter_under_qat():
    m = _model()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, QATLinear):
                mod.weight.normal_(0, 0.1)
    m.set_qat(6)
    x = torch.randint(0, 256, (2, 16))
    m(x, x).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())

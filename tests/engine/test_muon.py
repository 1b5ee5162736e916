"""Our Muon matches torch.optim.Muon's update (same algorithm; only the NS precision differs)."""

import torch

from engine.muon import Muon, newton_schulz


def test_newton_schulz_orthogonalises():
    torch.manual_seed(0)
    g = torch.randn(32, 64)
    x = newton_schulz(g, 5, dtype=torch.float32)
    sv = torch.linalg.svdvals(x)
    assert 0.5 < sv.min() and sv.max() < 1.3  # quintic NS lands singular values near 1


def test_matches_torch_muon_in_bf16():
    torch.manual_seed(0)
    w1 = torch.nn.Parameter(torch.randn(24, 48))
    w2 = torch.nn.Parameter(w1.detach().clone())
    ours = Muon([w1], lr=0.02, momentum=0.95, ns_dtype=torch.bfloat16)
    ref = torch.optim.Muon([w2], lr=0.02, momentum=0.95, weight_decay=0.0, nesterov=True, adjust_lr_fn="original")
    for _ in range(3):
        g = torch.randn(24, 48)
        w1.grad, w2.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    assert torch.allclose(w1, w2, atol=2e-3)


def test_tall_matrix_scale():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.zeros(64, 16))
    w.grad = torch.randn(64, 16)
    Muon([w], lr=1.0, momentum=0.0, nesterov=False, ns_dtype=torch.float32).step()
    # update = -lr * sqrt(rows/cols) * NS(g); NS(g) has unit-ish singular values
    assert torch.linalg.svdvals(w.detach()).max() > 1.5

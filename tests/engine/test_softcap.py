"""The fused soft-cap + cross-entropy gives the plain autograd graph's bits, values and gradients."""

import pytest
import torch

from engine import softcap
from engine.softcap import softcap_cross_entropy, softcap_reference


def _reference(logits, targets, cap, reduction):
    if logits.dim() == 2:
        return softcap_reference(logits, targets, cap, reduction)
    return torch.stack([softcap_reference(lk, tk, cap, reduction) for lk, tk in zip(logits.unbind(0), targets.unbind(0))])


def _loss_and_grad(fn, logits, targets, cap, reduction, weights):
    x = logits.clone().requires_grad_()
    loss = fn(x, targets, cap, reduction)
    (grad,) = torch.autograd.grad((loss * weights).sum(), x)
    return loss.detach(), grad


@pytest.mark.parametrize("shape", [(1024, 256), (333, 1024), (4, 1024, 256), (3, 97, 256)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_fused_matches_the_autograd_graph_to_the_last_bit(shape, reduction, monkeypatch):
    monkeypatch.setattr(softcap, "BLOCK_BYTES", 64 * 1024)  # several blocks per run, a ragged last one
    g = torch.Generator().manual_seed(sum(shape))
    logits = torch.randn(*shape, generator=g) * 25  # far into tanh's saturation, as late training is
    targets = torch.randint(0, shape[-1], shape[:-1], generator=g)
    out_shape = shape[:-1] if reduction == "none" else shape[:-2]
    weights = torch.rand(out_shape, generator=g) + 0.5  # a non-uniform upstream gradient
    ref_loss, ref_grad = _loss_and_grad(_reference, logits, targets, 30.0, reduction, weights)
    loss, grad = _loss_and_grad(softcap_cross_entropy, logits, targets, 30.0, reduction, weights)
    assert loss.shape == ref_loss.shape
    assert torch.equal(loss, ref_loss)
    assert torch.equal(grad, ref_grad)


def test_a_wrong_gradient_would_be_caught():
    # The harness can fail: a soft-cap gradient without the tanh factor differs.
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(64, 256, generator=g) * 25, torch.randint(0, 256, (64,), generator=g)
    _, ref = _loss_and_grad(_reference, logits, targets, 30.0, "mean", torch.ones(()))
    _, uncapped = _loss_and_grad(lambda x, t, c, r: torch.nn.functional.cross_entropy(x, t, reduction=r),
                                 logits, targets, 30.0, "mean", torch.ones(()))
    assert not torch.equal(ref, uncapped)


def test_no_grad_and_other_dtypes_take_the_same_values():
    g = torch.Generator().manual_seed(1)
    logits, targets = torch.randn(2, 128, 256, generator=g) * 10, torch.randint(0, 256, (2, 128), generator=g)
    with torch.no_grad():
        assert torch.equal(softcap_cross_entropy(logits, targets, 30.0, "sum"), _reference(logits, targets, 30.0, "sum"))
    bf = logits.bfloat16()  # the GPU path's dtype: the plain graph, soft-cap in bf16 then fp32 loss
    assert torch.equal(softcap_cross_entropy(bf, targets, 30.0), _reference(bf, targets, 30.0, "mean"))

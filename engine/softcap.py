"""The tanh logit soft-cap and the cross-entropy after it, fused by row blocks on the CPU.

Why hand-written: a tiny run's step is bound by memory traffic of elementwise kernels on the
(tokens x vocabulary) logits, not by arithmetic. Autograd runs the soft-cap and the loss as
ten full passes over that tensor (div, tanh, mul, log-softmax forward; the nll, log-softmax,
mul, tanh and div backwards), each streaming megabytes out of cache. This module runs the
*same ATen kernels in the same order* on blocks of rows small enough to stay in L2, so each
block is read from memory once per direction. `torch.compile` fuses these too, but its
compile (~36 s per graph on this CPU) costs more than a whole tiny run; no library offers
the fused op for the CPU.

Bit-identity with the autograd graph of `cap * tanh(logits / cap)` followed by
`F.cross_entropy` is the contract (tests/engine/test_softcap.py checks values and gradients
to the last bit): every kernel is elementwise or per row, and the loss itself is reduced by
`F.nll_loss` over the whole (rows, V) log-probabilities, exactly as `F.cross_entropy` does.
Used for float32 logits on the CPU; other dtypes and devices take the plain graph (on CUDA
the compiled step fuses it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

BLOCK_BYTES = 256 * 1024  # per (rows, V) block: the block's few live tensors stay in a 2 MiB L2
_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}  # ATen's enum, for nll_loss_backward


def _blocks(n_rows: int, vocab: int):
    step = max(1, BLOCK_BYTES // (4 * vocab))
    return [(r, min(r + step, n_rows)) for r in range(0, n_rows, step)]


def softcap_reference(logits: Tensor, targets: Tensor, cap: float, reduction: str = "mean") -> Tensor:
    """The plain graph (the parameter-golf recipe): (rows, V) logits, (rows,) targets."""
    capped = cap * torch.tanh(logits / cap)
    return F.cross_entropy(capped.float(), targets, reduction=reduction)


class _SoftcapCrossEntropy(torch.autograd.Function):
    """(K, rows, V) logits, (K, rows) targets -> K losses (K x rows for reduction "none"),
    each reduced over its own rows only, as K separate F.cross_entropy calls would."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, cap: float, reduction: str) -> Tensor:
        k, n, v = logits.shape
        red = _REDUCTIONS[reduction]
        t_all = torch.empty_like(logits)  # tanh(logits / cap): tanh's backward needs it
        logp = torch.empty_like(logits)  # log-probabilities: log-softmax's backward needs them
        losses, weights = [], []
        for j in range(k):
            for r0, r1 in _blocks(n, v):
                t = torch.tanh(logits[j, r0:r1] / cap)
                t_all[j, r0:r1] = t
                logp[j, r0:r1] = torch.log_softmax(cap * t, dim=1)
            # One nll_loss over the run's rows: the reduction order F.cross_entropy uses.
            loss, total_weight = torch.ops.aten.nll_loss_forward(logp[j], targets[j], None, red, -100)
            losses.append(loss)
            weights.append(total_weight)
        ctx.save_for_backward(t_all, logp, targets, *weights)
        ctx.cap, ctx.reduction = cap, red
        return torch.stack(losses)

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        t_all, logp, targets, *weights = ctx.saved_tensors
        cap, red = ctx.cap, ctx.reduction
        k, n, v = logp.shape
        grad = torch.empty_like(logp)
        for j in range(k):
            for r0, r1 in _blocks(n, v):
                g_out = grad_loss[j, r0:r1] if red == 0 else grad_loss[j]
                g = torch.ops.aten.nll_loss_backward(g_out, logp[j, r0:r1], targets[j, r0:r1], None, red, -100,
                                                     weights[j])
                g = torch.ops.aten._log_softmax_backward_data(g, logp[j, r0:r1], 1, logp.dtype)
                g = torch.ops.aten.tanh_backward(g * cap, t_all[j, r0:r1])  # d(cap * t)/dt, then dt/du
                grad[j, r0:r1] = g / cap  # du/dlogits
        return grad, None, None, None


def softcap_cross_entropy(logits: Tensor, targets: Tensor, cap: float, reduction: str = "mean") -> Tensor:
    """cross_entropy(cap * tanh(logits / cap), targets) per run.

    (rows, V) logits with (rows,) targets give one loss, as F.cross_entropy; (K, rows, V)
    with (K, rows) give K losses, each over its own run's rows. Fused by row blocks for
    float32 CPU logits (bit-identical to `softcap_reference`); the plain graph otherwise.
    """
    single = logits.dim() == 2
    if logits.dtype != torch.float32 or logits.device.type != "cpu":
        if single:
            return softcap_reference(logits, targets, cap, reduction)
        return torch.stack([softcap_reference(lk, tk, cap, reduction)
                            for lk, tk in zip(logits.unbind(0), targets.unbind(0))])
    out = _SoftcapCrossEntropy.apply((logits[None] if single else logits).contiguous(),
                                     (targets[None] if single else targets).contiguous(), float(cap), reduction)
    return out[0] if single else out

"""Muon (Keller Jordan): momentum SGD whose matrix updates are orthogonalised by Newton-Schulz.

Same algorithm and constants as parameter-golf (and torch.optim.Muon): Nesterov momentum,
5 quintic Newton-Schulz iterations with coefficients (3.4445, -4.7750, 2.0315), update
scaled by sqrt(max(1, rows/cols)), no weight decay.

Two arithmetic departures from parameter-golf's `train_gpt.py` (docs/fidelity.md): it wraps `zeropower_via_newtonschulz5` in `torch.compile`, which rounds
bf16 differently from this eager version; and it multiplies the bf16 Newton-Schulz output
by sqrt(rows/cols) in bf16, where this applies the factor in fp32 through the step size
(tall matrices only: elsewhere the factor is 1 and the two eager updates are identical).

Why our own 30 lines instead of torch.optim.Muon: torch's version always runs
Newton-Schulz in bfloat16. On GPUs that is right (and what we do there), but on CPUs
without bf16 matrix units it is several times slower than fp32 and dominates the
tiny profile's step time. `ns_dtype` picks bf16 on CUDA and fp32 on CPU;
`tests/engine/test_muon.py` checks our update against torch.optim.Muon's.
"""

from __future__ import annotations

import torch
from torch import Tensor

NS_COEFFS = (3.4445, -4.7750, 2.0315)


def newton_schulz(g: Tensor, steps: int = 5, eps: float = 1e-7, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """Approximately orthogonalise `g` (rows x cols): U V^T of its SVD, up to a bounded scale."""
    a, b, c = NS_COEFFS
    x = g.to(dtype)
    x = x / (x.norm() + eps)
    transposed = g.size(0) > g.size(1)
    if transposed:
        x = x.T
    for _ in range(steps):
        A = x @ x.T
        B = b * A + c * A @ A
        x = a * x + B @ x
    return (x.T if transposed else x).to(g.dtype)


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, ns_dtype: torch.dtype = torch.bfloat16):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps))
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.ndim != 2:
                    raise ValueError(f"Muon updates matrices only; got a parameter of shape {tuple(p.shape)}")
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(p.grad)
                g = p.grad.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
                update = newton_schulz(g, group["ns_steps"], dtype=self.ns_dtype)
                scale = max(1.0, p.size(0) / p.size(1)) ** 0.5
                p.add_(update, alpha=-group["lr"] * scale)
        return loss

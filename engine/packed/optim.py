"""Packed optimisers: Muon and Adam(W) over stacked (K, ...) parameters, hyper-parameters per run.

`PackedMuon` batches Newton-Schulz over every same-shape matrix of every run; `PackedAdam`
follows torch's single-tensor Adam/AdamW update step by step. Per-run learning rates,
momenta and betas are (K, 1, ...) float32 tensors rounded from the same Python doubles the
single-run optimisers see, so each run's update equals its single-run update.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from engine.muon import NS_COEFFS
from engine.packed.model import PackedGPT, PackedLinear
from engine.spec import RunSpec

ADAM_EPS = 1e-8  # as engine.optim.build_optimizer
NS_EPS = 1e-7  # engine.muon.newton_schulz's default, which engine.muon.Muon uses


def _to_device(rows: list[list[float]], device: torch.device) -> Tensor:
    """Per-run scalars (n rows of K Python doubles) as one float32 (n, K) tensor on `device`.

    float32 rounds each double as a kernel rounds a Python scalar argument, so per-run
    tensors reproduce the single-run arithmetic; one pinned, asynchronous copy per
    optimiser step keeps the host from waiting on the GPU for dozens of tiny copies.
    """
    t = torch.tensor(rows, dtype=torch.float32)  # master weights are fp32, as in the single path
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _ns_start(g: Tensor, eps: float, dtype: torch.dtype) -> Tensor:
    """Newton-Schulz's input: each matrix of g (K, rows, cols) over its norm, turned wide (K, r, c), r <= c."""
    x = g.to(dtype)
    x = x / (torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True) + eps)  # (K, rows, cols)
    return x.mT if g.size(1) > g.size(2) else x


def _ns_iterate(x: Tensor, steps: int) -> Tensor:
    """The quintic iterations of engine.muon.newton_schulz on a batch of wide matrices (N, r, c)."""
    a, b, c = NS_COEFFS
    for _ in range(steps):
        A = torch.bmm(x, x.mT)  # (N, r, r)
        B = b * A + torch.bmm(c * A, A)  # `c * A @ A` in the single version binds as (c*A) @ A
        x = a * x + torch.bmm(B, x)  # (N, r, c)
    return x


def batched_newton_schulz(g: Tensor, steps: int = 5, eps: float = NS_EPS,
                          dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """engine.muon.newton_schulz on each matrix of g (K, rows, cols), as batched matmuls."""
    x = _ns_iterate(_ns_start(g, eps, dtype), steps)
    return (x.mT if g.size(1) > g.size(2) else x).to(g.dtype)


class PackedMuon(torch.optim.Optimizer):
    """engine.muon.Muon over stacked matrices (K, rows, cols); `lr` and `momentum` are K-lists.

    Matrices of one (wide) shape go through Newton-Schulz together, all runs and layers in
    one batch: each matrix is still orthogonalised on its own, with a few large matmuls
    in place of many tiny ones (tiny models spend most of Muon's time on per-op overhead).
    """

    def __init__(self, params, lr: Sequence[float], momentum: Sequence[float], nesterov: bool = True,
                 ns_steps: int = 5, ns_dtype: torch.dtype = torch.bfloat16):
        super().__init__(params, dict(lr=list(lr), momentum=list(momentum), nesterov=nesterov, ns_steps=ns_steps))
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        todo = [(g, p) for g in self.param_groups for p in g["params"] if p.grad is not None]
        rows = []
        for group, p in todo:
            if p.ndim != 3:
                raise ValueError(f"PackedMuon updates stacked matrices (K, rows, cols); got shape {tuple(p.shape)}")
            scale = max(1.0, p.size(1) / p.size(2)) ** 0.5
            rows += [group["momentum"], [-lr * scale for lr in group["lr"]]]  # as Muon's alpha=-lr*scale
        scalars = _to_device(rows, todo[0][1].device) if todo else None  # (2 * params, K)
        batches: dict[tuple, list[tuple[int, Tensor]]] = {}  # (wide shape, ns steps) -> [(param index, x)]
        for i, (group, p) in enumerate(todo):
            mom = scalars[2 * i].view(-1, 1, 1)  # (K, 1, 1)
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p.grad)
            buf = state["momentum_buffer"]  # (K, rows, cols)
            buf.mul_(mom).add_(p.grad)
            # grad.add(buf, alpha=m) computes grad + m*buf; addcmul rounds the same per run.
            g = torch.addcmul(p.grad, buf, mom) if group["nesterov"] else buf
            x = _ns_start(g, NS_EPS, self.ns_dtype)  # (K, r, c), r <= c
            batches.setdefault((tuple(x.shape[1:]), group["ns_steps"]), []).append((i, x))
        for (_, ns_steps), members in batches.items():
            out = _ns_iterate(torch.cat([x for _, x in members]), ns_steps)  # (K * n, r, c)
            for x_new, (i, _) in zip(out.split(scalars.size(1)), members):  # back to (K, r, c) per matrix
                p = todo[i][1]
                update = (x_new.mT if p.size(1) > p.size(2) else x_new).to(p.dtype)  # (K, rows, cols)
                p.addcmul_(update, scalars[2 * i + 1].view(-1, 1, 1))  # p.add_(update, alpha=-lr*scale) per run
        return loss


class PackedAdam(torch.optim.Optimizer):
    """torch.optim.Adam / AdamW (single-tensor arithmetic) with per-run lr, betas, weight decay.

    Group `lr`, `betas` and `weight_decay` are K-lists; weight decay is decoupled (AdamW)
    as in engine.optim's AdamW arm; a 0 entry leaves that run's weights undecayed.
    """

    ROWS = 6  # per-run scalars per parameter, see step()

    def __init__(self, params, lr: Sequence[float], betas: Sequence[tuple[float, float]],
                 weight_decay: Sequence[float] | None = None, eps: float = ADAM_EPS):
        k = len(lr)
        super().__init__(params, dict(lr=list(lr), betas=list(betas), eps=eps,
                                      weight_decay=list(weight_decay) if weight_decay is not None else [0.0] * k))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        todo = [(g, p) for g in self.param_groups for p in g["params"] if p.grad is not None]
        rows = []
        for group, p in todo:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            step = float(state["step"])  # torch keeps a float step; beta ** step is the same double
            lrs, wds = group["lr"], group["weight_decay"]
            beta1, beta2 = [b[0] for b in group["betas"]], [b[1] for b in group["betas"]]
            rows += [
                [1 - lr * wd for lr, wd in zip(lrs, wds)],  # decoupled decay factor
                [1 - b for b in beta1],  # lerp weight
                beta2,
                [1 - b for b in beta2],  # addcmul value
                [(1 - b2**step) ** 0.5 for b2 in beta2],  # sqrt of bias correction 2
                [-lr / (1 - b1**step) for lr, b1 in zip(lrs, beta1)],  # -step_size
            ]
        scalars = _to_device(rows, todo[0][1].device) if todo else None  # (ROWS * params, K)
        for i, (group, p) in enumerate(todo):
            shape = (-1,) + (1,) * (p.ndim - 1)
            per_run = scalars[self.ROWS * i : self.ROWS * (i + 1)]  # (ROWS, K)
            decay, w1, b2, c2, bc2_sqrt, neg_step = (r.view(shape) for r in per_run)
            grad, state = p.grad, self.state[p]
            if any(group["weight_decay"]):
                p.mul_(decay)
            state["exp_avg"].lerp_(grad, w1)
            state["exp_avg_sq"].mul_(b2).addcmul_(grad * c2, grad)  # value*g*g as addcmul rounds it: (value*g)*g
            denom = (state["exp_avg_sq"].sqrt() / bc2_sqrt).add_(group["eps"])
            p.addcdiv_(state["exp_avg"] * neg_step, denom)  # addcdiv_(exp_avg, denom, value=-step_size) per run
        return loss


@dataclass
class PackedOptimizer:
    """The pack's optimisers with engine.optim's groups; `base_lr` is per run (already x lr_mult)."""

    optimizers: list[torch.optim.Optimizer]

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.optimizers for g in o.param_groups]

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def zero_grad(self) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)

    def apply_schedule(self, lr_factors: Sequence[float], momenta: Sequence[float], beta2s: Sequence[float]) -> None:
        """engine.optim.apply_schedule with a value per run."""
        for group in self.param_groups:
            group["lr"] = [b * f for b, f in zip(group["base_lr"], lr_factors)]
            if group["kind"] == "muon":
                group["momentum"] = list(momenta)
            else:
                group["betas"] = [(b[0], b2) for b, b2 in zip(group["betas"], beta2s)]

    def reset_run(self, k: int) -> None:
        """Zero run k's optimiser state (a frozen run's state may hold NaN)."""
        for o in self.optimizers:
            for state in o.state.values():
                for v in state.values():
                    if isinstance(v, Tensor) and v.ndim:
                        v[k].zero_()


def _split_packed_params(packed: PackedGPT) -> dict[str, list[nn.Parameter]]:
    """engine.optim.split_params on the packed model: matrix / embed / scalar."""
    matrix_ids = {id(m.weight) for m in packed.modules() if isinstance(m, PackedLinear)}
    groups: dict[str, list[nn.Parameter]] = {"matrix": [], "embed": [], "scalar": []}
    for name, p in packed.named_parameters():
        key = "matrix" if id(p) in matrix_ids else "embed" if name == "tok_emb.weight" else "scalar"
        groups[key].append(p)
    return groups


def build_packed_optimizer(packed: PackedGPT, specs: Sequence[RunSpec],
                           ns_dtype: torch.dtype = torch.float32) -> PackedOptimizer:
    """engine.optim.build_optimizer for a pack: the same groups and base LRs, one value per run."""
    g = _split_packed_params(packed)
    betas = [(s.beta1, s.beta2) for s in specs]

    def group(params, lr_field: str, kind: str, **extra) -> dict:
        base = [getattr(s, lr_field) * s.lr_mult for s in specs]  # the same doubles as the single path
        return {"params": params, "lr": list(base), "base_lr": base, "kind": kind, "betas": list(betas), **extra}

    if specs[0].optimizer == "muon":
        muon = PackedMuon([group(g["matrix"], "matrix_lr", "muon")], lr=[0.0] * len(specs),
                          momentum=[s.muon_momentum for s in specs],
                          ns_dtype=ns_dtype)
        adam = PackedAdam([group(g["embed"], "embed_lr", "adam"), group(g["scalar"], "scalar_lr", "adam")],
                          lr=[0.0] * len(specs), betas=betas)
        return PackedOptimizer([muon, adam])
    no_decay = [0.0] * len(specs)
    adamw = PackedAdam(
        [
            group(g["matrix"], "adamw_matrix_lr", "adam", weight_decay=[s.adamw_weight_decay for s in specs]),
            group(g["embed"], "embed_lr", "adam", weight_decay=no_decay),
            group(g["scalar"], "scalar_lr", "adam", weight_decay=no_decay),
        ],
        lr=[0.0] * len(specs), betas=betas,
    )
    return PackedOptimizer([adamw])

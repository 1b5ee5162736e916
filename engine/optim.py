"""Optimisers: Muon for matrices + Adam for the rest (parameter-golf), or AdamW for all.

Muon is `engine.muon.Muon`, the parameter-golf algorithm with its Newton-Schulz precision
chosen per device (see that module for why not torch.optim.Muon). DeepSpeed's own Muon is
tied to its ZeRO partitioning; our models fit one device, so we hand DeepSpeed a client
optimiser (ZeRO stage 0) and keep one code path on CPU and GPU.

DeepSpeed takes a single optimiser object, so `ChainedOptimizer` presents the two as
one: their param groups are shared (the LR schedule writes `lr` into them), `step()`
and the state dict delegate.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.model import GPT, QATLinear
from engine.muon import Muon
from engine.spec import RunSpec


class ChainedOptimizer(torch.optim.Optimizer):
    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers
        params = [p for o in optimizers for g in o.param_groups for p in g["params"]]
        super().__init__(params, defaults={})
        # Share the children's group dicts so schedule updates reach them.
        self.param_groups = [g for o in optimizers for g in o.param_groups]

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for o in self.optimizers:
            o.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"chained": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state_dict: dict) -> None:
        for o, sd in zip(self.optimizers, state_dict["chained"], strict=True):
            o.load_state_dict(sd)
        self.param_groups = [g for o in self.optimizers for g in o.param_groups]


def split_params(model: GPT) -> dict[str, list[nn.Parameter]]:
    """matrix: block weight matrices; embed: tied embedding; scalar: gains, scales, mixes, skips."""
    matrix_ids = {id(m.weight) for m in model.modules() if isinstance(m, QATLinear)}
    groups: dict[str, list[nn.Parameter]] = {"matrix": [], "embed": [], "scalar": []}
    for name, p in model.named_parameters():
        if id(p) in matrix_ids:
            groups["matrix"].append(p)
        elif name == "tok_emb.weight":
            groups["embed"].append(p)
        else:
            groups["scalar"].append(p)
    return groups


def build_optimizer(model: GPT, spec: RunSpec, ns_dtype: torch.dtype = torch.float32) -> ChainedOptimizer:
    """Every group carries `base_lr` (already times `lr_mult`); the loop sets `lr` from it.

    `ns_dtype`: Muon's Newton-Schulz precision (engine.precision.Precision.ns_dtype).
    """
    g = split_params(model)
    betas = (spec.beta1, spec.beta2)

    def adam_group(params, lr, **extra):
        return {"params": params, "lr": lr * spec.lr_mult, "base_lr": lr * spec.lr_mult, **extra}

    if spec.optimizer == "muon":
        muon = Muon(
            [adam_group(g["matrix"], spec.matrix_lr, kind="muon")],
            lr=spec.matrix_lr * spec.lr_mult,
            momentum=spec.muon_momentum,
            ns_dtype=ns_dtype,
        )
        adam = torch.optim.Adam(
            [adam_group(g["embed"], spec.embed_lr, kind="adam"), adam_group(g["scalar"], spec.scalar_lr, kind="adam")],
            betas=betas,
            eps=1e-8,
        )
        return ChainedOptimizer([muon, adam])
    adamw = torch.optim.AdamW(
        [
            adam_group(g["matrix"], spec.adamw_matrix_lr, kind="adam", weight_decay=spec.adamw_weight_decay),
            adam_group(g["embed"], spec.embed_lr, kind="adam", weight_decay=0.0),
            adam_group(g["scalar"], spec.scalar_lr, kind="adam", weight_decay=0.0),
        ],
        betas=betas,
        eps=1e-8,
    )
    return ChainedOptimizer([adamw])


def apply_schedule(opt: torch.optim.Optimizer, lr_factor: float, momentum: float, beta2: float) -> None:
    for group in opt.param_groups:
        group["lr"] = group["base_lr"] * lr_factor
        if group.get("kind") == "muon":
            group["momentum"] = momentum
        else:
            group["betas"] = (group["betas"][0], beta2)

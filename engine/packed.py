"""Seed packing: K runs of the same shape trained at once, as one stacked model in one process.

Owns: `PackedGPT` (engine.model.GPT with every parameter stacked along a leading run axis K,
its matmuls as `torch.bmm`, attention with K folded into the batch), `PackedMuon` and
`PackedAdam` (the single-run optimisers with a learning rate, momentum and betas per run),
`check_packable`, and `run_packed` / `train_packed`, the loop of `engine.train.run` applied
to K runs at once.

Why: a tiny model leaves the device idle. A CPU step of a 20k-parameter model is mostly
per-op dispatch overhead and a GPU step of a 3M model mostly kernel launches; K runs that
differ only in per-run scalars (seed, bits, warmdown, learning rates, betas, QAT start) can
share every op, so one packed step costs little more than one single step.

Equivalence: every per-run number is computed with the arithmetic the single-run path uses,
op for op (the optimiser updates mirror `engine.muon.Muon` and torch's single-tensor Adam;
per-run scalars become (K, 1, ...) float32 tensors, rounded from the same Python doubles).
On CPU a slice of a bmm equals the mm of that slice bit for bit, so a packed run reproduces
`engine.train.run` exactly there (tests/engine/test_packed.py checks it end to end). On CUDA
bf16 kernels for batched and single matmuls differ, so packed results agree only closely.

Relation to the single-run path: `engine.train.run` drives one GPT through DeepSpeed with
ZeRO stage 0, one process, fp32 gradients and no clipping, which reduces to
`loss.backward(); optimizer.step(); zero_grad()`. The packed loop runs exactly that without
DeepSpeed: its engine wraps one model with one scalar loss, and ZeRO partitioning buys
nothing for models that fit one device. Packs have no checkpoint/resume: they are for
short runs, and a killed pack simply reruns.

A run whose loss goes non-finite is frozen (weights and optimiser state zeroed, learning
rates 0, so no NaN reaches the shared kernels) and recorded as diverged at that step; the
others go on. Its slice is still computed until the pack ends: repacking is not worth it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.data import load_corpus, batch_at
from engine.distributed import pick_device
from engine.evaluate import autocast_for, evaluate, grid_probe, round_trip
from engine.ladder import ModelConfig, count_params, get_config
from engine.model import GPT, Rotary, apply_rotary
from engine.muon import NS_COEFFS
from engine.quant import _EPS as QUANT_EPS, qmax
from engine.schedule import in_warmdown, lr_factor, muon_momentum
from engine.spec import RunSpec
from engine.train import COLLAPSE_MARGIN_NATS, CURVE_POINTS, Trained, _probe_steps, _provenance, default_data_dir

log = logging.getLogger(__name__)

# Fields that fix the shape of a pack's tensors or its shared loop; every other RunSpec
# field is a per-run scalar and may differ inside a pack.
PACK_SHARED_FIELDS = ("size", "steps", "batch_tokens", "seq_len", "data", "tokenizer", "optimizer")
ADAM_EPS = 1e-8  # as engine.optim.build_optimizer


def check_packable(specs: Sequence[RunSpec]) -> None:
    """Raise ValueError naming the field unless the specs can share one pack."""
    if not specs:
        raise ValueError("a pack needs at least one RunSpec")
    for name in PACK_SHARED_FIELDS:
        values = {getattr(s, name) for s in specs}
        if len(values) > 1:
            raise ValueError(f"specs differ in {name!r} ({sorted(map(str, values))}); a pack shares {PACK_SHARED_FIELDS}")


def _per_run(values: Sequence[float], like: Tensor) -> Tensor:
    """(K,) Python doubles -> float tensor shaped (K, 1, ...) to broadcast over `like` (K, ...)."""
    t = torch.tensor(values, dtype=like.dtype, device=like.device)  # rounds as a kernel's scalar would
    return t.view(-1, *([1] * (like.ndim - 1)))


# --- model ------------------------------------------------------------------------------


def packed_fake_quantize(w: Tensor, qmax_k: Tensor, on_k: Tensor) -> Tensor:
    """engine.quant.fake_quantize per run: w (K, rows, cols), qmax_k (K, 1, 1) float, on_k (K, 1, 1) bool.

    Runs with `on_k` False come back unchanged (w + 0); the same ops as the single-run
    quantiser otherwise, so a quantised slice is bit-identical to fake_quantize(w[k], bits).
    """
    s = w.detach().abs().amax(dim=-1, keepdim=True).clamp_min(QUANT_EPS) / qmax_k  # (K, rows, 1)
    q = torch.clamp(torch.round(w / s), -qmax_k, qmax_k) * s  # (K, rows, cols)
    return w + torch.where(on_k, q - w, 0.0).detach()


class PackedLinear(nn.Module):
    """K bias-free linear layers; weight (K, out, in) like K nn.Linear weights stacked."""

    def __init__(self, k: int, d_in: int, d_out: int, zero_init: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, d_out, d_in))
        bound = 1.0 / math.sqrt(d_in)  # nn.Linear's default init: kaiming_uniform(a=sqrt(5))
        nn.init.zeros_(self.weight) if zero_init else nn.init.uniform_(self.weight, -bound, bound)
        self.quant: tuple[Tensor, Tensor] | None = None  # (qmax_k, on_k) while any run quantises

    def forward(self, x: Tensor) -> Tensor:  # x (K, N, in)
        w = self.weight if self.quant is None else packed_fake_quantize(self.weight, *self.quant)
        return torch.bmm(x, w.to(x.dtype).mT)  # (K, N, out)


class PackedAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, k: int):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        kv_dim = cfg.n_kv_heads * cfg.head_dim
        self.c_q = PackedLinear(k, cfg.dim, cfg.dim)
        self.c_k = PackedLinear(k, cfg.dim, kv_dim)
        self.c_v = PackedLinear(k, cfg.dim, kv_dim)
        self.proj = PackedLinear(k, cfg.dim, cfg.dim, zero_init=True)
        self.q_gain = nn.Parameter(torch.full((k, cfg.n_heads), cfg.qk_gain_init))
        self.rotary = Rotary(cfg.head_dim, cfg.rope_base)

    def forward(self, x: Tensor) -> Tensor:
        K, B, T, C = x.shape
        nh, nkv, hs = self.n_heads, self.n_kv_heads, self.head_dim
        flat = x.reshape(K, B * T, C)  # (K, B*T, C)
        # Fold K into the batch: attention never mixes sequences, so runs stay independent.
        q = self.c_q(flat).view(K * B, T, nh, hs).transpose(1, 2)  # (K*B, nh, T, hs)
        k = self.c_k(flat).view(K * B, T, nkv, hs).transpose(1, 2)  # (K*B, nkv, T, hs)
        v = self.c_v(flat).view(K * B, T, nkv, hs).transpose(1, 2)  # (K*B, nkv, T, hs)
        q, k = F.rms_norm(q, (hs,)), F.rms_norm(k, (hs,))
        cos, sin = self.rotary(T, x.device, q.dtype)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        q = (q.view(K, B, nh, T, hs) * self.q_gain.to(q.dtype)[:, None, :, None, None]).view(K * B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=nkv != nh)  # (K*B, nh, T, hs)
        return self.proj(y.transpose(1, 2).reshape(K, B * T, C)).view(K, B, T, C)


class PackedMLP(nn.Module):
    def __init__(self, cfg: ModelConfig, k: int):
        super().__init__()
        self.fc = PackedLinear(k, cfg.dim, cfg.mlp_mult * cfg.dim)
        self.proj = PackedLinear(k, cfg.mlp_mult * cfg.dim, cfg.dim, zero_init=True)

    def forward(self, x: Tensor) -> Tensor:
        K, B, T, C = x.shape
        h = torch.relu(self.fc(x.reshape(K, B * T, C))).square()  # (K, B*T, mlp*C), relu^2
        return self.proj(h).view(K, B, T, C)


def _vec(p: Tensor) -> Tensor:
    """A per-run channel vector (K, C) broadcast over activations (K, B, T, C)."""
    return p[:, None, None, :]


class PackedBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, k: int):
        super().__init__()
        self.attn = PackedAttention(cfg, k)
        self.mlp = PackedMLP(cfg, k)
        self.attn_scale = nn.Parameter(torch.ones(k, cfg.dim))
        self.mlp_scale = nn.Parameter(torch.ones(k, cfg.dim))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(k, cfg.dim), torch.zeros(k, cfg.dim)), dim=1))  # (K, 2, C)

    def forward(self, x: Tensor, x0: Tensor) -> Tensor:  # x, x0 (K, B, T, C)
        mix = self.resid_mix.to(x.dtype)
        x = _vec(mix[:, 0]) * x + _vec(mix[:, 1]) * x0
        x = x + _vec(self.attn_scale.to(x.dtype)) * self.attn(F.rms_norm(x, (x.size(-1),)))
        return x + _vec(self.mlp_scale.to(x.dtype)) * self.mlp(F.rms_norm(x, (x.size(-1),)))


class PackedEmbedding(nn.Module):
    """Holds the stacked tied embedding as `weight` so parameter names match GPT's."""

    def __init__(self, k: int, vocab_size: int, dim: int, std: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, vocab_size, dim))  # (K, V, C)
        nn.init.normal_(self.weight, std=std)


class PackedGPT(nn.Module):
    """K engine.model.GPTs of one config; parameter names are GPT's, shapes get a leading K.

    `PackedGPT(cfg, vocab, k)` initialises with GPT's distributions; for the exact weights of
    given runs build the GPTs and use `from_models`.
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int, k: int, quantize_embeddings: bool | Sequence[bool] = False):
        super().__init__()
        self.cfg, self.vocab_size, self.k = cfg, vocab_size, k
        self.quantize_embeddings = (
            [bool(quantize_embeddings)] * k if isinstance(quantize_embeddings, bool) else list(quantize_embeddings)
        )
        if len(self.quantize_embeddings) != k:
            raise ValueError(f"quantize_embeddings has {len(self.quantize_embeddings)} flags for {k} runs")
        self.tok_emb = PackedEmbedding(k, vocab_size, cfg.dim, cfg.tied_embed_init_std)
        self.n_enc = cfg.n_layers // 2
        self.n_dec = cfg.n_layers - self.n_enc
        self.skip_weights = nn.Parameter(torch.ones(k, min(self.n_enc, self.n_dec), cfg.dim))  # (K, n_skip, C)
        self.blocks = nn.ModuleList(PackedBlock(cfg, k) for _ in range(cfg.n_layers))
        self.qat_bits: list[int | None] = [None] * k
        self.emb_quant: tuple[Tensor, Tensor] | None = None

    # --- conversion ---------------------------------------------------------------------
    @classmethod
    def from_models(cls, models: Sequence[GPT]) -> "PackedGPT":
        """Stack the weights (and QAT state) of same-config GPTs, exactly."""
        first = models[0]
        vocab = first.tok_emb.weight.size(0)
        if any(m.cfg != first.cfg or m.tok_emb.weight.size(0) != vocab for m in models):
            raise ValueError("from_models needs GPTs of one config and vocabulary")
        packed = cls(first.cfg, vocab, len(models), [m.quantize_embeddings for m in models])
        packed.to(first.tok_emb.weight.device)
        states = [m.state_dict() for m in models]
        with torch.no_grad():
            for name, p in packed.named_parameters():
                p.copy_(torch.stack([s[name] for s in states]))
        packed.set_qat([m.qat_bits for m in models])
        return packed

    def model(self, k: int) -> GPT:
        """Run k as an engine.model.GPT with a copy of its weights and its QAT state."""
        with torch.random.fork_rng(devices=[]):  # GPT's init draws random numbers we overwrite
            m = GPT(self.cfg, self.vocab_size, quantize_embeddings=self.quantize_embeddings[k])
        m.to(self.tok_emb.weight.device)
        m.load_state_dict({name: p.detach()[k].clone() for name, p in self.named_parameters()})
        m.set_qat(self.qat_bits[k])
        return m

    def to_models(self) -> list[GPT]:
        return [self.model(k) for k in range(self.k)]

    # --- quantisation -------------------------------------------------------------------
    def set_qat(self, bits: Sequence[int | None]) -> None:
        """Per-run fake quantisation: bits[k] in 2..8 on, None or 16 off (as GPT.set_qat)."""
        if len(bits) != self.k:
            raise ValueError(f"set_qat got {len(bits)} bit-widths for {self.k} runs")
        self.qat_bits = [None if b in (None, 16) else int(b) for b in bits]
        dev = self.tok_emb.weight.device
        on = [b is not None for b in self.qat_bits]
        # Off runs get qmax 1 so their (discarded) scales stay finite.
        qmax_k = torch.tensor([float(qmax(b)) if b else 1.0 for b in self.qat_bits], device=dev).view(-1, 1, 1)
        on_k = torch.tensor(on, device=dev).view(-1, 1, 1)
        quant = (qmax_k, on_k) if any(on) else None
        for m in self.modules():
            if isinstance(m, PackedLinear):
                m.quant = quant
        emb_on = [o and q for o, q in zip(on, self.quantize_embeddings)]
        self.emb_quant = (qmax_k, torch.tensor(emb_on, device=dev).view(-1, 1, 1)) if any(emb_on) else None

    def quantized_weight_names(self) -> list[str]:
        names = [f"{n}.weight" for n, m in self.named_modules() if isinstance(m, PackedLinear)]
        return names + (["tok_emb.weight"] if any(self.quantize_embeddings) else [])

    # --- forward ------------------------------------------------------------------------
    def forward(self, idx: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
        """idx, targets (K, B, T) -> per-run loss (K,), the mean (or sum) over its B*T tokens."""
        K, B, T = idx.shape
        V, C = self.vocab_size, self.cfg.dim
        emb = self.tok_emb.weight  # (K, V, C)
        if self.emb_quant is not None:
            emb = packed_fake_quantize(emb, *self.emb_quant)
        offsets = torch.arange(K, device=idx.device).view(K, 1, 1) * V  # run k's rows of the flat table
        x = F.rms_norm(F.embedding(idx + offsets, emb.reshape(K * V, C)), (C,))  # (K, B, T, C)
        x0, skips = x, []
        for block in self.blocks[: self.n_enc]:
            x = block(x, x0)
            skips.append(x)
        for i, block in enumerate(self.blocks[self.n_enc :]):
            if skips:  # U-Net: the last encoder output feeds the first decoder block
                x = x + _vec(self.skip_weights[:, i].to(x.dtype)) * skips.pop()
            x = block(x, x0)
        x = F.rms_norm(x, (C,))
        logits = torch.bmm(x.reshape(K, B * T, C), emb.to(x.dtype).mT)  # (K, B*T, V), tied head
        logits = self.cfg.logit_softcap * torch.tanh(logits / self.cfg.logit_softcap)
        # One cross-entropy per run: its mean is then reduced exactly as GPT's is (a mean over
        # a (K, B*T) loss matrix sums in another order and differs in the last bit).
        flat_targets = targets.reshape(K, B * T)
        return torch.stack(
            [F.cross_entropy(logits[k].float(), flat_targets[k], reduction=reduction) for k in range(K)]
        )  # (K,)


# --- optimisers -------------------------------------------------------------------------


def batched_newton_schulz(g: Tensor, steps: int = 5, eps: float = 1e-7, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """engine.muon.newton_schulz on each matrix of g (K, rows, cols), as batched matmuls."""
    a, b, c = NS_COEFFS
    x = g.to(dtype)
    x = x / (torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True) + eps)  # (K, rows, cols)
    transposed = g.size(1) > g.size(2)
    if transposed:
        x = x.mT
    for _ in range(steps):
        A = torch.bmm(x, x.mT)  # (K, r, r), r = min(rows, cols)
        B = b * A + torch.bmm(c * A, A)  # `c * A @ A` in the single version binds as (c*A) @ A
        x = a * x + torch.bmm(B, x)
    return (x.mT if transposed else x).to(g.dtype)


class PackedMuon(torch.optim.Optimizer):
    """engine.muon.Muon over stacked matrices (K, rows, cols); `lr` and `momentum` are K-lists."""

    def __init__(self, params, lr: Sequence[float], momentum: Sequence[float], nesterov: bool = True,
                 ns_steps: int = 5, ns_dtype: torch.dtype = torch.bfloat16):
        super().__init__(params, dict(lr=list(lr), momentum=list(momentum), nesterov=nesterov, ns_steps=ns_steps))
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.ndim != 3:
                    raise ValueError(f"PackedMuon updates stacked matrices (K, rows, cols); got shape {tuple(p.shape)}")
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]  # (K, rows, cols)
                mom = _per_run(group["momentum"], p)  # (K, 1, 1)
                buf.mul_(mom).add_(p.grad)
                # grad.add(buf, alpha=m) computes grad + m*buf; addcmul gives the same rounding per run.
                g = torch.addcmul(p.grad, buf, mom) if group["nesterov"] else buf
                update = batched_newton_schulz(g, group["ns_steps"], dtype=self.ns_dtype)
                scale = max(1.0, p.size(1) / p.size(2)) ** 0.5
                p.addcmul_(update, _per_run([-lr * scale for lr in group["lr"]], p))
        return loss


class PackedAdam(torch.optim.Optimizer):
    """torch.optim.Adam / AdamW (single-tensor, CPU arithmetic) with per-run lr, betas, weight decay.

    Group `lr`, `betas` and `weight_decay` are K-lists; weight decay is decoupled (AdamW)
    as in engine.optim's AdamW arm; a 0 entry leaves that run's weights undecayed.
    """

    def __init__(self, params, lr: Sequence[float], betas: Sequence[tuple[float, float]],
                 weight_decay: Sequence[float] | None = None, eps: float = ADAM_EPS):
        k = len(lr)
        super().__init__(params, dict(lr=list(lr), betas=list(betas), eps=eps,
                                      weight_decay=list(weight_decay) if weight_decay is not None else [0.0] * k))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lrs, betas, wds = group["lr"], group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad, state = p.grad, self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                step = float(state["step"])  # torch keeps a float step; beta ** step is the same double
                if any(wds):
                    p.mul_(_per_run([1 - lr * wd for lr, wd in zip(lrs, wds)], p))
                beta1 = [b[0] for b in betas]
                beta2 = [b[1] for b in betas]
                state["exp_avg"].lerp_(grad, _per_run([1 - b for b in beta1], p))
                # value * g * g as addcmul computes it: (value * g) * g
                state["exp_avg_sq"].mul_(_per_run(beta2, p)).addcmul_(grad * _per_run([1 - b for b in beta2], p), grad)
                step_size = [lr / (1 - b1**step) for lr, b1 in zip(lrs, beta1)]
                bc2_sqrt = [(1 - b2**step) ** 0.5 for b2 in beta2]
                denom = (state["exp_avg_sq"].sqrt() / _per_run(bc2_sqrt, p)).add_(group["eps"])
                p.addcdiv_(state["exp_avg"] * _per_run([-s for s in step_size], p), denom)
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


def build_packed_optimizer(packed: PackedGPT, specs: Sequence[RunSpec], ns_on_cuda: bool = False) -> PackedOptimizer:
    """engine.optim.build_optimizer for a pack: the same groups and base LRs, one value per run."""
    g = _split_packed_params(packed)
    betas = [(s.beta1, s.beta2) for s in specs]

    def group(params, lr_field: str, kind: str, **extra) -> dict:
        base = [getattr(s, lr_field) * s.lr_mult for s in specs]  # the same doubles as the single path
        return {"params": params, "lr": list(base), "base_lr": base, "kind": kind, "betas": list(betas), **extra}

    if specs[0].optimizer == "muon":
        muon = PackedMuon([group(g["matrix"], "matrix_lr", "muon")], lr=[0.0] * len(specs),
                          momentum=[s.muon_momentum for s in specs],
                          ns_dtype=torch.bfloat16 if ns_on_cuda else torch.float32)
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


# --- training loop ----------------------------------------------------------------------


@dataclass
class _RunLog:
    """What the single-run loop keeps in locals, kept per run."""

    spec: RunSpec
    probe_steps: dict[int, str]
    curve_every: int
    probes: list[dict] = field(default_factory=list)
    curve: list[tuple[int, float]] = field(default_factory=list)
    qat_on: bool = False
    diverged_step: int | None = None

    def flush(self, window: Tensor, first: int) -> None:
        """engine.train.run's flush: move losses (n,) of steps first.. to the curve; note divergence."""
        for i in range(len(window)):
            if (first + i) % self.curve_every == 0 or first + i == self.spec.steps - 1:
                self.curve.append((first + i, float(window[i])))
        bad = (~torch.isfinite(window)).nonzero()
        self.diverged_step = first + int(bad[0]) if len(bad) else None

    def schedule(self, step: int) -> tuple[float, float, float]:
        """(lr factor, Muon momentum, Adam beta2) at `step`, as engine.train.run sets them."""
        s = self.spec
        cooling = in_warmdown(step, s.steps, s.wd, s.schedule)
        return (
            lr_factor(step, s.steps, warmup_steps=s.warmup_steps, wd=s.wd, shape=s.wd_shape, schedule=s.schedule),
            muon_momentum(step, s.muon_momentum_warmup_start, s.muon_momentum, s.muon_momentum_warmup_steps),
            s.cooldown_beta2 if (cooling and s.cooldown_beta2 is not None) else s.beta2,
        )


def train_packed(specs: Sequence[RunSpec], device: str | None = None, data_dir: Path | None = None,
                 **kwargs) -> list[dict]:
    """Train the specs as one pack; one result record per spec, in order (engine.train.train's keys + "packed")."""
    return [t.result for t in run_packed(specs, device=device, data_dir=data_dir, **kwargs)]


def run_packed(
    specs: Sequence[RunSpec],
    *,
    device: str | None = None,
    data_dir: Path | None = None,
    progress: bool = False,
    compile_model: bool | None = None,
) -> list[Trained]:
    """engine.train.run for K packable specs at once; per run its record, its model and the corpus."""
    t_start = time.time()
    check_packable(specs)
    specs = list(specs)
    K, shared = len(specs), specs[0]
    dev = pick_device(device)
    corpus = load_corpus(shared.data, shared.tokenizer, data_dir or default_data_dir())
    cfg = get_config(shared.size)
    models = []
    for s in specs:  # each run starts from exactly the weights engine.train.run would create
        torch.manual_seed(s.seed)
        models.append(GPT(cfg, corpus.vocab_size, quantize_embeddings=s.quantize_embeddings).to(dev))
    n_params = count_params(cfg, corpus.vocab_size)
    packed = PackedGPT.from_models(models)
    del models
    optimizer = build_packed_optimizer(packed, specs, ns_on_cuda=dev.type == "cuda")
    forward = packed
    if compile_model if compile_model is not None else dev.type == "cuda":
        forward = torch.compile(packed)

    runs = [_RunLog(s, _probe_steps(s), max(1, s.steps // CURVE_POINTS)) for s in specs]
    check_every = 1 if dev.type == "cpu" else 25  # a host sync per step is cheap on CPU only
    pending: list[Tensor] = []
    t_train = time.time()
    steps = range(shared.steps)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc=f"pack of {K} {shared.size}", unit="step", leave=False)
    for step in steps:
        live = [r.diverged_step is None for r in runs]
        if not any(live):
            break
        for k, r in enumerate(runs):
            if live[k] and step in r.probe_steps:
                r.probes.append({"step": step, "label": r.probe_steps[step], **grid_probe(packed.model(k), r.spec.bits)})
        switch = [live[k] and not r.qat_on and step >= r.spec.qat_start_step for k, r in enumerate(runs)]
        if any(switch):
            for k, r in enumerate(runs):
                r.qat_on = r.qat_on or switch[k]
            packed.set_qat([r.spec.bits if r.qat_on else None for r in runs])
        factors, momenta, beta2s = zip(*(r.schedule(step) for r in runs))
        factors = [f if live[k] else 0.0 for k, f in enumerate(factors)]  # a frozen run takes no updates
        optimizer.apply_schedule(factors, momenta, beta2s)
        batches = [batch_at(corpus.train, step, s.batch_seqs, s.seq_len, s.seed) for s in specs]
        x = torch.stack([b[0] for b in batches]).to(dev, non_blocking=True)  # (K, B, T)
        y = torch.stack([b[1] for b in batches]).to(dev, non_blocking=True)  # (K, B, T)
        with autocast_for(dev):
            losses = forward(x, y)  # (K,)
        losses.sum().backward()  # runs share no parameters: d(sum)/d(run k) = d(loss_k)/d(run k)
        optimizer.step()
        optimizer.zero_grad()
        pending.append(losses.detach())
        done = step + 1
        if done % check_every == 0 or done == shared.steps:
            window = torch.stack(pending).float().cpu()  # (n, K)
            first = done - len(pending)
            pending.clear()
            for k, r in enumerate(runs):
                if live[k]:
                    r.flush(window[:, k], first)
                    if r.diverged_step is not None:
                        log.warning("run %s diverged at step %d (in a pack of %d)", r.spec.short_id, r.diverged_step, K)
                        _freeze(packed, optimizer, k)
    train_time = time.time() - t_train

    trained = []
    for k, r in enumerate(runs):
        model = packed.model(k)
        result = _record(r, model, corpus, dev, n_params, t_start, train_time, K)
        trained.append(Trained(result, model, corpus))
    return trained


@torch.no_grad()
def _freeze(packed: PackedGPT, optimizer: PackedOptimizer, k: int) -> None:
    """Zero run k's weights and optimiser state: its slice stays finite and takes no updates."""
    for p in packed.parameters():
        p[k].zero_()
    optimizer.reset_run(k)


def _record(r: _RunLog, model: GPT, corpus, dev: torch.device, n_params: int, t_start: float,
            train_time: float, k: int) -> dict:
    """engine.train.run's result record for one run of the pack, plus "packed": K."""
    spec = r.spec
    base = {**_provenance(spec, dev, n_params, t_start), "packed": k}
    if r.diverged_step is not None:
        return {**base, "status": "diverged", "diverged_step": r.diverged_step, "diverged_reason": "non-finite loss",
                "loss_curve": r.curve, "tokens_seen": (r.diverged_step + 1) * spec.batch_tokens,
                "train_time_s": train_time, "wall_time_s": time.time() - t_start}
    probes = list(r.probes)
    if spec.steps in r.probe_steps:
        probes.append({"step": spec.steps, "label": r.probe_steps[spec.steps], **grid_probe(model, spec.bits)})
    trained = evaluate(model, corpus, spec.seq_len, spec.val_tokens, dev)
    rt_own = evaluate(round_trip(model, spec.bits, spec.clip_percentile).to(dev), corpus, spec.seq_len, spec.val_tokens, dev)
    rt_int8 = evaluate(round_trip(model, 8, spec.clip_percentile).to(dev), corpus, spec.seq_len, spec.val_tokens, dev)
    finite = all(math.isfinite(v) for v in (trained.bpb, rt_own.bpb, rt_int8.bpb))
    collapsed = finite and trained.loss >= math.log(corpus.vocab_size) - COLLAPSE_MARGIN_NATS
    why = None if finite and not collapsed else ("non-finite validation loss" if not finite else "no better than uniform")
    pre = next((p for p in probes if p["label"] == "pre_warmdown"), None)
    return {
        **base,
        "status": "ok" if why is None else "diverged",
        "diverged_step": None if why is None else spec.steps,
        "diverged_reason": why,
        "final_train_loss": r.curve[-1][1] if r.curve else float("nan"),
        "val_loss": trained.loss,
        "val_bpb": trained.bpb,
        "val_loss_q": rt_own.loss,
        "val_bpb_q": rt_own.bpb,
        "val_bpb_int8": rt_int8.bpb,
        "quant_penalty": rt_own.bpb - trained.bpb,
        "int8_penalty": rt_int8.bpb - trained.bpb,
        "val_tokens_evaluated": trained.tokens,
        "val_bytes_evaluated": trained.bytes,
        "grid_dist_int6_prewd": pre["int6_mean"] if pre else None,
        "grid_dist_own_prewd": pre["own_mean"] if pre else None,
        "grid_probes": probes,
        "loss_curve": r.curve,
        "tokens_seen": spec.tokens,
        "resumed_from_step": 0,
        "train_time_s": train_time,  # of the whole pack: its K runs share this time
        "tokens_per_s": spec.steps * spec.batch_tokens / max(train_time, 1e-9),  # this run's; the pack did K times as many
        "wall_time_s": time.time() - t_start,
    }

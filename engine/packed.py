"""Seed packing: K runs of the same shape trained at once, as one stacked model in one process.

Owns: `PackedGPT` (engine.model.GPT with every parameter stacked along a leading run axis K,
its matmuls as `torch.bmm`, attention with K folded into the batch), `PackedMuon` and
`PackedAdam` (the single-run optimisers with a learning rate, momentum and betas per run),
`check_packable`, `PackedSession` (the packed training step) and `run_packed` /
`train_packed`, the loop of `engine.train.run` applied to K runs at once.

Why: a small model leaves the device idle. A GPU step of a few-million-parameter model is
mostly kernel launches, and a CPU step of a tiny one spends much of its time on per-op
overhead; K runs that differ only in per-run scalars (seed, bits, warmdown, learning rates,
betas, QAT start) can share every op. On the 2-core development CPU (engine/bench_packed.py)
a pack of 4 trains 1.2x (1 thread) to 1.6-1.8x (2 threads) faster than 4 runs one after another
at 1,024 tokens per step, where the work is mostly arithmetic, and 2.7x at 128 tokens.

Equivalence: every per-run number is computed with the arithmetic the single-run path uses,
op for op (the optimiser updates mirror `engine.muon.Muon` and torch's single-tensor Adam;
per-run scalars become (K, 1, ...) float32 tensors, rounded from the same Python doubles).
On CPU (checked on the AVX2 development machine, torch 2.13) at the t20k-t100k shapes a slice
of a bmm equals the mm of that slice bit for bit, as does a batch of attention, so a packed run
reproduces `engine.train.run`'s record exactly there (tests/engine/test_packed.py checks it end
to end). At t10k (head dim 10) BLAS picks other kernels for the batched matmuls: the last bits
differ and QAT's rounding amplifies that over training (up to 0.03 bpb at INT4 after 120
steps, the same as changing machine or thread count would); records say `"packed": K`.
On CUDA (bf16 autocast, other kernels for batched and single matmuls; not yet run there)
expect close, not identical, results.

Relation to the single-run path: `engine.train.run` drives one GPT through DeepSpeed with
ZeRO stage 0, one process, fp32 gradients and no clipping, which reduces to
`loss.backward(); optimizer.step(); zero_grad()`. The packed loop runs exactly that without
DeepSpeed: its engine wraps one model with one scalar loss, and ZeRO partitioning buys
nothing for models that fit one device. Packs have no checkpoint/resume: they are for
short runs, and a killed pack simply reruns.

A run whose loss goes non-finite is frozen (weights and optimiser state zeroed, learning
rates 0, so no NaN reaches the shared kernels) and recorded as diverged at that step, with
the same record as engine.train.run's; the others go on. Its slice is still computed until
the pack ends (repacking is not worth it), and its returned model holds the zeroed weights.
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

from engine.data import Corpus, batch_at, load_corpus
from engine.distributed import pick_device
from engine.evaluate import autocast_for, grid_probe
from engine.faults import fault_point
from engine.ladder import ModelConfig, count_params, get_config
from engine.model import GPT, Rotary, apply_rotary
from engine.muon import NS_COEFFS
from engine.quant import _EPS as QUANT_EPS, qmax
from engine.schedule import in_warmdown, lr_factor, muon_momentum
from engine.spec import RunSpec
from engine.train import CURVE_POINTS, Trained, _probe_steps, _provenance, default_data_dir, result_record

log = logging.getLogger(__name__)

# Fields that fix the shape of a pack's tensors or its shared loop; every other RunSpec
# field is a per-run scalar and may differ inside a pack.
PACK_SHARED_FIELDS = ("size", "steps", "batch_tokens", "seq_len", "data", "tokenizer", "optimizer")
ADAM_EPS = 1e-8  # as engine.optim.build_optimizer
NS_EPS = 1e-7  # engine.muon.newton_schulz's default, which engine.muon.Muon uses


def pack_key(spec: RunSpec) -> tuple:
    """Specs with equal keys can train in one pack."""
    return tuple(getattr(spec, name) for name in PACK_SHARED_FIELDS)


def check_packable(specs: Sequence[RunSpec]) -> None:
    """Raise ValueError naming the field unless the specs can share one pack."""
    if not specs:
        raise ValueError("a pack needs at least one RunSpec")
    for name in PACK_SHARED_FIELDS:
        values = {getattr(s, name) for s in specs}
        if len(values) > 1:
            raise ValueError(
                f"specs differ in {name!r} ({sorted(map(str, values))}); a pack shares {PACK_SHARED_FIELDS}"
            )


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


# --- model ------------------------------------------------------------------------------


def packed_fake_quantize(w: Tensor, qmax_k: Tensor, on_k: Tensor) -> Tensor:
    """engine.quant.fake_quantize per run: w (K, rows, cols), qmax_k (K, 1, 1) float, on_k (K, 1, 1).

    Runs with `on_k` False come back unchanged (w + 0); the same ops as the single-run
    quantiser otherwise, so a quantised slice is bit-identical to fake_quantize(w[k], bits).
    """
    s = w.detach().abs().amax(dim=-1, keepdim=True).clamp_min(QUANT_EPS) / qmax_k  # (K, rows, 1)
    q = torch.clamp(torch.round(w / s), -qmax_k, qmax_k) * s  # (K, rows, cols)
    return w + torch.where(on_k, q - w, 0.0).detach()


class _PerRunQuant(nn.Module):
    """Per-run fake-quantisation switches of one stacked weight: buffers, so they move with it."""

    def __init__(self, k: int):
        super().__init__()
        self.register_buffer("qmax_k", torch.ones(k, 1, 1), persistent=False)  # (K, 1, 1)
        self.register_buffer("on_k", torch.zeros(k, 1, 1, dtype=torch.bool), persistent=False)  # (K, 1, 1)
        self.any_on = False  # skips the quantiser entirely while no run quantises

    def set_quant(self, qmax_k: Sequence[float], on_k: Sequence[bool]) -> None:
        self.qmax_k.copy_(torch.tensor(qmax_k).view(-1, 1, 1))
        self.on_k.copy_(torch.tensor(on_k).view(-1, 1, 1))
        self.any_on = any(on_k)

    def quantize(self, w: Tensor) -> Tensor:
        return packed_fake_quantize(w, self.qmax_k, self.on_k) if self.any_on else w


class PackedLinear(_PerRunQuant):
    """K bias-free linear layers; weight (K, out, in) like K nn.Linear weights stacked."""

    def __init__(self, k: int, d_in: int, d_out: int, zero_init: bool = False):
        super().__init__(k)
        self.weight = nn.Parameter(torch.empty(k, d_out, d_in))
        bound = 1.0 / math.sqrt(d_in)  # nn.Linear's default init: kaiming_uniform(a=sqrt(5))
        nn.init.zeros_(self.weight) if zero_init else nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:  # x (K, N, in)
        return torch.bmm(x, self.quantize(self.weight).to(x.dtype).mT)  # (K, N, out)


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
        mix = torch.stack((torch.ones(k, cfg.dim), torch.zeros(k, cfg.dim)), dim=1)  # (K, 2, C)
        self.resid_mix = nn.Parameter(mix)

    def forward(self, x: Tensor, x0: Tensor) -> Tensor:  # x, x0 (K, B, T, C)
        mix = self.resid_mix.to(x.dtype)
        x = _vec(mix[:, 0]) * x + _vec(mix[:, 1]) * x0
        x = x + _vec(self.attn_scale.to(x.dtype)) * self.attn(F.rms_norm(x, (x.size(-1),)))
        return x + _vec(self.mlp_scale.to(x.dtype)) * self.mlp(F.rms_norm(x, (x.size(-1),)))


class PackedEmbedding(_PerRunQuant):
    """Holds the stacked tied embedding as `weight` so parameter names match GPT's."""

    def __init__(self, k: int, vocab_size: int, dim: int, std: float):
        super().__init__(k)
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

    # --- conversion ---------------------------------------------------------------------
    @classmethod
    def from_models(cls, models: Sequence[GPT]) -> "PackedGPT":
        """Stack the weights (and QAT state) of same-config GPTs, exactly."""
        first = models[0]
        vocab = first.tok_emb.weight.size(0)
        if any(m.cfg != first.cfg or m.tok_emb.weight.size(0) != vocab for m in models):
            raise ValueError("from_models needs GPTs of one config and vocabulary")
        with torch.random.fork_rng(devices=[]):  # the init is overwritten: leave the caller's RNG alone
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
        on = [b is not None for b in self.qat_bits]
        qmax_k = [float(qmax(b)) if b else 1.0 for b in self.qat_bits]  # 1 for off runs: finite, discarded scales
        for m in self.modules():
            if isinstance(m, PackedLinear):
                m.set_quant(qmax_k, on)
        self.tok_emb.set_quant(qmax_k, [o and q for o, q in zip(on, self.quantize_embeddings)])

    def quantized_weight_names(self) -> list[str]:
        names = [f"{n}.weight" for n, m in self.named_modules() if isinstance(m, PackedLinear)]
        return names + (["tok_emb.weight"] if any(self.quantize_embeddings) else [])

    # --- forward ------------------------------------------------------------------------
    def forward(self, idx: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
        """idx, targets (K, B, T) -> per-run loss (K,), the mean (or sum) over its B*T tokens."""
        K, B, T = idx.shape
        V, C = self.vocab_size, self.cfg.dim
        emb = self.tok_emb.quantize(self.tok_emb.weight)  # (K, V, C)
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
        # a (K, B*T) loss matrix sums in another order and differs in the last bit). unbind, not
        # logits[k]: the backward of K index-selects would zero-fill K full-size gradients.
        per_run = zip(logits.float().unbind(0), targets.reshape(K, B * T).unbind(0))  # K x ((B*T, V), (B*T,))
        return torch.stack([F.cross_entropy(lk, tk, reduction=reduction) for lk, tk in per_run])  # (K,)


# --- optimisers -------------------------------------------------------------------------


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


def _schedule(spec: RunSpec, step: int) -> tuple[float, float, float]:
    """(lr factor, Muon momentum, Adam beta2) at `step`, as engine.train.Session.step sets them."""
    cooling = in_warmdown(step, spec.steps, spec.wd, spec.schedule)
    return (
        lr_factor(step, spec.steps, warmup_steps=spec.warmup_steps, wd=spec.wd, shape=spec.wd_shape,
                  schedule=spec.schedule),
        muon_momentum(step, spec.muon_momentum_warmup_start, spec.muon_momentum, spec.muon_momentum_warmup_steps),
        spec.cooldown_beta2 if (cooling and spec.cooldown_beta2 is not None) else spec.beta2,
    )


@dataclass
class PackedSession:
    """Everything a pack trains with, and its training step (engine.train.Session for K runs)."""

    specs: list[RunSpec]
    device: torch.device
    corpus: Corpus
    packed: PackedGPT
    optimizer: PackedOptimizer
    forward: object  # the packed model, or its compiled version

    def step(self, step: int, live: Sequence[bool] | None = None) -> Tensor:
        """One optimiser step of every run at `step`; runs with live[k] False take LR 0.

        Returns the (K,) losses, unsynchronised.
        """
        factors, momenta, beta2s = zip(*(_schedule(s, step) for s in self.specs))
        if live is not None:
            factors = [f if ok else 0.0 for f, ok in zip(factors, live)]  # a frozen run takes no updates
        self.optimizer.apply_schedule(factors, momenta, beta2s)
        batches = [batch_at(self.corpus.train, step, s.batch_seqs, s.seq_len, s.seed) for s in self.specs]
        x = torch.stack([b[0] for b in batches]).to(self.device, non_blocking=True)  # (K, B, T)
        y = torch.stack([b[1] for b in batches]).to(self.device, non_blocking=True)  # (K, B, T)
        with autocast_for(self.device):
            losses = self.forward(x, y)  # (K,)
        losses.sum().backward()  # runs share no parameters: d(sum)/d(run k) = d(loss_k)/d(run k)
        fault_point("backward")
        self.optimizer.step()
        self.optimizer.zero_grad()
        return losses.detach()


def build_packed_session(specs: Sequence[RunSpec], dev: torch.device, data_dir: Path | None = None,
                         compile_model: bool | None = None) -> PackedSession:
    """engine.train.build_session for a pack: each run seeded as engine.train.run seeds it."""
    check_packable(specs)
    specs = list(specs)
    shared = specs[0]
    corpus = load_corpus(shared.data, shared.tokenizer, data_dir or default_data_dir())
    cfg = get_config(shared.size)
    models = []
    for s in specs:  # each run starts from exactly the weights engine.train.run would create
        torch.manual_seed(s.seed)
        models.append(GPT(cfg, corpus.vocab_size, quantize_embeddings=s.quantize_embeddings).to(dev))
    packed = PackedGPT.from_models(models)
    optimizer = build_packed_optimizer(packed, specs, ns_on_cuda=dev.type == "cuda")
    forward = packed
    if compile_model if compile_model is not None else dev.type == "cuda":
        forward = torch.compile(packed)
    return PackedSession(specs, dev, corpus, packed, optimizer, forward)


@dataclass
class _RunLog:
    """What engine.train.run keeps in locals, kept per run of the pack."""

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


def pack_plan(k: int, device: str | None = None, data_dir: Path | None = None, progress: bool = False):
    """The `pack` argument of ResultsCache.ensure: packs of up to k runs, or None for k <= 1."""
    if k <= 1:
        return None
    return k, pack_key, lambda specs: train_packed(specs, device=device, data_dir=data_dir, progress=progress)


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
    dev = pick_device(device)
    sess = build_packed_session(specs, dev, data_dir, compile_model)
    specs, packed, corpus = sess.specs, sess.packed, sess.corpus
    K, total = len(specs), specs[0].steps
    n_params = count_params(packed.cfg, corpus.vocab_size)  # per run

    runs = [_RunLog(s, _probe_steps(s), max(1, s.steps // CURVE_POINTS)) for s in specs]
    check_every = 1 if dev.type == "cpu" else 25  # a host sync per step is cheap on CPU only
    pending: list[Tensor] = []
    t_train = time.time()
    steps = range(total)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc=f"pack of {K} {specs[0].size}", unit="step", leave=False)
    for step in steps:
        live = [r.diverged_step is None for r in runs]
        if not any(live):
            break
        for k, r in enumerate(runs):
            if live[k] and step in r.probe_steps:
                probe = grid_probe(packed.model(k), r.spec.bits)
                r.probes.append({"step": step, "label": r.probe_steps[step], **probe})
        switch = [live[k] and not r.qat_on and step >= r.spec.qat_start_step for k, r in enumerate(runs)]
        if any(switch):
            for k, r in enumerate(runs):
                r.qat_on = r.qat_on or switch[k]
            packed.set_qat([r.spec.bits if r.qat_on else None for r in runs])
        pending.append(sess.step(step, live))
        fault_point("step")
        done = step + 1
        if done % check_every == 0 or done == total:
            window = torch.stack(pending).float().cpu()  # (n, K)
            first = done - len(pending)
            pending.clear()
            for k, r in enumerate(runs):
                if live[k]:
                    r.flush(window[:, k], first)
                    if r.diverged_step is not None:
                        log.warning("run %s diverged at step %d (in a pack of %d)", r.spec.short_id, r.diverged_step, K)
                        _freeze(packed, sess.optimizer, k)
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
    """engine.train's result record for one run of the pack, plus "packed": K."""
    base = {**_provenance(r.spec, dev, n_params, t_start), "packed": k}
    # This run's tokens over the pack's time: the pack as a whole trained K times as many.
    return result_record(r.spec, model, corpus, dev, base, curve=r.curve, probes=r.probes,
                         probe_steps=r.probe_steps, diverged_step=r.diverged_step, train_time=train_time,
                         t_start=t_start, tokens_per_s=r.spec.tokens / max(train_time, 1e-9))

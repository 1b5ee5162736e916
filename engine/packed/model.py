"""The packed model: engine.model.GPT with every parameter stacked along a leading run axis K.

Matmuls become `torch.bmm` over the K runs; attention folds K into the batch so
`F.scaled_dot_product_attention` (the flash kernel on CUDA) still applies; fake quantisation
is per run (a bit-width per run, off for FP16 runs). See the `engine.packed` docstring for
why, and how exactly it matches the single-run model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.ladder import ModelConfig
from engine.model import GPT, Rotary, apply_rotary
from engine.quant import _EPS as QUANT_EPS, QuantPolicy, qmax
from engine.spec import is_quantised


def packed_fake_quantize(w: Tensor, qmax_k: Tensor, on_k: Tensor, min_scale_k: Tensor) -> Tensor:
    """engine.quant.fake_quantize per run: w (K, rows, cols), qmax_k, min_scale_k (K, 1, 1) float, on_k (K, 1, 1).

    Runs with `on_k` False come back unchanged (w + 0); the same ops as the single-run
    quantiser otherwise, so a quantised slice is bit-identical to fake_quantize(w[k], bits, min_scale).
    """
    s = w.detach().abs().amax(dim=-1, keepdim=True).clamp_min(QUANT_EPS) / qmax_k  # (K, rows, 1)
    s = torch.maximum(s, min_scale_k)  # the scale floor (0 = none: s > 0 already)
    q = torch.clamp(torch.round(w / s), -qmax_k, qmax_k) * s  # (K, rows, cols)
    return w + torch.where(on_k, q - w, 0.0).detach()


class _PerRunQuant(nn.Module):
    """Per-run fake-quantisation switches of one stacked weight: buffers, so they move with it."""

    def __init__(self, k: int):
        super().__init__()
        self.register_buffer("qmax_k", torch.ones(k, 1, 1), persistent=False)  # (K, 1, 1)
        self.register_buffer("on_k", torch.zeros(k, 1, 1, dtype=torch.bool), persistent=False)  # (K, 1, 1)
        self.register_buffer("min_scale_k", torch.zeros(k, 1, 1), persistent=False)  # (K, 1, 1)
        self.any_on = False  # skips the quantiser entirely while no run quantises

    def set_quant(self, qmax_k: Sequence[float], on_k: Sequence[bool], min_scale_k: Sequence[float]) -> None:
        self.qmax_k.copy_(torch.tensor(qmax_k).view(-1, 1, 1))
        self.on_k.copy_(torch.tensor(on_k).view(-1, 1, 1))
        self.min_scale_k.copy_(torch.tensor(min_scale_k).view(-1, 1, 1))
        self.any_on = any(on_k)

    def quantize(self, w: Tensor) -> Tensor:
        return packed_fake_quantize(w, self.qmax_k, self.on_k, self.min_scale_k) if self.any_on else w


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
        self.qat_policies: list[QuantPolicy] = [QuantPolicy()] * k

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
        packed.set_qat([m.qat_bits for m in models], [m.qat_policy for m in models])
        return packed

    def model(self, k: int) -> GPT:
        """Run k as an engine.model.GPT with a copy of its weights and its QAT state."""
        with torch.random.fork_rng(devices=[]):  # GPT's init draws random numbers we overwrite
            m = GPT(self.cfg, self.vocab_size, quantize_embeddings=self.quantize_embeddings[k])
        m.to(self.tok_emb.weight.device)
        m.load_state_dict({name: p.detach()[k].clone() for name, p in self.named_parameters()})
        m.set_qat(self.qat_bits[k], self.qat_policies[k])
        return m

    def to_models(self) -> list[GPT]:
        return [self.model(k) for k in range(self.k)]

    # --- quantisation -------------------------------------------------------------------
    def set_qat(self, bits: Sequence[int | None], policies: Sequence[QuantPolicy] | None = None) -> None:
        """Per-run fake quantisation: bits[k] in 2..8 on, None or 16 off, of the matrices policies[k]
        quantises (as GPT.set_qat)."""
        policies = list(policies) if policies is not None else [QuantPolicy()] * self.k
        if len(bits) != self.k or len(policies) != self.k:
            raise ValueError(f"set_qat got {len(bits)} bit-widths and {len(policies)} policies for {self.k} runs")
        self.qat_bits = [int(b) if is_quantised(b) else None for b in bits]
        self.qat_policies = policies
        on = [b is not None for b in self.qat_bits]
        qmax_k = [float(qmax(b)) if b else 1.0 for b in self.qat_bits]  # 1 for off runs: finite, discarded scales
        floor_k = [p.min_scale(b) for p, b in zip(policies, self.qat_bits)]
        for name, m in self.named_modules():
            if isinstance(m, PackedLinear):
                m.set_quant(qmax_k, [o and p.quantises(f"{name}.weight", m.weight[0].numel())
                                     for o, p in zip(on, policies)], floor_k)
        emb_numel = self.tok_emb.weight[0].numel()
        self.tok_emb.set_quant(qmax_k, [o and q and p.quantises("tok_emb.weight", emb_numel)
                                        for o, q, p in zip(on, self.quantize_embeddings, policies)], floor_k)

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

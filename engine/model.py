"""The parameter-golf GPT, with switchable fake quantisation of its weight matrices.

Leaf modules first, the model last. Architecture as openai/parameter-golf `train_gpt.py`:
RMSNorm (no weights), RoPE, grouped-query attention with RMS-normed q/k and a learned
per-head q gain, relu^2 MLP, per-channel residual scales and a learned mix with the
input embedding, U-Net skips from the first half of the blocks to the second, tied
embeddings and a tanh logit soft-cap.

Quantisation-aware training: every `QATLinear` fake-quantises its weight (per row,
straight-through) while `model.qat_bits` is set; the tied embedding does too when the
run asks for it. `quantized_weight_names()` is the one list that QAT, the export round
trip and the grid-distance probe all use; the run's `engine.quant.QuantPolicy` (given to
`set_qat`) picks from it, for QAT as for export, and sets the grid's scale floor.
Fake quantisation does not look at `self.training` (parameter-golf's int6 records
fake-quantise in training mode only): while it is on, evaluation sees the QAT grid too, so
a QAT run's `val_bpb` is the fake-quantised model (docs/fidelity.md).

Precision departures from the anchor, measured at seq_len 64 and 256 only (docs/fidelity.md): the
embedding stays an fp32 parameter (parameter-golf casts it to bf16 with the model), and
`Rotary` computes its angles in fp32 (parameter-golf's, in its bf16-cast buffer, are bf16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.ladder import ModelConfig
from engine.quant import QuantPolicy, fake_quantize
from engine.spec import is_quantised


class QATLinear(nn.Linear):
    """Bias-free linear layer; fp32 weights cast to the compute dtype; optional fake quant
    (on whenever `qat_bits` is set, in evaluation too)."""

    def __init__(self, d_in: int, d_out: int, zero_init: bool = False):
        super().__init__(d_in, d_out, bias=False)
        self.qat_bits: int | None = None
        self.qat_min_scale = 0.0
        if zero_init:
            nn.init.zeros_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight if self.qat_bits is None else fake_quantize(self.weight, self.qat_bits, self.qat_min_scale)
        return F.linear(x, w.to(x.dtype))


class Rotary(nn.Module):
    def __init__(self, head_dim: int, base: float):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, seq_len: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        t = torch.arange(seq_len, device=device, dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq.to(device))  # (T, hs/2)
        return freqs.cos()[None, None].to(dtype), freqs.sin()[None, None].to(dtype)  # (1, 1, T, hs/2)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.dim % cfg.n_heads or cfg.n_heads % cfg.n_kv_heads or cfg.head_dim % 2:
            raise ValueError(f"bad attention shape {cfg}: need dim % heads == 0, heads % kv_heads == 0, even head_dim")
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        kv_dim = cfg.n_kv_heads * cfg.head_dim
        self.c_q = QATLinear(cfg.dim, cfg.dim)
        self.c_k = QATLinear(cfg.dim, kv_dim)
        self.c_v = QATLinear(cfg.dim, kv_dim)
        self.proj = QATLinear(cfg.dim, cfg.dim, zero_init=True)
        self.q_gain = nn.Parameter(torch.full((cfg.n_heads,), cfg.qk_gain_init))
        self.rotary = Rotary(cfg.head_dim, cfg.rope_base)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = self.c_k(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        v = self.c_v(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        q, k = F.rms_norm(q, (self.head_dim,)), F.rms_norm(k, (self.head_dim,))
        cos, sin = self.rotary(T, x.device, q.dtype)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=self.n_kv_heads != self.n_heads
        )  # (B, nh, T, hs); the flash kernel on CUDA
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = QATLinear(cfg.dim, cfg.mlp_mult * cfg.dim)
        self.proj = QATLinear(cfg.mlp_mult * cfg.dim, cfg.dim, zero_init=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(torch.relu(self.fc(x)).square())  # relu^2


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = CausalSelfAttention(cfg)
        self.mlp = MLP(cfg)
        self.attn_scale = nn.Parameter(torch.ones(cfg.dim))
        self.mlp_scale = nn.Parameter(torch.ones(cfg.dim))
        # Learned mix of the running stream with the block-0 input (parameter-golf).
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(cfg.dim), torch.zeros(cfg.dim))))

    def forward(self, x: Tensor, x0: Tensor) -> Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        x = x + self.attn_scale.to(x.dtype) * self.attn(F.rms_norm(x, (x.size(-1),)))
        return x + self.mlp_scale.to(x.dtype) * self.mlp(F.rms_norm(x, (x.size(-1),)))


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, quantize_embeddings: bool = False):
        super().__init__()
        self.cfg = cfg
        self.quantize_embeddings = quantize_embeddings
        self.qat_bits: int | None = None
        self.qat_policy = QuantPolicy()
        self.tok_emb = nn.Embedding(vocab_size, cfg.dim)
        nn.init.normal_(self.tok_emb.weight, std=cfg.tied_embed_init_std)
        self.n_enc = cfg.n_layers // 2
        self.n_dec = cfg.n_layers - self.n_enc
        self.skip_weights = nn.Parameter(torch.ones(min(self.n_enc, self.n_dec), cfg.dim))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))

    def set_qat(self, bits: int | None, policy: QuantPolicy = QuantPolicy()) -> None:
        """Switch fake quantisation on at `bits` (None or 16 = off) for the matrices `policy` quantises."""
        self.qat_bits = bits if is_quantised(bits) else None
        self.qat_policy = policy
        for name, m in self.named_modules():
            if isinstance(m, QATLinear):
                m.qat_bits = self.qat_bits if policy.quantises(f"{name}.weight", m.weight.numel()) else None
                m.qat_min_scale = policy.min_scale(m.qat_bits)

    def quantized_weight_names(self) -> list[str]:
        names = [f"{n}.weight" for n, m in self.named_modules() if isinstance(m, QATLinear)]
        return names + (["tok_emb.weight"] if self.quantize_embeddings else [])

    def forward(self, idx: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
        emb = self.tok_emb.weight
        if self.qat_bits is not None and self.quantize_embeddings and self.qat_policy.quantises("tok_emb.weight", emb.numel()):
            emb = fake_quantize(emb, self.qat_bits, self.qat_policy.min_scale(self.qat_bits))
        x = F.rms_norm(F.embedding(idx, emb), (self.cfg.dim,))  # (B, T, C)
        x0, skips = x, []
        for block in self.blocks[: self.n_enc]:
            x = block(x, x0)
            skips.append(x)
        for i, block in enumerate(self.blocks[self.n_enc :]):
            if skips:  # U-Net: the last encoder output feeds the first decoder block
                x = x + self.skip_weights[i].to(x.dtype) * skips.pop()
            x = block(x, x0)
        x = F.rms_norm(x, (self.cfg.dim,))
        logits = F.linear(x, emb.to(x.dtype))  # (B, T, V), tied head
        logits = self.cfg.logit_softcap * torch.tanh(logits / self.cfg.logit_softcap)
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction=reduction)

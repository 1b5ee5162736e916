"""Quantisation: the fake quantiser used in training, the export round trip, grid distances.

One grid everywhere: per-row symmetric integers in [-qmax, qmax], qmax = 2**(bits-1) - 1,
with scale = (row clip value) / qmax. Training (QAT) uses the row's max |w| as clip value
so the straight-through estimator passes every weight's gradient; export uses the
parameter-golf clip percentile (99.99984 % of |w| per row), then re-evaluates the
dequantised weights.

Why not torchao's `IntxFakeQuantizer`: its symmetric mapping uses the range
[-2**(bits-1), 2**(bits-1)-1] with scale max|w| / (qmax + 0.5), so the row maximum is
clipped (and gets a zero STE gradient) and the QAT grid is not the export grid; it is
also ~7x slower per call on small CPU matrices, which dominates the tiny profile.
`tests/engine/test_quant.py` shows the grid difference.
"""

from __future__ import annotations

import torch
from torch import Tensor

from engine.spec import is_quantised

QUANT_FORMAT = "perrow_sym_v1"  # tag of `export_state_dict` objects; bump on any change
_EPS = 1e-12


def qmax(bits: int) -> int:
    if not 2 <= bits <= 8:
        raise ValueError(f"integer grids are 2..8 bits, got {bits}")
    return 2 ** (bits - 1) - 1


def row_scale(w: Tensor, bits: int) -> Tensor:
    """Per-row max-abs scale, shape (rows, 1)."""
    return w.detach().abs().amax(dim=1, keepdim=True).clamp_min(_EPS) / qmax(bits)


def fake_quantize(w: Tensor, bits: int) -> Tensor:
    """Per-row symmetric fake quantisation with a straight-through estimator.

    Forward: round(w / s) * s on the [-qmax, qmax] grid. Backward: identity, so the
    full-precision latent weights keep learning (w + (q - w).detach()).
    """
    n = qmax(bits)
    s = row_scale(w, bits).to(w.dtype)  # (rows, 1)
    q = torch.clamp(torch.round(w / s), -n, n) * s
    return w + (q - w).detach()


def grid_distance(w: Tensor, bits: int) -> float:
    """Mean |w/s - round(w/s)| over the matrix: 0 = on the grid, 0.25 = uniform in a cell."""
    x = w.detach().float() / row_scale(w.float(), bits)
    return float((x - torch.round(x)).abs().mean())


# --- export round trip --------------------------------------------------------------


def quantize_rows(w: Tensor, bits: int, clip_percentile: float) -> tuple[Tensor, Tensor]:
    """Integer codes (int8 storage) and fp16 per-row scales of a 2D tensor."""
    n = qmax(bits)
    w32 = w.detach().float()
    clip = torch.quantile(w32.abs(), clip_percentile / 100.0, dim=1).clamp_min(_EPS)  # (rows,)
    scale = (clip / n).to(torch.float16).float().clamp_min(torch.finfo(torch.float16).tiny)
    codes = torch.clamp(torch.round(w32 / scale[:, None]), -n, n).to(torch.int8)
    return codes, scale.to(torch.float16)


def dequantize_rows(codes: Tensor, scale: Tensor) -> Tensor:
    return codes.float() * scale.float()[:, None]


def export_state_dict(
    state: dict[str, Tensor], bits: int, quantized: set[str], clip_percentile: float
) -> dict:
    """Export as the paper does: `quantized` 2D tensors at `bits` (16 = fp16 cast), the rest fp16.

    Control vectors (scales, gains, mixes) stay fp32, as parameter-golf keeps them.
    """
    out: dict = {"__quant_format__": QUANT_FORMAT, "bits": bits, "codes": {}, "scales": {}, "float": {}}
    for name, t in state.items():
        if name in quantized and is_quantised(bits):
            if t.ndim != 2:
                raise ValueError(f"only 2D tensors are quantised per row; {name} has shape {tuple(t.shape)}")
            out["codes"][name], out["scales"][name] = quantize_rows(t, bits, clip_percentile)
        elif t.ndim >= 2:
            out["float"][name] = t.detach().to(torch.float16)
        else:
            out["float"][name] = t.detach().float()
    return out


def import_state_dict(obj: dict) -> dict[str, Tensor]:
    if obj.get("__quant_format__") != QUANT_FORMAT:
        raise ValueError(f"unknown export format {obj.get('__quant_format__')!r}; this engine reads {QUANT_FORMAT!r}")
    state = {name: dequantize_rows(c, obj["scales"][name]) for name, c in obj["codes"].items()}
    state.update({name: t.float() for name, t in obj["float"].items()})
    return state

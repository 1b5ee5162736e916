"""Quantisation: the fake quantiser used in training, the export round trip, grid distances.

One grid everywhere: per-row symmetric integers in [-qmax, qmax], qmax = 2**(bits-1) - 1,
with scale = max(row clip value / qmax, min_scale). Training (QAT) uses the row's max |w|
as clip value so the straight-through estimator passes every weight's gradient; export
uses the parameter-golf clip percentile (99.99984 % of |w| per row), then re-evaluates
the dequantised weights.

`QuantPolicy` is what a run's spec says about that grid and about which tensors it covers
(`QuantPolicy.of(spec)`); QAT (`engine.model`, `engine.packed.model`) and export read the
same object, so a matrix is fake-quantised in training iff export quantises it, on the
same grid:
- `scale_floor`: per-row scales are at least scale_floor / qmax(bits). parameter-golf
  clamps its int8 export scales to >= 1/127 (`train_gpt.py`) and its int6 QAT records
  clamp QAT and export scales to >= 1/31: scale_floor = 1. At int5 and int4 parameter-golf
  has no one rule (its int5 exporters floor at 1/15 or not at all; none floors int4 at
  1/7), so 1/15 and 1/7 are this project's extrapolation of scale >= 1/qmax: one rule at
  every bit-width (docs/fidelity.md). Trained rows mostly have
  max |w| < 1, so with the floor the grid step is fixed at 1/qmax.
- `keep_float_numel`: matrices of at most this many elements stay float (parameter-golf
  keeps every tensor of <= 65,536 elements in fp16).
- `keep_float`: name patterns (substrings) of matrices that stay float (fp16) at any size,
  in export and QAT alike. Not parameter-golf's `INT8_KEEP_FLOAT_FP32_NAME_PATTERNS`: that
  only stores a tensor already kept float by size (<= 65,536 elements) in fp32 rather than
  fp16, the role `CONTROL_PATTERNS` plays here. The nearest is its 2026-03-20 int5/int6
  records' `FP16_KEEP_NAME_PATTERNS` (export only: those records have no QAT).
Tensors that are not quantised are stored in fp16, except the control tensors (scales,
gains, mixes, skip weights: `CONTROL_PATTERNS`), which stay fp32 as parameter-golf's int8
export keeps them (its int6 records store them fp16).

Why not torchao's `IntxFakeQuantizer`: its symmetric mapping uses the range
[-2**(bits-1), 2**(bits-1)-1] with scale max|w| / (qmax + 0.5), so the row maximum is
clipped (and gets a zero STE gradient) and the QAT grid is not the export grid; it is
also ~7x slower per call on small CPU matrices, which dominates the tiny profile.
`tests/engine/test_quant.py` shows the grid difference.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass

import torch
from torch import Tensor

from engine.spec import RunSpec, is_quantised

QUANT_FORMAT = "perrow_sym_v2"  # tag of `export_state_dict` objects; bump on any change
_EPS = 1e-12
# engine.model's control tensors (parameter-golf CONTROL_TENSOR_NAME_PATTERNS, as named here):
# kept in fp32 at export whatever their shape (resid_mix and skip_weights are 2D).
CONTROL_PATTERNS = ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weights")
ZLIB_LEVEL = 9  # parameter-golf compresses its artifact with zlib level 9 (`final_model.int8.ptz`)


def qmax(bits: int) -> int:
    if not 2 <= bits <= 8:
        raise ValueError(f"integer grids are 2..8 bits, got {bits}")
    return 2 ** (bits - 1) - 1


@dataclass(frozen=True)
class QuantPolicy:
    """Which weight matrices are quantised, and the scale floor of their grid (see the module docstring)."""

    scale_floor: float = 0.0
    keep_float_numel: int = 0
    keep_float: tuple[str, ...] = ()
    clip_percentile: float = 99.99984

    @classmethod
    def of(cls, spec: RunSpec) -> QuantPolicy:
        return cls(spec.scale_floor, spec.keep_float_numel, spec.keep_float_patterns, spec.clip_percentile)

    def quantises(self, name: str, numel: int) -> bool:
        """Whether a candidate matrix (a block weight, or the embedding when it is quantised) is quantised."""
        return numel > self.keep_float_numel and not any(p in name for p in self.keep_float)

    def min_scale(self, bits: int | None) -> float:
        """Smallest per-row scale at `bits` (0 = no floor; 0 too when `bits` does not quantise)."""
        return self.scale_floor / qmax(bits) if is_quantised(bits) and self.scale_floor else 0.0


def row_scale(w: Tensor, bits: int, min_scale: float = 0.0) -> Tensor:
    """Per-row max-abs scale, at least `min_scale`, shape (rows, 1)."""
    return (w.detach().abs().amax(dim=1, keepdim=True).clamp_min(_EPS) / qmax(bits)).clamp_min(min_scale)


def fake_quantize(w: Tensor, bits: int, min_scale: float = 0.0) -> Tensor:
    """Per-row symmetric fake quantisation with a straight-through estimator.

    Forward: round(w / s) * s on the [-qmax, qmax] grid, s = max(max|w_row| / qmax, min_scale).
    Backward: identity, so the full-precision latent weights keep learning (w + (q - w).detach()).
    """
    n = qmax(bits)
    s = row_scale(w, bits, min_scale).to(w.dtype)  # (rows, 1)
    q = torch.clamp(torch.round(w / s), -n, n) * s
    return w + (q - w).detach()


def grid_distance(w: Tensor, bits: int, min_scale: float = 0.0) -> float:
    """Mean |w/s - round(w/s)| over the matrix: 0 = on the grid, 0.25 = uniform in a cell."""
    x = w.detach().float() / row_scale(w.float(), bits, min_scale)
    return float((x - torch.round(x)).abs().mean())


# --- export round trip --------------------------------------------------------------


def quantize_rows(w: Tensor, bits: int, clip_percentile: float, min_scale: float = 0.0) -> tuple[Tensor, Tensor]:
    """Integer codes (int8 storage) and fp16 per-row scales of a 2D tensor.

    Values are clipped to the row's percentile clip value, then divided by the stored (fp16)
    scale: parameter-golf's int8 export clips the same way but divides by the fp32 scale before
    storing fp16; its int6 records divide by the stored fp16 scale, as here.
    """
    n = qmax(bits)
    w32 = w.detach().float()
    clip = torch.quantile(w32.abs(), clip_percentile / 100.0, dim=1).clamp_min(_EPS)[:, None]  # (rows, 1)
    scale = (clip / n).clamp_min(min_scale).to(torch.float16).float().clamp_min(torch.finfo(torch.float16).tiny)
    codes = torch.clamp(torch.round(torch.minimum(torch.maximum(w32, -clip), clip) / scale), -n, n).to(torch.int8)
    return codes, scale[:, 0].to(torch.float16)


def dequantize_rows(codes: Tensor, scale: Tensor) -> Tensor:
    return codes.float() * scale.float()[:, None]


def is_control(name: str, t: Tensor) -> bool:
    """Control tensors (vectors, and the named mixes and skip weights) stay fp32 at export."""
    return t.ndim < 2 or any(p in name for p in CONTROL_PATTERNS)


def export_state_dict(
    state: dict[str, Tensor], bits: int, candidates: set[str], policy: QuantPolicy = QuantPolicy()
) -> dict:
    """Export as the paper does: the `candidates` the policy quantises at `bits` (16 = none), the rest float.

    Float tensors are stored in fp16, control tensors (`is_control`) in fp32, as parameter-golf does.
    """
    out: dict = {"__quant_format__": QUANT_FORMAT, "bits": bits, "codes": {}, "scales": {}, "float": {}}
    min_scale = policy.min_scale(bits)
    for name, t in state.items():
        if is_quantised(bits) and name in candidates and policy.quantises(name, t.numel()):
            if t.ndim != 2:
                raise ValueError(f"only 2D tensors are quantised per row; {name} has shape {tuple(t.shape)}")
            out["codes"][name], out["scales"][name] = quantize_rows(t, bits, policy.clip_percentile, min_scale)
        elif is_control(name, t):
            out["float"][name] = t.detach().float()
        else:
            out["float"][name] = t.detach().to(torch.float16)
    return out


def import_state_dict(obj: dict) -> dict[str, Tensor]:
    if obj.get("__quant_format__") != QUANT_FORMAT:
        raise ValueError(f"unknown export format {obj.get('__quant_format__')!r}; this engine reads {QUANT_FORMAT!r}")
    state = {name: dequantize_rows(c, obj["scales"][name]) for name, c in obj["codes"].items()}
    state.update({name: t.float() for name, t in obj["float"].items()})
    return state


def export_nbytes(obj: dict) -> int:
    """Bytes of an export's tensors as stored: int8 codes (one byte per code at any bit-width), fp16
    scales, float tensors at their stored dtype (parameter-golf's `int8_payload_bytes`)."""
    tensors = [*obj["codes"].values(), *obj["scales"].values(), *obj["float"].values()]
    return sum(t.numel() * t.element_size() for t in tensors)


def compressed_nbytes(obj: dict) -> int:
    """Bytes of the export as parameter-golf counts its artifact: `torch.save` of the object, zlib level 9."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return len(zlib.compress(buf.getvalue(), level=ZLIB_LEVEL))

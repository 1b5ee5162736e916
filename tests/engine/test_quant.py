"""Quantisation: grid values and STE gradient at every bit-width; export round trip; grid distance."""

import pytest
import torch

from engine.quant import (
    dequantize_rows, export_state_dict, fake_quantize, grid_distance, import_state_dict, qmax, quantize_rows,
)

BITS = [8, 6, 5, 4]


@pytest.mark.parametrize("bits", BITS)
def test_fake_quant_values_on_grid(bits):
    torch.manual_seed(0)
    w = torch.randn(8, 64)
    q = fake_quantize(w, bits)
    n = qmax(bits)
    s = w.abs().amax(1, keepdim=True) / n
    codes = q / s
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert codes.abs().max() <= n + 1e-4
    # the row maximum sits exactly on the top level: max-abs scaling never clips in QAT
    assert torch.allclose(q.abs().amax(1), w.abs().amax(1))
    assert len(torch.unique(codes.round())) <= 2 * n + 1
    assert (q - w).abs().max() <= s.max() / 2 + 1e-6  # rounding error at most half a step


@pytest.mark.parametrize("bits", BITS)
def test_straight_through_gradient_is_identity(bits):
    w = torch.randn(4, 16, requires_grad=True)
    g = torch.randn(4, 16)
    (fake_quantize(w, bits) * g).sum().backward()
    assert torch.equal(w.grad, g)


def test_qmax_values_and_errors():
    assert [qmax(b) for b in (8, 6, 5, 4)] == [127, 31, 15, 7]
    with pytest.raises(ValueError):
        qmax(16)


@pytest.mark.parametrize("bits", BITS)
def test_export_round_trip_error_shrinks_with_bits(bits):
    torch.manual_seed(1)
    w = torch.randn(32, 128)
    codes, scale = quantize_rows(w, bits, 99.99984)
    assert codes.dtype == torch.int8 and scale.dtype == torch.float16
    assert codes.abs().max() <= qmax(bits)
    err = (dequantize_rows(codes, scale) - w).abs().mean()
    assert err < w.abs().mean() * 2.0 / qmax(bits)


def test_export_state_dict_round_trip_and_format_tag():
    sd = {"a.weight": torch.randn(16, 32), "tok_emb.weight": torch.randn(10, 32), "gain": torch.randn(16)}
    obj = export_state_dict(sd, 6, {"a.weight"}, 99.99984)
    back = import_state_dict(obj)
    assert set(back) == set(sd)
    assert torch.equal(back["gain"], sd["gain"])  # control vectors stay fp32
    assert torch.allclose(back["tok_emb.weight"], sd["tok_emb.weight"], atol=1e-2)  # fp16
    assert not torch.allclose(back["a.weight"], sd["a.weight"], atol=1e-3)  # really quantised
    with pytest.raises(ValueError, match="unknown export format"):
        import_state_dict({**obj, "__quant_format__": "v0"})


def test_bits16_export_is_fp16_cast():
    sd = {"a.weight": torch.randn(4, 4)}
    back = import_state_dict(export_state_dict(sd, 16, {"a.weight"}, 99.99984))
    assert torch.equal(back["a.weight"], sd["a.weight"].half().float())


def test_grid_distance_extremes():
    w = torch.randn(16, 64)
    assert grid_distance(fake_quantize(w, 6), 6) < 1e-4  # on the grid
    torch.manual_seed(2)
    u = torch.rand(64, 4096) * 2 - 1
    assert grid_distance(u, 6) == pytest.approx(0.25, abs=0.01)  # uniform within a cell


def test_torchao_symmetric_grid_differs_from_export_grid():
    """Why engine.quant has its own fake quantiser: torchao's symmetric int6 clips the row max."""
    torchao_qat = pytest.importorskip("torchao.quantization.qat")
    from torchao.quantization.qat.fake_quantizer import IntxFakeQuantizer

    cfg = torchao_qat.IntxFakeQuantizeConfig(torch.int6, "per_channel", is_symmetric=True)
    w = torch.randn(4, 64, requires_grad=True)
    q_ao = IntxFakeQuantizer(cfg)(w)
    assert not torch.allclose(q_ao.detach().abs().amax(1), w.detach().abs().amax(1))  # row max clipped
    q_ao.sum().backward()
    assert (w.grad == 0).any()  # ... and its STE gradient is zeroed
    assert torch.allclose(fake_quantize(w, 6).detach().abs().amax(1), w.detach().abs().amax(1))

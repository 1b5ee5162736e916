"""Quantisation: grid values and STE gradient at every bit-width; export round trip; grid distance;
the export policy (scale floor, small-tensor threshold, float patterns) in QAT and export; export sizes."""

import io
import zlib

import pytest
import torch

from engine.ladder import get_config
from engine.model import GPT, QATLinear
from engine.packed.model import packed_fake_quantize
from engine.quant import (
    QuantPolicy, compressed_nbytes, dequantize_rows, export_nbytes, export_state_dict, fake_quantize, grid_distance,
    import_state_dict, qmax, quantize_rows,
)
from engine.spec import RunSpec, matrix_names

PG = QuantPolicy(scale_floor=1.0, keep_float_numel=65_536)  # parameter-golf's export

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
    obj = export_state_dict(sd, 6, {"a.weight"})
    back = import_state_dict(obj)
    assert set(back) == set(sd)
    assert torch.equal(back["gain"], sd["gain"])  # control vectors stay fp32
    assert torch.allclose(back["tok_emb.weight"], sd["tok_emb.weight"], atol=1e-2)  # fp16
    assert not torch.allclose(back["a.weight"], sd["a.weight"], atol=1e-3)  # really quantised
    with pytest.raises(ValueError, match="unknown export format"):
        import_state_dict({**obj, "__quant_format__": "v0"})


def test_bits16_export_is_fp16_cast():
    sd = {"a.weight": torch.randn(4, 4)}
    back = import_state_dict(export_state_dict(sd, 16, {"a.weight"}))
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


# --- the export policy: scale floor ---------------------------------------------------------------


@pytest.mark.parametrize("bits, codes", [(8, [64, 32, -13, 0]), (6, [16, 8, -3, 0]), (4, [4, 2, -1, 0])])
def test_scale_floor_one_gives_parameter_golfs_grid(bits, codes):
    """parameter-golf: scale = max(clip / qmax, 1 / qmax), so a row with max |w| < 1 is coded as round(w * qmax)."""
    w = torch.tensor([[0.5, 0.25, -0.1, 0.001]])
    c, s = quantize_rows(w, bits, 100.0, min_scale=PG.min_scale(bits))
    assert c[0].tolist() == codes
    assert s.item() == pytest.approx(1 / qmax(bits), rel=1e-3)  # fp16-stored 1/127, 1/31, 1/7
    c0, s0 = quantize_rows(w, bits, 100.0)  # no floor: the row's own range, max |w| on the top code
    assert c0[0, 0].item() == qmax(bits) and s0.item() == pytest.approx(0.5 / qmax(bits), rel=1e-3)
    assert PG.min_scale(bits) == 1 / qmax(bits) and QuantPolicy().min_scale(bits) == 0.0
    assert PG.min_scale(16) == 0.0 and PG.min_scale(None) == 0.0  # FP16 has no grid


def test_scale_floor_does_not_bind_on_rows_wider_than_the_floor():
    w = torch.tensor([[3.0, -1.5, 0.2]])
    assert torch.equal(quantize_rows(w, 6, 100.0, 1 / 31)[0], quantize_rows(w, 6, 100.0)[0])
    assert torch.equal(fake_quantize(w, 6, 1 / 31), fake_quantize(w, 6))


@pytest.mark.parametrize("bits", BITS)
def test_qat_and_export_share_the_floored_grid(bits):
    """Weights snapped by QAT with the floor are exported onto the same codes (up to the fp16 scale)."""
    torch.manual_seed(3)
    w = torch.randn(16, 64) * 0.2  # rows with max |w| below 1, where the floor binds
    floor = PG.min_scale(bits)
    snapped = fake_quantize(w, bits, floor)
    codes, scale = quantize_rows(snapped, bits, 100.0, floor)
    assert torch.equal(codes.float(), torch.round(snapped / floor))  # the QAT grid's codes exactly
    assert torch.allclose(dequantize_rows(codes, scale), snapped, rtol=1e-3, atol=0)
    # Exported without the floor, the same weights land on another grid: QAT and export disagree.
    unfloored = dequantize_rows(*quantize_rows(snapped, bits, 100.0))
    assert not torch.allclose(unfloored, snapped, rtol=1e-3, atol=0)
    assert grid_distance(snapped, bits, floor) < 1e-4 < grid_distance(snapped, bits)


def test_export_clips_at_the_percentile_before_the_floor():
    """With a floored scale the percentile clip still limits the codes (parameter-golf clips w first)."""
    w = torch.cat([torch.full((1, 999), 0.1), torch.tensor([[0.5]])], dim=1)  # one outlier per row
    codes, _ = quantize_rows(w, 8, 99.0, 1 / 127)
    assert codes.max().item() == round(0.1 * 127)  # the outlier is clipped to the 99th percentile (0.1)


@pytest.mark.parametrize("bits", BITS)
def test_packed_quantiser_matches_single_with_a_floor(bits):
    torch.manual_seed(4)
    w = torch.randn(3, 8, 32) * torch.tensor([0.02, 0.5, 2.0]).view(3, 1, 1)  # floor binds, partly, not at all
    floor = 1.0 / qmax(bits)
    qmax_k = torch.full((3, 1, 1), float(qmax(bits)))
    out = packed_fake_quantize(w, qmax_k, torch.ones(3, 1, 1, dtype=torch.bool), torch.full((3, 1, 1), floor))
    for k in range(3):
        assert torch.equal(out[k], fake_quantize(w[k], bits, floor))


# --- the export policy: which tensors are quantised ----------------------------------------------


def _trained_like(model: GPT) -> dict:
    torch.manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_control_tensors_stay_fp32_and_the_rest_fp16():
    """engine.quant's docstring: scales, gains, mixes and skip weights stay fp32 (resid_mix and skip_weights
    are 2D and were exported in fp16 before)."""
    model = GPT(get_config("t45k"), 256)
    sd = _trained_like(model)
    obj = export_state_dict(sd, 6, set(model.quantized_weight_names()))
    back = import_state_dict(obj)
    matrices = set(model.quantized_weight_names()) | {"tok_emb.weight"}
    controls = [n for n in sd if n not in matrices]
    assert {n.split(".")[-1] for n in controls} == {"attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weights"}
    for n in controls:
        assert obj["float"][n].dtype == torch.float32 and torch.equal(back[n], sd[n]), n
    assert obj["float"]["tok_emb.weight"].dtype == torch.float16
    assert set(obj["codes"]) == set(model.quantized_weight_names())


def test_small_tensor_threshold_keeps_small_matrices_float():
    model = GPT(get_config("t45k"), 256)  # matrices of 1,600 (attention) to 3,200 (MLP) elements
    sd = _trained_like(model)
    cands = set(model.quantized_weight_names())
    obj = export_state_dict(sd, 6, cands, QuantPolicy(keep_float_numel=1_600))
    assert set(obj["codes"]) == {n for n in cands if ".mlp." in n}
    assert all(obj["float"][n].dtype == torch.float16 for n in cands if ".attn." in n)
    assert export_state_dict(sd, 6, cands, PG)["codes"] == {}  # parameter-golf's 65,536: nothing at tiny scale


def test_keep_float_patterns_keep_matching_matrices_float():
    model = GPT(get_config("t45k"), 256)
    sd = _trained_like(model)
    cands = set(model.quantized_weight_names())
    obj = export_state_dict(sd, 6, cands, QuantPolicy(keep_float=("c_k", "blocks.2.mlp")))
    kept = {n for n in cands if "c_k" in n or n.startswith("blocks.2.mlp")}
    assert len(kept) == 5 and set(obj["codes"]) == cands - kept
    assert all(n in obj["float"] for n in kept)


def test_qat_follows_the_policy():
    """A matrix that export keeps float is not fake-quantised in training; the floor reaches QAT."""
    model = GPT(get_config("t45k"), 256, quantize_embeddings=True)
    _trained_like(model)
    x, y = torch.randint(0, 256, (2, 16)), torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        plain = model(x, y)
        model.set_qat(6, QuantPolicy(keep_float_numel=10**6))
        assert model(x, y) == plain  # everything kept float: nothing fake-quantised
        model.set_qat(6, QuantPolicy(keep_float=("mlp",)))
        on = {n for n, m in model.named_modules() if isinstance(m, QATLinear) and m.qat_bits == 6}
        assert on and all(".attn." in n for n in on)
        model.set_qat(6, PG.__class__(scale_floor=1.0))
        lin = model.blocks[0].mlp.fc
        assert lin.qat_min_scale == 1 / 31
        assert torch.equal(lin(torch.eye(lin.in_features)).T, fake_quantize(lin.weight, 6, 1 / 31))
        model.set_qat(None, PG)
        assert model(x, y) == plain


def test_spec_matrix_names_are_the_models():
    for size in ("t10k", "t100k", "3M"):
        model = GPT(get_config(size), 256, quantize_embeddings=True)
        assert sorted(matrix_names(size)) == sorted(model.quantized_weight_names())


def test_policy_of_a_spec():
    s = RunSpec(size="t20k", scale_floor=1, keep_float_numel=65536, keep_float="c_k,c_q", clip_percentile=100)
    assert QuantPolicy.of(s) == QuantPolicy(1.0, 65536, ("c_k", "c_q"), 100.0)
    assert QuantPolicy.of(RunSpec(size="t20k")) == QuantPolicy()


# --- export sizes -----------------------------------------------------------------------------------


def test_export_nbytes_counts_codes_scales_and_float_tensors():
    sd = {"a.weight": torch.randn(16, 32), "tok_emb.weight": torch.randn(10, 32), "gain": torch.randn(16)}
    obj = export_state_dict(sd, 6, {"a.weight"})
    assert export_nbytes(obj) == 16 * 32 * 1 + 16 * 2 + 10 * 32 * 2 + 16 * 4  # int8 codes, fp16 scales, fp16, fp32
    assert export_nbytes(export_state_dict(sd, 16, {"a.weight"})) == (16 * 32 + 10 * 32) * 2 + 16 * 4


def test_compressed_size_is_a_loadable_zlib_artifact_and_shrinks_with_bits():
    torch.manual_seed(6)
    sd = {"a.weight": torch.randn(64, 256) * 0.05, "gain": torch.ones(64)}
    sizes = {}
    for bits in (8, 6, 4):
        obj = export_state_dict(sd, bits, {"a.weight"})
        buf = io.BytesIO()
        torch.save(obj, buf)
        sizes[bits] = compressed_nbytes(obj)
        assert sizes[bits] < len(buf.getvalue())  # compression pays: the codes use few of int8's values
        back = torch.load(io.BytesIO(zlib.decompress(zlib.compress(buf.getvalue(), 9))), weights_only=True)
        assert torch.equal(import_state_dict(back)["a.weight"], import_state_dict(obj)["a.weight"])
    assert sizes[4] < sizes[6] < sizes[8]


def test_packed_model_follows_each_runs_policy():
    from engine.packed.model import PackedGPT

    policies = [QuantPolicy(scale_floor=1.0), QuantPolicy(keep_float=("mlp",)), QuantPolicy(keep_float_numel=10**6)]
    models = []
    for seed, (bits, policy) in enumerate(zip((6, 4, 8), policies)):
        torch.manual_seed(seed)
        m = GPT(get_config("t20k"), 256)
        _trained_like(m)
        m.set_qat(bits, policy)
        models.append(m)
    packed = PackedGPT.from_models(models)
    x, y = torch.randint(0, 256, (3, 2, 16)), torch.randint(0, 256, (3, 2, 16))
    with torch.no_grad():
        losses = packed(x, y)
        for k, m in enumerate(models):
            assert torch.allclose(losses[k], m(x[k], y[k]), rtol=1e-6, atol=0), k
            assert packed.model(k).qat_policy == policies[k]
    assert packed.blocks[0].mlp.fc.on_k.flatten().tolist() == [True, False, False]
    assert packed.blocks[0].attn.c_q.on_k.flatten().tolist() == [True, True, False]
    assert packed.blocks[0].attn.c_q.min_scale_k.flatten().tolist() == pytest.approx([1 / 31, 0.0, 0.0])

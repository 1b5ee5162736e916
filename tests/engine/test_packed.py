"""Seed packing: the packed model, optimisers and loop against K single runs.

Tolerances: unit checks (forward, gradients, one optimiser step) use atol 1e-5 on fp32,
room for a BLAS whose batched kernel sums in another order than its single one. The end
to end checks use none: the packed arithmetic is the single-run arithmetic op for op, and
a CPU bmm slice equals the mm of that slice bit for bit, so the records must be equal. No
small tolerance could be justified there anyway: fake quantisation rounds, so a half-ulp
nudge of the initial weights moved an int4 run's val_bpb by 1.3 % after 20 steps (6e-5 for
int6, 0 for fp16 on this CPU). Where a platform's batched kernels do differ (checked by
`exact_kernels`), the end-to-end tests fall back to that percent-level tolerance.
"""

import math

import pytest
import torch

from engine.ladder import get_config
from engine.model import GPT
from engine.muon import Muon
from engine.packed import check_packable, train_packed
from engine.packed.model import PackedGPT
from engine.packed.optim import PackedAdam, PackedMuon
from engine.spec import RunSpec
from engine.train import train

UNIT_ATOL = 1e-5
FALLBACK_RTOL = 2e-2  # only where batched kernels are not bit-identical to single ones (see docstring)
TINY = dict(size="t20k", steps=20, batch_tokens=512, seq_len=64, val_tokens=2048, muon_momentum_warmup_steps=5)
PACK = [
    RunSpec(**TINY, seed=0, bits=16),
    RunSpec(**TINY, seed=1, bits=6, warmdown=0.5, lr_mult=0.5, qat_start=0.3),
    RunSpec(**TINY, seed=2, bits=4, warmdown=0.2, warmdown_shape="cosine", lr_mult=2.0, cooldown_beta2=0.99,
            quantize_embeddings=True),
    # R2's separate arm: the LR restarts when QAT starts (a per-run schedule inside the pack)
    RunSpec(**TINY, seed=4, bits=5, warmdown=0.25, qat_start=0.6, qat_lr_restart=True, cooldown_beta2=0.99),
]
DIVERGING = RunSpec(**TINY, seed=3, lr_mult=1e12)
# Differ by construction between a packed and a single run of the same spec.
# how long and in how much memory the process ran, not what it computed
VOLATILE = {"train_time_s", "tokens_per_s", "wall_time_s", "started_at", "packed", "peak_memory_bytes"}


# One thread everywhere in this module: same reduction splits in the packed and the single runs.
pytestmark = pytest.mark.usefixtures("one_thread")


def _models(bits=(16, 16, 16), quantize_embeddings=(False, True, False), size="t20k") -> list[GPT]:
    """Three GPTs with non-trivial weights (the zero-initialised projections too)."""
    models = []
    for seed, (b, qe) in enumerate(zip(bits, quantize_embeddings)):
        torch.manual_seed(seed)
        m = GPT(get_config(size), 256, quantize_embeddings=qe)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        m.set_qat(b)
        models.append(m)
    return models


def _batch(k=3, b=4, t=32):
    g = torch.Generator().manual_seed(7)
    return torch.randint(0, 256, (k, b, t), generator=g), torch.randint(0, 256, (k, b, t), generator=g)


@pytest.fixture(scope="module")
def exact_kernels() -> bool:
    """Whether a packed forward equals the single forwards bit for bit on this platform."""
    models = _models()
    x, y = _batch()
    with torch.no_grad():
        packed = PackedGPT.from_models(models)(x, y)
        return all(torch.equal(packed[k], m(x[k], y[k])) for k, m in enumerate(models))


# --- model ---------------------------------------------------------------------------------


def test_from_models_to_models_round_trip_is_exact():
    models = _models(bits=(16, 6, 4))
    rng = torch.get_rng_state()
    back = PackedGPT.from_models(models).to_models()
    assert torch.equal(torch.get_rng_state(), rng)  # building the GPTs leaves the caller's RNG alone
    for m, b in zip(models, back):
        sa, sb = m.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[n], sb[n]) for n in sa)
        assert (b.qat_bits, b.quantize_embeddings) == (m.qat_bits, m.quantize_embeddings)


def test_packed_parameters_are_gpts_with_a_run_axis():
    model = _models()[0]
    packed = PackedGPT(get_config("t20k"), 256, k=5)
    shapes = {n: tuple(p.shape) for n, p in packed.named_parameters()}
    assert shapes == {n: (5, *p.shape) for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    "bits, size",
    [((16, 16, 16), "t20k"), ((16, 6, 4), "t20k"), ((8, 16, 5), "t100k")],
    ids=["qat_off", "bits_16_6_4", "t100k_two_skips"],
)
def test_forward_and_gradients_match_single_models(bits, size):
    models = _models(bits=bits, size=size)
    packed = PackedGPT.from_models(models)
    x, y = _batch()
    losses = packed(x, y)  # (K,)
    losses.sum().backward()
    grads = dict(packed.named_parameters())
    for k, m in enumerate(models):
        loss = m(x[k], y[k])
        loss.backward()
        torch.testing.assert_close(losses[k], loss, atol=UNIT_ATOL, rtol=0)
        for name, p in m.named_parameters():
            torch.testing.assert_close(grads[name].grad[k], p.grad, atol=UNIT_ATOL, rtol=0, msg=name)
    with torch.no_grad():
        sums = packed(x, y, reduction="sum")
    assert torch.allclose(sums, torch.stack([m(x[k], y[k], reduction="sum") for k, m in enumerate(models)]))


# --- optimisers ----------------------------------------------------------------------------


def test_packed_muon_step_matches_muon_per_run():
    torch.manual_seed(0)
    shapes = [(24, 48), (64, 16)]  # wide and tall (the transposed Newton-Schulz branch)
    lrs, momenta = [0.02, 0.005, 0.1], [0.95, 0.85, 0.9]
    packed = [torch.nn.Parameter(torch.randn(3, *s)) for s in shapes]
    single = [[torch.nn.Parameter(p.detach()[k].clone()) for p in packed] for k in range(3)]
    popt = PackedMuon([{"params": packed}], lr=lrs, momentum=momenta, ns_dtype=torch.float32)
    opts = [Muon(ps, lr=lrs[k], momentum=momenta[k], ns_dtype=torch.float32) for k, ps in enumerate(single)]
    for _ in range(3):
        for i, p in enumerate(packed):
            p.grad = torch.randn_like(p)
            for k in range(3):
                single[k][i].grad = p.grad[k].clone()
        popt.step()
        for o in opts:
            o.step()
    for i, p in enumerate(packed):
        for k in range(3):
            torch.testing.assert_close(p.detach()[k], single[k][i].detach(), atol=UNIT_ATOL, rtol=0)


@pytest.mark.parametrize("decay", [False, True], ids=["adam", "adamw"])
def test_packed_adam_step_matches_torch_per_run(decay):
    torch.manual_seed(0)
    lrs, betas, wds = [0.04, 0.01, 0.2], [(0.9, 0.95), (0.8, 0.99), (0.85, 0.9)], [0.1, 0.0, 0.3] if decay else None
    packed = [torch.nn.Parameter(torch.randn(3, 5)), torch.nn.Parameter(torch.randn(3, 2, 7))]
    single = [[torch.nn.Parameter(p.detach()[k].clone()) for p in packed] for k in range(3)]
    popt = PackedAdam([{"params": packed}], lr=lrs, betas=betas, weight_decay=wds)
    make = torch.optim.AdamW if decay else torch.optim.Adam
    opts = [make(ps, lr=lrs[k], betas=betas[k], eps=1e-8, weight_decay=wds[k] if decay else 0.0)
            for k, ps in enumerate(single)]
    for step in range(4):
        if step == 2:  # a cooldown beta2 switches in mid-run, as engine.train does
            popt.param_groups[0]["betas"] = [(b1, 0.999) for b1, _ in betas]
            for o in opts:
                o.param_groups[0]["betas"] = (o.param_groups[0]["betas"][0], 0.999)
        for i, p in enumerate(packed):
            p.grad = torch.randn_like(p)
            for k in range(3):
                single[k][i].grad = p.grad[k].clone()
        popt.step()
        for o in opts:
            o.step()
    for i, p in enumerate(packed):
        for k in range(3):
            torch.testing.assert_close(p.detach()[k], single[k][i].detach(), atol=UNIT_ATOL, rtol=0)


# --- the loop ------------------------------------------------------------------------------


def test_specs_that_differ_in_shape_cannot_share_a_pack():
    with pytest.raises(ValueError, match="seq_len"):
        check_packable([PACK[0], PACK[0].replace(seq_len=32)])
    check_packable(PACK)  # seeds, bits, warmdown, lr_mult, beta2 may all differ


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def single_records(data_dir, one_thread_module):
    return {s.run_id: train(s, data_dir=data_dir) for s in [*PACK, DIVERGING]}


def _assert_same_record(packed: dict, single: dict, exact: bool) -> None:
    assert packed.keys() - {"packed"} == single.keys()
    if exact:
        strip = lambda r: {k: v for k, v in r.items() if k not in VOLATILE and k != "loss_curve"}  # noqa: E731
        assert strip(packed) == strip(single)
        curve = lambda r: [(s, "nan" if math.isnan(v) else v) for s, v in r["loss_curve"]]  # noqa: E731
        assert curve(packed) == curve(single)
        return
    assert (packed["status"], packed["diverged_step"]) == (single["status"], single["diverged_step"])
    for key in ("loss_curve", "val_curve"):  # the same points at the same steps
        assert [s for s, _ in packed[key]] == [s for s, _ in single[key]], key
    for key in ("val_bpb", "val_bpb_q", "val_bpb_int8", "grid_dist_int6_prewd"):
        if key in single:
            assert packed[key] == pytest.approx(single[key], rel=FALLBACK_RTOL), key


def test_packed_training_reproduces_single_runs(single_records, data_dir, exact_kernels):
    records = train_packed(PACK, data_dir=data_dir)
    assert [r["run_id"] for r in records] == [s.run_id for s in PACK]
    for rec, spec in zip(records, PACK):
        assert rec["status"] == "ok" and rec["packed"] == len(PACK)
        assert rec["val_curve"] == [(spec.steps, rec["val_bpb"])] and len(rec["loss_curve"]) == spec.steps
        _assert_same_record(rec, single_records[spec.run_id], exact_kernels)


def test_diverging_run_is_frozen_while_the_others_match(single_records, data_dir, exact_kernels):
    specs = [PACK[0], DIVERGING, PACK[2]]
    records = train_packed(specs, data_dir=data_dir)
    bad = records[1]
    assert bad["status"] == "diverged" and bad["diverged_reason"] == "non-finite loss"
    assert bad["diverged_step"] == single_records[DIVERGING.run_id]["diverged_step"] < DIVERGING.steps
    for rec, spec in zip(records, specs):
        _assert_same_record(rec, single_records[spec.run_id], exact_kernels)


def test_packed_speedup_times_all_three_loops(data_dir, monkeypatch):
    from engine.packed.bench import packed_speedup

    monkeypatch.setenv("QAT_DATA_DIR", str(data_dir))  # engine.bench's step functions read the default dir
    r = packed_speedup("t10k", k=2, steps=1, device="cpu", rounds=1, batch_tokens=128)
    times = [r[k] for k in ("sequential_deepspeed_s_per_step", "sequential_plain_s_per_step", "packed_s_per_step")]
    assert all(t > 0 for t in times)
    assert r["speedup_vs_plain"] == pytest.approx(times[1] / times[2])

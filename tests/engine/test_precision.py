"""The GPU path (bf16 autocast + torch.compile + bf16 Newton-Schulz) run on CPU, single and packed.

CI has no GPU, so this is where the CUDA path's arithmetic runs: the same autocast, compiled
model (inductor's C++ backend here, Triton there), bf16 Muon and DeepSpeed wrapper as a GPU run.
Each short tiny run must be finite, learn, and land within BF16_TOLERANCE_BPB of the fp32 eager
run of the same spec. Shapes are the smallest of the ladder and QAT is on from step 0, so each
path compiles one forward/backward graph (inductor's on-disk cache shares them across runs).
"""

import math

import pytest
import torch

from engine.evaluate import evaluate
from engine.packed import run_packed
from engine.precision import Precision, default_precision, resolve_precision
from engine.spec import RunSpec
from engine.train import run

# Short runs (the bf16 path's cost is compile); batch and steps large enough that loss clearly falls.
SHORT = dict(size="t10k", bits=6, steps=24, batch_tokens=256, seq_len=32, val_tokens=2048,
             muon_momentum_warmup_steps=5)
# bf16 keeps 8 mantissa bits: over 24 steps the fp32 and bf16 runs drift apart by a few hundredths
# of a bit per byte (measured 0.0033-0.0036 on this spec); one seed-to-seed SD at tiny scale is ~0.025.
BF16_TOLERANCE_BPB = 0.05
GPU_PATH = Precision("bf16", compile=True)


def test_defaults_are_bf16_compiled_on_cuda_and_fp32_eager_on_cpu():
    assert default_precision(torch.device("cuda")) == Precision("bf16", True)
    assert default_precision(torch.device("cpu")) == Precision("fp32", False)
    assert resolve_precision(torch.device("cpu"), "bf16") == Precision("bf16", False)
    assert resolve_precision(torch.device("cuda"), None, False) == Precision("bf16", False)


def test_bad_precision_names_the_choices():
    with pytest.raises(ValueError, match="--precision 'fp16' is not one of fp32, bf16"):
        Precision("fp16")


def test_bf16_autocast_computes_matmuls_in_bf16_on_cpu():
    a = torch.randn(4, 4)
    with GPU_PATH.autocast(torch.device("cpu")):
        assert (a @ a).dtype == torch.bfloat16
    with Precision("fp32").autocast(torch.device("cpu")):
        assert (a @ a).dtype == torch.float32
    assert GPU_PATH.ns_dtype == torch.bfloat16 and Precision().ns_dtype == torch.float32


def _check_against_fp32(gpu: dict, fp32: dict) -> None:
    assert gpu["status"] == "ok" and fp32["status"] == "ok"
    assert gpu["precision"] == "bf16" and gpu["compiled"] is True
    assert fp32["precision"] == "fp32" and fp32["compiled"] is False
    curve = [loss for _, loss in gpu["loss_curve"]]
    assert all(math.isfinite(v) for v in curve)
    assert curve[-1] < curve[0] - 0.5, curve  # learning: from ~ln(256)=5.5 nats well down
    for key in ("val_bpb", "val_bpb_q"):
        assert abs(gpu[key] - fp32[key]) < BF16_TOLERANCE_BPB, (key, gpu[key], fp32[key])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def test_single_run_through_the_gpu_path_matches_fp32(data, one_thread_module):
    spec = RunSpec(**SHORT)
    trained = run(spec, device="cpu", data_dir=data, precision=GPU_PATH)
    gpu = trained.result
    fp32 = run(spec, device="cpu", data_dir=data, precision=Precision("fp32")).result
    _check_against_fp32(gpu, fp32)
    # the record's val_bpb is computed as the run trained (bf16 here), not in the device's default (fp32)
    cpu = torch.device("cpu")
    as_trained = evaluate(trained.model, trained.corpus, spec.seq_len, spec.val_tokens, cpu, GPU_PATH).bpb
    in_fp32 = evaluate(trained.model, trained.corpus, spec.seq_len, spec.val_tokens, cpu).bpb
    assert gpu["val_bpb"] == as_trained != in_fp32


def test_packed_runs_through_the_gpu_path_match_fp32(data, one_thread_module):
    specs = [RunSpec(**SHORT, seed=s) for s in (0, 1)]
    gpu = [t.result for t in run_packed(specs, device="cpu", data_dir=data, precision=GPU_PATH)]
    fp32 = [t.result for t in run_packed(specs, device="cpu", data_dir=data, precision=Precision("fp32"))]
    for g, f in zip(gpu, fp32, strict=True):
        assert g["packed"] == 2
        _check_against_fp32(g, f)

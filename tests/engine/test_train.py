"""End to end: tiny real runs on the embedded corpus through the DeepSpeed loop."""


import pytest

from engine.bpb import unigram_entropy_bpb
from engine.evaluate import evaluate, round_trip
from engine.spec import RunSpec
from engine.train import run, train

TINY = dict(size="t20k", steps=80, batch_tokens=1024, seq_len=64, val_tokens=8192, muon_momentum_warmup_steps=5)


@pytest.fixture(scope="module")
def fp16_run(tmp_path_factory):
    return run(RunSpec(**TINY, bits=16), data_dir=tmp_path_factory.mktemp("data"))


def test_tiny_run_beats_unigram_entropy(fp16_run):
    r, corpus = fp16_run.result, fp16_run.corpus
    assert r["status"] == "ok"
    val = corpus.val[: r["val_tokens_evaluated"] + 1]
    unigram = unigram_entropy_bpb(corpus.train, val, corpus.vocab_size, r["val_bytes_evaluated"])
    assert r["val_bpb"] < unigram - 0.5, (r["val_bpb"], unigram)
    assert r["n_params"] == 18_400 and r["tokens_seen"] == 80 * 1024
    assert r["tokens_per_param_byte"] == pytest.approx(80 * 1024 / (18_400 * 16 / 8))  # fp16: 2 bytes a parameter
    assert r["loss_curve"][0][1] > r["loss_curve"][-1][1]


def test_int4_round_trip_hurts_more_than_int8(fp16_run):
    model, corpus = fp16_run.model, fp16_run.corpus
    base = evaluate(model, corpus, 64, 8192, model.tok_emb.weight.device).bpb
    pen = {b: evaluate(round_trip(model, b), corpus, 64, 8192, model.tok_emb.weight.device).bpb - base
           for b in (8, 4)}
    assert pen[4] > pen[8] and pen[4] > 0.01, pen


def test_record_fields(fp16_run):
    r = fp16_run.result
    for key in ("val_bpb", "val_bpb_q", "val_bpb_int8", "quant_penalty", "grid_dist_int6_prewd", "grid_probes",
                "tokens_per_s", "versions", "device", "git_commit", "wall_time_s"):
        assert key in r
    assert [p["label"] for p in r["grid_probes"]] == ["pre_warmdown"]
    assert r["grid_probes"][0]["step"] == RunSpec(**TINY).warmdown_start


def test_same_seed_same_result(tmp_path):
    spec = RunSpec(**{**TINY, "steps": 20}, bits=6)
    a, b = train(spec, data_dir=tmp_path), train(spec, data_dir=tmp_path)
    assert a["val_bpb_q"] == b["val_bpb_q"]


def test_absurd_lr_is_recorded_as_diverged(tmp_path):
    r = train(RunSpec(**{**TINY, "steps": 30}, lr_mult=1e12), data_dir=tmp_path)
    assert r["status"] == "diverged" and r["diverged_reason"] == "non-finite loss"
    assert 0 <= r["diverged_step"] < 30
    assert "val_bpb" not in r


def test_collapsed_run_is_diverged_not_ok(tmp_path):
    # lr x1e4 does not overflow: the model collapses to a uniform guess (loss = ln 256)
    r = train(RunSpec(**{**TINY, "steps": 30}, lr_mult=1e4), data_dir=tmp_path)
    assert r["status"] == "diverged" and r["diverged_reason"] == "no better than uniform"

"""Tests for engine.data: shards, documents, splits, corpus loading/caching and batching."""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from engine import data as data_mod
from engine.data import (
    HEADER_INTS,
    SHARD_MAGIC,
    SHARD_VERSION,
    ShardedTokens,
    batch_at,
    count_target_bytes,
    data_fingerprint,
    load_corpus,
    load_documents,
    read_shard,
    split_documents,
    val_batches,
    write_shard,
)
from engine.source import DataSource
from engine.tokenizer import SentencePieceTokenizer, train_sentencepiece

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kjv_docs() -> list[str]:
    return load_documents("kjv")


@pytest.fixture(autouse=True)
def _fresh_memo():
    # load_corpus memoises per process; tests use their own cache dirs, but clear anyway so a
    # test never sees another's corpus object.
    load_corpus.cache_clear()
    yield
    load_corpus.cache_clear()


# --- shards -----------------------------------------------------------------------------------


def _header(magic=SHARD_MAGIC, version=SHARD_VERSION, n=0) -> bytes:
    h = np.zeros(HEADER_INTS, dtype="<i4")
    h[:3] = magic, version, n
    return h.tobytes()


def test_shard_round_trip(tmp_path):
    tokens = np.array([0, 1, 2, 65535, 1234, 7], dtype=np.int64)
    path = tmp_path / "fineweb_val_000000.bin"
    write_shard(path, tokens)
    assert path.stat().st_size == 1024 + 2 * tokens.size
    raw = path.read_bytes()
    assert np.frombuffer(raw[:12], dtype="<i4").tolist() == [SHARD_MAGIC, SHARD_VERSION, tokens.size]
    got = read_shard(path)
    assert got.dtype == np.uint16 and got.tolist() == tokens.tolist()
    write_shard(path, np.array([], dtype=np.uint16))
    assert read_shard(path).size == 0
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # atomic write leaves no temp files


@pytest.mark.parametrize(
    "content, match",
    [
        (_header(magic=12345, n=2) + b"\0" * 4, "magic 12345, expected 20240520"),
        (_header(version=2, n=2) + b"\0" * 4, "version 2, expected 1"),
        (_header(n=3) + b"\0" * 4, "truncated"),  # header promises 3 tokens, file holds 2
        (_header(n=1) + b"\0" * 4, "extra bytes"),
        (_header()[:100], "shorter than the 1024-byte header"),
    ],
    ids=["magic", "version", "truncated", "extra", "short-header"],
)
def test_read_shard_errors_name_the_file(tmp_path, content, match):
    path = tmp_path / "bad_shard.bin"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as ei:
        read_shard(path)
    assert "bad_shard.bin" in str(ei.value)


def test_write_shard_rejects_out_of_range(tmp_path):
    with pytest.raises(ValueError, match="uint16"):
        write_shard(tmp_path / "s.bin", np.array([70000]))
    assert not (tmp_path / "s.bin").exists()


# --- documents and split ------------------------------------------------------------------------


def test_load_documents_kjv(kjv_docs):
    assert len(kjv_docs) == 1189  # one per chapter
    assert sum(len(d.encode()) for d in kjv_docs) > 3_000_000
    assert kjv_docs[0].startswith("In the beginning God created")
    assert "In the beginning was the Word" in "".join(kjv_docs)  # John 1, New Testament present
    assert not any(re.search(r"\d+:\d+", d) for d in kjv_docs)  # verse markers stripped


def test_load_documents_text_dir(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "sub" / "a.txt").write_text("third")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "notes.md").write_text("ignored")
    assert load_documents(f"text:{tmp_path}") == ["first", "second", "third"]


def test_load_documents_errors(tmp_path):
    with pytest.raises(ValueError, match="not found.*does-not-exist"):
        load_documents(f"text:{tmp_path / 'does-not-exist'}")
    (tmp_path / "x.md").write_text("no txt here")
    with pytest.raises(ValueError, match="no \\*.txt files"):
        load_documents(f"text:{tmp_path}")
    with pytest.raises(ValueError, match="'bible'"):
        load_documents("bible")


def test_split_documents_properties(kjv_docs):
    train, val = split_documents(kjv_docs, 0.1)
    assert (train, val) == split_documents(kjv_docs, 0.1)
    shuffled = list(kjv_docs)
    random.Random(0).shuffle(shuffled)
    train2, val2 = split_documents(shuffled, 0.1)
    assert set(train2) == set(train) and set(val2) == set(val)  # order-independent, by document
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(kjv_docs)
    assert 0.06 < len(val) / len(kjv_docs) < 0.14
    bigger_train, bigger_val = split_documents(kjv_docs, 0.3)
    assert set(val) <= set(bigger_val)  # a doc's bucket is fixed; raising the fraction only adds


def test_split_documents_forces_nonempty_splits():
    docs = [f"doc {i}" for i in range(3)]
    for frac in (1e-9, 1 - 1e-9):
        train, val = split_documents(docs, frac)
        assert train and val and sorted(train + val) == sorted(docs)
    with pytest.raises(ValueError, match="at least 2 distinct"):
        split_documents(["only", "only"], 0.5)
    for bad in (0, 1, -0.1, 1.5):
        with pytest.raises(ValueError, match="val_fraction"):
            split_documents(docs, bad)


# --- corpora ------------------------------------------------------------------------------------


def test_load_corpus_kjv_byte_and_cache(kjv_docs, tmp_path, monkeypatch):
    corpus = load_corpus("kjv", "byte", tmp_path)
    train_docs, val_docs = split_documents(kjv_docs, 0.1)
    val_text = "\n\n".join(val_docs).encode()
    assert corpus.vocab_size == 256 and corpus.tokenizer.name == "byte"
    assert corpus.train.tobytes() == np.frombuffer("\n\n".join(train_docs).encode(), np.uint8).astype(np.int32).tobytes()
    assert corpus.val.astype(np.uint8).tobytes() == val_text
    assert corpus.val_bytes == len(val_text) - 1  # every target is one byte; the first token is not a target
    assert load_corpus("kjv", "byte", tmp_path) is corpus  # in-process memo
    with pytest.raises(ValueError):
        corpus.train[0] = 1  # memoised arrays are read-only

    load_corpus.cache_clear()

    def boom(source):
        raise AssertionError("warm load must come from the .npy cache, not re-read documents")

    monkeypatch.setattr(data_mod, "load_documents", boom)
    warm = load_corpus("kjv", "byte", tmp_path)
    assert np.array_equal(warm.train, corpus.train) and np.array_equal(warm.val, corpus.val)
    assert warm.val_bytes == corpus.val_bytes
    assert len(list((tmp_path / "tokens").glob("*/train.npy"))) == 1


def test_load_corpus_kjv_sp_bytes_exact(kjv_docs, tmp_path):
    corpus = load_corpus("kjv", "sp512", tmp_path)
    assert corpus.vocab_size == 512 and corpus.tokenizer.name == "sp512"
    assert (tmp_path / "tokenizers" / "kjv-val0.1-sp512.model").is_file()
    _, val_docs = split_documents(kjv_docs, 0.1)
    val_text = "\n\n".join(val_docs)
    assert corpus.tokenizer.decode(corpus.val) == val_text
    base, lead, _ = corpus.tokenizer.luts()
    first = int(corpus.val[0])
    assert corpus.val_bytes == len(val_text.encode()) - int(base[first]) - int(lead[first])
    assert corpus.train.size < 0.6 * sum(len(d) for d in kjv_docs)  # BPE actually compresses


def test_load_corpus_text_dir(tmp_path, kjv_docs):
    src = tmp_path / "src"
    src.mkdir()
    for i, d in enumerate(kjv_docs[:20]):
        (src / f"{i:03d}.txt").write_text(d)
    corpus = load_corpus(f"text:{src}", "byte", tmp_path / "cache", val_fraction=0.2)
    train_docs, val_docs = split_documents(kjv_docs[:20], 0.2)
    assert corpus.val.astype(np.uint8).tobytes() == "\n\n".join(val_docs).encode()
    assert corpus.train.size == len("\n\n".join(train_docs).encode())


def test_load_corpus_fineweb(tmp_path, kjv_docs):
    model = train_sentencepiece(kjv_docs[:5], 320, tmp_path / "tiny")
    tok = SentencePieceTokenizer(model)
    shard_dir = tmp_path / "fw"
    parts = {
        "fineweb_train_000001.bin": "\n\n".join(kjv_docs[10:12]),
        "fineweb_train_000000.bin": "\n\n".join(kjv_docs[6:8]),
        "fineweb_val_000000.bin": "\n\n".join(kjv_docs[20:22]),
    }
    ids = {name: np.array(tok.encode(text)) for name, text in parts.items()}
    for name, arr in ids.items():
        write_shard(shard_dir / name, arr)
    corpus = load_corpus(f"fineweb:{shard_dir}", f"sp:{model}", tmp_path / "cache")
    assert isinstance(corpus.train, ShardedTokens) and all(isinstance(s, np.memmap) for s in corpus.train.shards)
    expected_train = np.concatenate([ids["fineweb_train_000000.bin"], ids["fineweb_train_000001.bin"]])
    assert np.array_equal(corpus.train, expected_train)  # sorted shard order
    assert np.array_equal(corpus.val, ids["fineweb_val_000000.bin"])
    assert corpus.vocab_size == 320
    base, lead, _ = tok.luts()
    first = int(corpus.val[0])
    assert corpus.val_bytes == len(parts["fineweb_val_000000.bin"].encode()) - int(base[first]) - int(lead[first])
    # The sequential order streams the shards as the anchor does: the first span is all of shard 0
    # plus the first token of shard 1 (its last target), the next one starts right after it.
    shard0, shard1 = ids["fineweb_train_000000.bin"], ids["fineweb_train_000001.bin"]
    x, y = batch_at(corpus.train, 0, 1, len(shard0), seed=3, order="sequential")
    assert np.array_equal(x[0].numpy(), shard0) and int(y[0, -1]) == shard1[0]
    x, _ = batch_at(corpus.train, 1, 1, len(shard0), seed=3, order="sequential")
    assert np.array_equal(x[0, :10].numpy(), shard1[1:11])

    with pytest.raises(ValueError, match="sp:/path"):
        load_corpus(f"fineweb:{shard_dir}", "byte", tmp_path / "cache")
    (shard_dir / "fineweb_val_000000.bin").unlink()
    load_corpus.cache_clear()  # the memo would otherwise return the corpus loaded above
    with pytest.raises(ValueError, match="fineweb_val_"):
        load_corpus(f"fineweb:{shard_dir}", f"sp:{model}", tmp_path / "cache")


def test_load_corpus_errors(tmp_path):
    with pytest.raises(ValueError, match="'wikitext'.*'kjv'"):
        load_corpus("wikitext", "byte", tmp_path)
    with pytest.raises(ValueError, match="'bpe'"):
        load_corpus("kjv", "bpe", tmp_path)


# --- batches ------------------------------------------------------------------------------------


def test_batch_at_deterministic_and_shifted():
    tokens = np.arange(10_000, dtype=np.int32)
    x, y = batch_at(tokens, step=7, batch_size=4, seq_len=32, seed=1)
    assert x.shape == y.shape == (4, 32) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y, x + 1)  # y is x shifted by one token
    x2, y2 = batch_at(tokens, 7, 4, 32, 1)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, batch_at(tokens, 8, 4, 32, 1)[0])
    assert not torch.equal(x, batch_at(tokens, 7, 4, 32, 2)[0])
    # Windows may reach the very last token but never past it.
    xs, ys = batch_at(np.arange(33), 0, 16, 32, 0)
    assert torch.equal(xs[0], torch.arange(32)) and torch.equal(ys[0], torch.arange(1, 33))
    with pytest.raises(ValueError, match="seq_len"):
        batch_at(np.arange(32), 0, 1, 32, 0)


def test_sequential_order_reads_the_stream_as_the_anchor():
    """parameter-golf's TokenStream (one process, no accumulation): step i takes the next B*T+1 tokens."""
    tokens = np.arange(1000, dtype=np.int32)
    span = 4 * 8 + 1
    for step in (0, 1, 5):
        x, y = batch_at(tokens, step, 4, 8, seed=0, order="sequential")
        assert x.shape == y.shape == (4, 8) and x.dtype == torch.int64
        assert torch.equal(x.flatten(), torch.arange(step * span, step * span + 32))
        assert torch.equal(y.flatten(), x.flatten() + 1)
    # the seed does not enter (as in the anchor), and the stream wraps to the start at the end
    assert torch.equal(batch_at(tokens, 3, 4, 8, 7, "sequential")[0], batch_at(tokens, 3, 4, 8, 0, "sequential")[0])
    x, y = batch_at(tokens, 30, 4, 8, 0, "sequential")  # starts at 990: 10 tokens left, then 0, 1, ...
    assert x.flatten()[:10].tolist() == list(range(990, 1000)) and x.flatten()[10:12].tolist() == [0, 1]
    assert y.flatten()[9].item() == 0
    # consecutive steps tile the split: every token is read once per pass (the +1 is not reused)
    seen = torch.cat([torch.cat([batch_at(tokens, i, 4, 8, 0, "sequential")[0].flatten(),
                                 batch_at(tokens, i, 4, 8, 0, "sequential")[1].flatten()[-1:]]) for i in range(30)])
    assert torch.equal(seen, torch.arange(990))
    with pytest.raises(ValueError, match="data order 'shuffled'"):
        batch_at(tokens, 0, 4, 8, 0, "shuffled")


def test_val_batches_cover_requested_tokens():
    tokens = np.arange(1000, dtype=np.int32)
    batches = list(val_batches(tokens, seq_len=10, batch_size=3, max_tokens=90))
    assert [tuple(x.shape) for x, _ in batches] == [(3, 10), (3, 10), (3, 10)]
    ys = torch.cat([y.reshape(-1) for _, y in batches])
    xs = torch.cat([x.reshape(-1) for x, _ in batches])
    assert torch.equal(ys, torch.arange(1, 91)) and torch.equal(xs, torch.arange(0, 90))
    all_batches = list(val_batches(tokens, 10, 4, None))
    assert sum(x.shape[0] for x, _ in all_batches) == 99  # (1000 - 1) // 10 full windows
    assert all_batches[-1][0].shape == (3, 10)
    with pytest.raises(ValueError, match="seq_len"):
        list(val_batches(tokens[:5], 10, 1, None))


def test_both_training_loops_read_the_specs_data_order(tmp_path, monkeypatch):
    """engine.train.run and the packed loop hand RunSpec.data_order to batch_at."""
    import engine.packed.loop as packed_loop
    import engine.train as train_mod
    from engine.spec import RunSpec

    seen = []

    def spy(*args, **kwargs):
        seen.append(args[5] if len(args) > 5 else kwargs.get("order", "random"))
        return batch_at(*args, **kwargs)

    monkeypatch.setattr(train_mod, "batch_at", spy)
    monkeypatch.setattr(packed_loop, "batch_at", spy)
    spec = RunSpec(size="t10k", steps=2, batch_tokens=128, seq_len=32, val_tokens=256, data_order="sequential")
    train_mod.run(spec, data_dir=tmp_path)
    packed_loop.run_packed([spec, spec.replace(seed=1, data_order="random")], data_dir=tmp_path)
    assert seen == ["sequential"] * 2 + ["sequential", "random"] * 2


# --- memory-mapped shards -----------------------------------------------------------------------


def _old_batch_at(tokens: np.ndarray, step, batch_size, seq_len, seed, order):
    """batch_at as it was over one concatenated array (fancy indexing), to compare against."""
    n = len(tokens)
    if order == "sequential":
        span = batch_size * seq_len + 1
        chunk = torch.from_numpy(tokens[(step * span + np.arange(span)) % n].astype(np.int64))
        return chunk[:-1].reshape(batch_size, seq_len), chunk[1:].reshape(batch_size, seq_len)
    starts = np.random.default_rng([seed, step]).integers(0, n - seq_len, size=batch_size)
    buf = torch.from_numpy(tokens[starts[:, None] + np.arange(seq_len + 1)[None, :]].astype(np.int64))
    return buf[:, :-1].contiguous(), buf[:, 1:].contiguous()


@pytest.fixture
def shard_set(tmp_path):
    """Shards of uneven sizes (an empty one, some shorter than a window): (files, their concatenation)."""
    rng = np.random.default_rng(0)
    files = []
    for i, n in enumerate([50, 3, 0, 120, 1, 77]):
        files.append(tmp_path / f"fineweb_train_{i:06d}.bin")
        write_shard(files[-1], rng.integers(0, 65536, size=n))
    return files, np.concatenate([read_shard(f) for f in files])


def test_sharded_tokens_read_as_the_concatenated_shards(shard_set):
    files, whole = shard_set
    mapped = ShardedTokens(files)
    assert len(mapped) == mapped.size == whole.size == 251
    for start, stop in [(0, 251), (45, 60), (50, 53), (52, 54), (53, 174), (173, 175), (250, 251), (7, 7), (-20, None)]:
        got = mapped[start:stop]
        assert got.dtype == np.uint16 and np.array_equal(got, whole[start:stop]), (start, stop)
    assert [int(mapped[i]) for i in (0, 50, 173, -1)] == [int(whole[i]) for i in (0, 50, 173, -1)]
    with pytest.raises(IndexError):
        mapped[251]
    assert np.array_equal(np.asarray(mapped), whole)
    assert len(pickle.dumps(mapped)) < 1000 and np.array_equal(pickle.loads(pickle.dumps(mapped))[:], whole)


@pytest.mark.parametrize("order", ["random", "sequential"])
def test_batches_from_mapped_shards_equal_todays(shard_set, order):
    """Windows crossing shard boundaries (the 3-, 0- and 1-token shards lie inside most) and the wrap included."""
    files, whole = shard_set
    mapped = ShardedTokens(files)
    for step in range(12):
        for batch_size, seq_len in [(3, 16), (20, 16), (1, 250)]:  # 20*16+1 > 251: the stream wraps twice
            want = _old_batch_at(whole, step, batch_size, seq_len, 5, order)
            for tokens in (mapped, whole):
                got = batch_at(tokens, step, batch_size, seq_len, 5, order)
                assert all(g.dtype == torch.int64 and torch.equal(g, w) for g, w in zip(got, want))


def test_val_batches_and_target_bytes_from_mapped_shards(shard_set):
    files, whole = shard_set
    mapped = ShardedTokens(files)
    for max_tokens in (None, 100, 16):
        got, want = list(val_batches(mapped, 16, 4, max_tokens)), list(val_batches(whole, 16, 4, max_tokens))
        assert len(got) == len(want) and all(torch.equal(a, b) for g, w in zip(got, want) for a, b in zip(g, w))
    rng = np.random.default_rng(1)
    luts = rng.integers(1, 4, 65536), rng.random(65536) < 0.5, rng.random(65536) < 0.1
    tok = SimpleNamespace(luts=lambda: luts)
    assert count_target_bytes(mapped, tok) == count_target_bytes(whole.astype(np.int32), tok) > 0


def test_load_corpus_fineweb_checks_val_tokens_against_the_vocabulary(tmp_path, kjv_docs):
    model = train_sentencepiece(kjv_docs[:5], 320, tmp_path / "tiny")
    write_shard(tmp_path / "fw" / "fineweb_train_000000.bin", np.arange(300))
    write_shard(tmp_path / "fw" / "fineweb_val_000000.bin", np.array([1, 2, 320]))
    with pytest.raises(ValueError, match="val tokens contain id 320 >= vocab_size 320"):
        load_corpus(f"fineweb:{tmp_path / 'fw'}", f"sp:{model}", tmp_path / "cache")


# What the memory test's subprocess runs: load a shard set, draw batches both ways, evaluate all of
# val, and report how much its memory grew from just before the load.
_MEMORY_PROBE = """
import json, sys
import psutil, sentencepiece, torch
from engine.data import batch_at, load_corpus, val_batches

def private():  # resident memory that is this process's own: RSS less file-backed and shared pages
    m = psutil.Process().memory_info()
    return m.rss - m.shared

shards, model, cache = sys.argv[1:]
before, rss_before = private(), psutil.Process().memory_info().rss
corpus = load_corpus(f"fineweb:{shards}", f"sp:{model}", cache)
for step in range(50):
    batch_at(corpus.train, step, 8, 1024, 0, "sequential")
    batch_at(corpus.train, step, 8, 1024, 0, "random")
for _ in val_batches(corpus.val, 1024, 8, None):
    pass  # every validation batch is made: their memory is what is measured
print(json.dumps({"private_growth": private() - before, "rss_growth": psutil.Process().memory_info().rss - rss_before,
                  "train_tokens": len(corpus.train)}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="psutil reports shared (file-backed) pages on Linux")
def test_fineweb_shards_are_mapped_not_copied(tmp_path, kjv_docs):
    """A worker that loads ~300 MB of shards and trains from them keeps a small fraction of that as its own memory.

    Loaded as before (concatenated, then int32) the same set took ~600 MB of private memory in every
    worker. Measured: RSS less its shared part (psutil's `shared`: file-backed pages). The mapped
    shards' pages count in plain RSS once touched (the kernel maps page-cache folios of up to MBs
    per fault), but they are the page cache's, shared by every worker and reclaimable.
    """
    model = train_sentencepiece(kjv_docs[:5], 320, tmp_path / "tiny")
    shards = tmp_path / "fw"
    tokens = np.random.default_rng(0).integers(0, 320, size=25_000_000, dtype=np.uint16)
    try:
        for i in range(6):
            write_shard(shards / f"fineweb_train_{i:06d}.bin", tokens)
        write_shard(shards / "fineweb_val_000000.bin", tokens[:200_000])
        del tokens
        set_bytes = sum(f.stat().st_size for f in shards.iterdir())
        out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(shards), str(model), str(tmp_path / "cache")],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        probe = json.loads(out.stdout.strip().splitlines()[-1])
        assert probe["train_tokens"] == 150_000_000
        assert probe["private_growth"] < 0.25 * set_bytes, (probe, set_bytes)
    finally:
        shutil.rmtree(shards, ignore_errors=True)


# --- text paths, data fingerprints --------------------------------------------------------------


def test_empty_text_path_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("would be trained on")
    for call in (lambda: load_corpus("text:", "byte", tmp_path / "cache"), lambda: load_documents("text:"),
                 lambda: data_fingerprint("text:", "byte", tmp_path / "cache")):
        with pytest.raises(ValueError, match=r"'text:' names no directory; give 'text:/path/to/dir'"):
            call()
    assert load_documents("text:.") == ["would be trained on"]  # the working directory, asked for explicitly


@pytest.mark.parametrize("tool_file", [".venv/lib/python3.11/site-packages/pkg/LICENSE.txt", "env/share/notes.txt",
                                       ".git/info/exclude.txt", "deps/node_modules/x/README.txt"])
def test_text_path_reaching_tool_directories_is_refused(tmp_path, tool_file):
    (tmp_path / "corpus.txt").write_text("a document")
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")  # a virtualenv not named like one
    (tmp_path / tool_file).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / tool_file).write_text("not a document")
    with pytest.raises(ValueError, match="broader than a corpus") as ei:
        load_documents(f"text:{tmp_path}")
    assert tool_file in str(ei.value) and "point 'text:' at the directory" in str(ei.value)


def _write(path: Path, text: str, mtime_ns: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime_ns is not None:  # explicit: two writes within one clock tick can share an mtime
        os.utime(path, ns=(mtime_ns, mtime_ns))


def test_fingerprint_tells_the_same_relative_text_dir_in_two_places_apart(tmp_path, monkeypatch):
    for place, text in (("a", "first corpus"), ("b", "second corpus"), ("c", "first corpus")):
        _write(tmp_path / place / "d" / "doc.txt", text)
    prints = {}
    for place in "abc":
        monkeypatch.chdir(tmp_path / place)
        prints[place] = data_fingerprint("text:d", "byte", tmp_path / "cache")
    assert prints["a"]["source"] == f"text:{tmp_path / 'a' / 'd'}"
    assert prints["a"]["data_sha256"] != prints["b"]["data_sha256"]
    assert prints["a"]["data_sha256"] == prints["c"]["data_sha256"]  # same files: same content digest...
    assert prints["a"] != prints["c"]  # ...but another directory
    assert prints["a"]["tokenizer"] == "byte" and prints["a"]["tokenizer_sha256"] is None


def test_fingerprint_follows_file_contents_and_memoises_unchanged_files(tmp_path, monkeypatch):
    doc, model = tmp_path / "d" / "doc.txt", tmp_path / "m.model"
    _write(doc, "version one", 1_000_000_000)
    model.write_bytes(b"model bytes")
    fp = lambda: data_fingerprint(f"text:{doc.parent}", f"sp:{model}", tmp_path / "cache")  # noqa: E731
    first = fp()
    assert first["tokenizer"] == f"sp:{model}" and first["tokenizer_sha256"]
    _write(doc, "version two", 2_000_000_000)  # same size, new contents
    second = fp()
    assert second["data_sha256"] != first["data_sha256"] and second["tokenizer_sha256"] == first["tokenizer_sha256"]

    def reread(path, size):
        raise AssertionError(f"{path} is unchanged: its digest must come from the memo")

    monkeypatch.setattr(data_mod, "_hash_file", reread)
    assert fp() == second


def test_fingerprint_of_fineweb_shards_reads_only_the_ends_of_large_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "FULL_HASH_MAX_BYTES", 4096)
    monkeypatch.setattr(data_mod, "SAMPLE_BYTES", 1024)  # the header is the first 1024 bytes
    fw, model = tmp_path / "fw", tmp_path / "m.model"
    model.write_bytes(b"model bytes")
    tokens = np.arange(10_000) % 1024
    write_shard(fw / "fineweb_train_000000.bin", tokens)
    write_shard(fw / "fineweb_val_000000.bin", tokens[:100])
    fp = lambda: data_fingerprint(f"fineweb:{fw}", f"sp:{model}", tmp_path)["data_sha256"]  # noqa: E731
    first = fp()
    tokens[-1] += 1  # the last token: inside the sampled tail
    write_shard(fw / "fineweb_train_000000.bin", tokens)
    os.utime(fw / "fineweb_train_000000.bin", ns=(3_000_000_000, 3_000_000_000))
    assert fp() != first


def test_edited_text_corpus_gets_its_own_tokenizer_id(tmp_path):
    """An edited corpus must not reuse the 'spN' tokenizer trained on its old text."""
    doc = tmp_path / "d" / "doc.txt"
    _write(doc, "old text", 1_000_000_000)
    src = DataSource.parse(f"text:{doc.parent}").resolved()
    before = data_mod._corpus_id(src, 0.1)
    _write(doc, "new text", 2_000_000_000)
    assert data_mod._corpus_id(src, 0.1) != before

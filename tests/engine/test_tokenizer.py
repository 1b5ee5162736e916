"""Tests for engine.tokenizer: byte/SentencePiece tokenizers, their byte LUTs, training and specs."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from engine.bpb import target_bytes
from engine.data import load_documents
from engine.tokenizer import (
    ByteTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    make_tokenizer,
    train_sentencepiece,
)

# Exercises what the LUT must get right: repeated spaces, leading/trailing space, tabs, blank lines,
# 2/3/4-byte UTF-8 characters that only byte_fallback can represent.
TRICKY = "  Leading spaces,  double  spaces\tand tabs\n\n\nnaïve café — 東京 😀 end \n "


@pytest.fixture(scope="module")
def kjv_docs() -> list[str]:
    return load_documents("kjv")


@pytest.fixture(scope="module")
def sp_model(kjv_docs, tmp_path_factory) -> Path:
    return train_sentencepiece(kjv_docs[:5], 320, tmp_path_factory.mktemp("sp") / "tiny")


def test_byte_tokenizer_encode_and_luts():
    tok = ByteTokenizer()
    assert isinstance(tok, Tokenizer)
    assert tok.name == "byte" and tok.vocab_size == 256
    assert tok.encode("aé") == [97, 0xC3, 0xA9]
    base, lead, bound = tok.luts()
    assert base.dtype == np.int16 and lead.dtype == np.bool_ and bound.dtype == np.bool_
    assert base.shape == lead.shape == bound.shape == (256,)
    assert (base == 1).all() and not lead.any() and not bound.any()


def test_sp_luts_match_hand_computed(sp_model):
    tok = SentencePieceTokenizer(sp_model)
    assert isinstance(tok, Tokenizer)
    assert tok.name == f"sp:{sp_model.resolve()}"
    assert tok.vocab_size == 320
    sp = tok.processor
    base, lead, bound = tok.luts()
    assert base.shape == lead.shape == bound.shape == (320,)
    assert base.dtype == np.int16

    def check(piece: str, nbytes: int, leading: bool, boundary: bool):
        i = sp.piece_to_id(piece)
        assert sp.id_to_piece(i) == piece, f"piece {piece!r} not in the tiny model"
        assert (int(base[i]), bool(lead[i]), bool(bound[i])) == (nbytes, leading, boundary), piece

    check("<unk>", 0, False, True)
    check("<s>", 0, False, True)
    check("</s>", 0, False, True)
    check("<0x0A>", 1, False, False)
    check("<0xC3>", 1, False, False)
    check("\u2581the", 3, True, False)  # '▁the' = space + 'the'
    check("th", 2, False, False)
    check("e", 1, False, False)
    # Pieces are identity-normalised, so every non-special piece's bytes are its UTF-8 text.
    for i in range(3 + 256, 320):
        piece = sp.id_to_piece(i)
        stripped = piece[1:] if piece.startswith("\u2581") else piece
        assert base[i] == len(stripped.encode()) and lead[i] == piece.startswith("\u2581")


def _first_token_bytes(ids, luts) -> int:
    base, lead, _ = luts
    return int(base[ids[0]]) + int(lead[ids[0]])


@pytest.mark.parametrize("which", ["byte", "sp"])
def test_target_bytes_sum_equals_text_bytes(which, sp_model, kjv_docs):
    tok = ByteTokenizer() if which == "byte" else SentencePieceTokenizer(sp_model)
    luts = tok.luts()
    # Real text unseen by the tiny model (later chapters) plus the tricky unit-test string.
    for text in ["\n\n".join(kjv_docs[500:510]), TRICKY, "a", "\u00e9 x"]:
        ids = np.asarray(tok.encode(text))
        assert tok.decode(ids) == text  # encoding is lossless, so byte counts can be exact
        got = int(target_bytes(ids[:-1], ids[1:], *luts).sum())
        assert got == len(text.encode("utf-8")) - _first_token_bytes(ids, luts), (which, text[:40])


def test_train_sentencepiece_deterministic_and_atomic(kjv_docs, tmp_path):
    a = train_sentencepiece(kjv_docs[:3], 330, tmp_path / "a")
    b = train_sentencepiece(kjv_docs[:3], 330, tmp_path / "b")
    assert a == tmp_path / "a.model" and a.read_bytes() == b.read_bytes()
    assert (tmp_path / "a.vocab").is_file()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["a.model", "a.vocab", "b.model", "b.vocab"]  # no temp dirs left behind


def test_train_sentencepiece_errors(kjv_docs, tmp_path):
    with pytest.raises(ValueError, match="vocab_size=128"):
        train_sentencepiece(kjv_docs[:3], 128, tmp_path / "x")
    with pytest.raises(ValueError, match="failed"):  # more pieces than a tiny text can provide
        train_sentencepiece(["In the beginning"], 5000, tmp_path / "y")
    assert not list(tmp_path.glob("*.model"))


@pytest.mark.parametrize("spec", ["bytes", "sp", "sp-512", "bpe512", "sp12", "sp70000", "", "sp:"])
def test_make_tokenizer_unknown_spec(spec, tmp_path):
    with pytest.raises(ValueError) as ei:
        make_tokenizer(spec, None, tmp_path)
    msg = str(ei.value)
    assert repr(spec) in msg
    if spec not in ("sp12", "sp70000", "sp:"):
        assert "'byte'" in msg and "spN" in msg


def test_make_tokenizer_spn_needs_texts(tmp_path):
    with pytest.raises(ValueError, match="train_texts=None"):
        make_tokenizer("sp320", None, tmp_path)


def test_make_tokenizer_byte_and_path(sp_model, tmp_path):
    assert make_tokenizer("byte", None, tmp_path).name == "byte"
    tok = make_tokenizer(f"sp:{sp_model}", None, tmp_path)
    assert tok.vocab_size == 320 and tok.name == f"sp:{sp_model.resolve()}"


def test_make_tokenizer_trains_once_under_concurrency(kjv_docs, tmp_path):
    calls = []

    def texts():
        calls.append(1)
        return kjv_docs[:3]

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(make_tokenizer("sp330", texts, tmp_path, corpus_id="kjvtest")))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert [r.name for r in results] == ["sp330"] * 3
    assert (tmp_path / "tokenizers" / "kjvtest-sp330.model").is_file()
    again = make_tokenizer("sp330", texts, tmp_path, corpus_id="kjvtest")
    assert len(calls) == 1 and again.encode("And God said") == results[0].encode("And God said")


def test_sentencepiece_tokenizer_missing_or_bad_file(tmp_path):
    missing = tmp_path / "nope.model"
    with pytest.raises(ValueError, match="nope.model"):
        SentencePieceTokenizer(missing)
    with pytest.raises(ValueError, match="nope.model"):
        make_tokenizer(f"sp:{missing}", None, tmp_path)
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.model"):
        SentencePieceTokenizer(junk)

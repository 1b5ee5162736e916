"""Tests for engine.bpb: per-target byte counts, bits per byte, unigram baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.bpb import bits_per_byte, target_bytes, unigram_entropy_bpb

# Hand-made vocab: 0 '<s>' (control: boundary, 0 bytes), 1 '▁the', 2 'cat', 3 '<0x0A>' (byte), 4 '▁'.
BASE = np.array([0, 3, 3, 1, 0], dtype=np.int16)
LEAD = np.array([False, True, False, False, True])
BOUND = np.array([True, False, False, False, False])
SEQ = [0, 1, 2, 3, 4, 1, 0, 1]
# Targets: '▁the' after <s> -> 3 (no space: boundary before it), 'cat' -> 3, '\n' -> 1, '▁' after '\n'
# -> 0+1, '▁the' after '▁' -> 3+1, '<s>' -> 0, '▁the' after <s> -> 3.
EXPECTED = [3, 3, 1, 1, 4, 0, 3]


def test_target_bytes_numpy_hand_example():
    ids = np.array(SEQ)
    got = target_bytes(ids[:-1], ids[1:], BASE, LEAD, BOUND)
    assert isinstance(got, np.ndarray) and got.dtype == np.int64
    assert got.tolist() == EXPECTED


def test_target_bytes_torch_batched():
    ids = torch.tensor([SEQ, SEQ])
    luts = [torch.from_numpy(a) for a in (BASE, LEAD, BOUND)]
    for lut_args in (luts, (BASE, LEAD, BOUND)):  # torch or numpy LUTs both work with torch ids
        got = target_bytes(ids[:, :-1], ids[:, 1:], *lut_args)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.int64
        assert got.tolist() == [EXPECTED, EXPECTED]


def test_target_bytes_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        target_bytes(np.array([0, 1]), np.array([1]), BASE, LEAD, BOUND)


def test_bits_per_byte_hand_example():
    # 10 bits of loss (10 ln 2 nats) over 5 bytes = 2 bits/byte.
    assert bits_per_byte(10 * math.log(2), 5) == pytest.approx(2.0)
    assert bits_per_byte(torch.tensor(math.log(2)), torch.tensor(4.0)) == pytest.approx(0.25)
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="n_bytes"):
            bits_per_byte(1.0, bad)


def test_unigram_entropy_bpb_hand_example():
    # counts+1 over vocab 3 from train [0,0,1] = [3,2,1] / 6; val targets are [0, 1] (val[0] is context).
    expected = (math.log(2) + math.log(3)) / math.log(2) / 2
    got = unigram_entropy_bpb(np.array([0, 0, 1]), np.array([2, 0, 1]), 3, 2)
    assert got == pytest.approx(expected)
    assert unigram_entropy_bpb(torch.tensor([0, 0, 1]), torch.tensor([2, 0, 1]), 3, 2) == pytest.approx(expected)
    with pytest.raises(ValueError, match="vocab_size=3"):
        unigram_entropy_bpb(np.array([0, 5]), np.array([0, 1]), 3, 2)


def test_unigram_uniform_is_log2_vocab():
    # With no training data the add-one model is uniform: log2(V) bits per token; 1 byte per token.
    assert unigram_entropy_bpb(np.array([], dtype=np.int64), np.arange(9) % 4, 4, 8) == pytest.approx(2.0)

"""Bits-per-byte accounting: pure functions, no I/O.

Owns: `target_bytes` (UTF-8 bytes each target token stands for, from a tokenizer's lookup tables, the
same rule as parameter-golf's eval_val), `bits_per_byte` (nats summed over targets -> bits per byte) and
`unigram_entropy_bpb` (the add-one-smoothed unigram baseline a trained model must beat).

Everything accepts numpy arrays or torch tensors; torch in, torch out (on the ids' device), so the
eval loop can use it on GPU without a host round trip. Pass the LUTs already as tensors on that device
to avoid re-uploading them every batch.
"""

from __future__ import annotations

import math
import sys

import numpy as np


def _is_torch(x) -> bool:
    # If torch was never imported, x cannot be a tensor; numpy-only callers never pay for the import.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def target_bytes(prev_ids, tgt_ids, base_bytes, has_leading_space, is_boundary):
    """Bytes of text covered by each target token, given the token before it.

    bytes = base_bytes[tgt] + (has_leading_space[tgt] and not is_boundary[prev]): a '▁' on a piece
    is one space byte, except right after a boundary (control/unknown) token, where parameter-golf
    treats it as the dummy prefix SentencePiece inserts at the start of a text.
    Returns int64 with the shape of `tgt_ids` (torch tensor if `tgt_ids` is one, else numpy).
    """
    if tuple(prev_ids.shape) != tuple(tgt_ids.shape):
        raise ValueError(
            f"prev_ids shape {tuple(prev_ids.shape)} != tgt_ids shape {tuple(tgt_ids.shape)}; "
            "prev_ids must be the tokens immediately before each target (e.g. x and y of a batch)."
        )
    if _is_torch(tgt_ids):
        import torch

        dev = tgt_ids.device
        base = torch.as_tensor(base_bytes, device=dev)
        lead = torch.as_tensor(has_leading_space, device=dev, dtype=torch.bool)
        bound = torch.as_tensor(is_boundary, device=dev, dtype=torch.bool)
        tgt = tgt_ids.long()
        prev = torch.as_tensor(prev_ids, device=dev).long()
        return base[tgt].long() + (lead[tgt] & ~bound[prev]).long()
    tgt = np.asarray(tgt_ids)
    prev = np.asarray(prev_ids)
    base = np.asarray(base_bytes)
    lead = np.asarray(has_leading_space, dtype=np.bool_)
    bound = np.asarray(is_boundary, dtype=np.bool_)
    return base[tgt].astype(np.int64) + (lead[tgt] & ~bound[prev]).astype(np.int64)


def bits_per_byte(loss_sum_nats: float, n_bytes: float) -> float:
    """Summed cross-entropy in nats over some targets -> bits per byte of the text they cover."""
    n_bytes = float(n_bytes)
    if not n_bytes > 0:
        raise ValueError(
            f"n_bytes must be > 0 to compute bits per byte, got {n_bytes!r} "
            "(no target bytes were counted: is the val set empty?)"
        )
    return float(loss_sum_nats) / math.log(2) / n_bytes


def _to_numpy(x) -> np.ndarray:
    if _is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def unigram_entropy_bpb(train_tokens, val_tokens, vocab_size, val_bytes) -> float:
    """Bits per byte of an add-one-smoothed unigram model fit on `train_tokens`, scored on val.

    Scores val_tokens[1:] (the targets: the first token is never predicted), the same targets whose
    bytes `Corpus.val_bytes` counts, so pass that value as `val_bytes`.
    """
    vocab_size = int(vocab_size)
    train = _to_numpy(train_tokens).reshape(-1).astype(np.int64, copy=False)
    val = _to_numpy(val_tokens).reshape(-1).astype(np.int64, copy=False)
    if val.size < 2:
        raise ValueError(f"val_tokens needs at least 2 tokens (one target), got {val.size}")
    for name, arr in (("train_tokens", train), ("val_tokens", val)):
        if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
            raise ValueError(
                f"{name} has ids in [{arr.min()}, {arr.max()}], outside 0..{vocab_size - 1} (vocab_size={vocab_size})"
            )
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64) + 1.0
    log_p = np.log(counts) - math.log(counts.sum())
    loss_sum = -float(log_p[val[1:]].sum())
    return bits_per_byte(loss_sum, val_bytes)

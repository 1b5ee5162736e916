"""Tokenizers and the byte-count lookup tables behind bits-per-byte.

Owns: the `Tokenizer` protocol, the UTF-8 `ByteTokenizer`, the `SentencePieceTokenizer` wrapper,
training of small SentencePiece BPE models (`train_sentencepiece`), and `make_tokenizer`, which turns a
spec string ('byte' | 'spN' | 'sp:/path/model.model') into a tokenizer, training and caching 'spN' models
once per corpus.

The lookup tables returned by `luts()` follow parameter-golf's `build_sentencepiece_luts` exactly, so a
val_bpb computed here is comparable with theirs.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from engine.atomic import atomic_write

logger = logging.getLogger(__name__)

# SentencePiece reserves <unk>, <s>, </s> plus 256 byte pieces when byte_fallback is on; a vocab
# at or below this size has no room for a single learned piece.
SP_RESERVED_IDS = 3 + 256
SP_MIN_VOCAB = SP_RESERVED_IDS + 1
SP_MAX_VOCAB = 65536  # token ids must fit the uint16 shard format

# SentencePiece drops training sentences longer than its max_sentence_length (4192 bytes by
# default); chunking long lines at spaces keeps long-paragraph corpora fully represented.
_MAX_TRAIN_LINE_BYTES = 4000

_SPEC_HELP = "'byte', 'spN' (N an integer vocab size, e.g. 'sp512') or 'sp:/path/to/model.model'"


@runtime_checkable
class Tokenizer(Protocol):
    name: str
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def luts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(base_bytes int16[vocab], has_leading_space bool[vocab], is_boundary bool[vocab])."""
        ...


def _readonly(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    # The tables are shared by every caller of luts(); freezing them turns an accidental
    # in-place edit into an error instead of silently corrupting everyone's byte counts.
    for a in arrays:
        a.flags.writeable = False
    return arrays


class ByteTokenizer:
    """UTF-8 bytes as tokens: vocab 256, every token is exactly one byte."""

    name = "byte"
    vocab_size = 256

    def __init__(self) -> None:
        self._luts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_array(self, text: str) -> np.ndarray:
        """Fast path for whole corpora: avoids building a Python list of millions of ints."""
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def luts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._luts is None:
            self._luts = _readonly(
                np.ones(256, dtype=np.int16),
                np.zeros(256, dtype=np.bool_),
                np.zeros(256, dtype=np.bool_),
            )
        return self._luts

    def __repr__(self) -> str:
        return "ByteTokenizer()"


class SentencePieceTokenizer:
    """A SentencePiece model loaded from a .model file."""

    def __init__(self, model_path: str | Path, name: str | None = None) -> None:
        import sentencepiece as spm  # deferred: keeps `import engine.tokenizer` cheap

        path = Path(model_path).expanduser()
        if not path.is_file():
            raise ValueError(
                f"SentencePiece model file not found: {str(path)!r}. Pass the path of an existing "
                "'.model' file (as written by sentencepiece training), or use tokenizer spec 'spN' "
                "to train one on the corpus."
            )
        try:
            self._sp = spm.SentencePieceProcessor(model_file=str(path))
        except Exception as exc:  # sentencepiece raises OSError/RuntimeError depending on version
            raise ValueError(
                f"could not load SentencePiece model {str(path)!r}: {exc}. The file must be a "
                "serialized SentencePiece ModelProto ('.model', not the '.vocab' text file)."
            ) from exc
        self.model_path = path.resolve()
        self.name = name if name is not None else f"sp:{self.model_path}"
        self.vocab_size = int(self._sp.vocab_size())
        self._luts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def processor(self):
        return self._sp

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text, out_type=int)

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self._sp.encode(text, out_type=int), dtype=np.int32)

    def decode(self, ids) -> str:
        return self._sp.decode([int(i) for i in ids])

    def id_to_piece(self, token_id: int) -> str:
        return self._sp.id_to_piece(int(token_id))

    def luts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._luts is None:
            self._luts = _readonly(*build_sentencepiece_luts(self._sp, self.vocab_size))
        return self._luts

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer({str(self.model_path)!r}, name={self.name!r})"


def build_sentencepiece_luts(sp, vocab_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """parameter-golf's build_sentencepiece_luts, numpy-only (no device argument)."""
    sp_vocab_size = int(sp.vocab_size())
    table_size = max(sp_vocab_size, int(vocab_size))
    base_bytes = np.zeros((table_size,), dtype=np.int16)
    has_leading_space = np.zeros((table_size,), dtype=np.bool_)
    # Ids past the model's vocab (padding of an embedding table) can never be produced by the
    # model's text; treating them as boundaries with 0 bytes keeps them out of the byte count.
    is_boundary = np.ones((table_size,), dtype=np.bool_)
    for token_id in range(sp_vocab_size):
        if sp.is_control(token_id) or sp.is_unknown(token_id) or sp.is_unused(token_id):
            continue
        is_boundary[token_id] = False
        if sp.is_byte(token_id):
            base_bytes[token_id] = 1
            continue
        piece = sp.id_to_piece(token_id)
        if piece.startswith("\u2581"):
            has_leading_space[token_id] = True
            piece = piece[1:]
        base_bytes[token_id] = len(piece.encode("utf-8"))
    return base_bytes, has_leading_space, is_boundary


def _training_lines(texts: list[str]):
    for text in texts:
        for line in text.split("\n"):
            while len(line.encode("utf-8")) > _MAX_TRAIN_LINE_BYTES:
                # Cut on a character boundary before the byte limit, preferring the last space
                # so words are not split in two.
                head = line.encode("utf-8")[:_MAX_TRAIN_LINE_BYTES].decode("utf-8", errors="ignore")
                cut = head.rfind(" ")
                cut = cut if cut > 0 else len(head)
                yield line[:cut]
                line = line[cut:]
            if line:
                yield line


def train_sentencepiece(texts: list[str], vocab_size: int, out_prefix: Path) -> Path:
    """Train a BPE model on `texts`; write `<out_prefix>.model` (and `.vocab`) and return the .model path.

    Settings are chosen so byte counts from `luts()` are exact for any UTF-8 text:
    byte_fallback (every byte representable, no <unk>), identity normalisation, no whitespace
    collapsing and no dummy prefix (so every '▁' in a piece stands for a real space in the text).
    num_threads=1 and using every sentence make the result deterministic for given texts.
    Written atomically (`engine.atomic`): each file goes to a temp file beside it, then is renamed into place.
    """
    import sentencepiece as spm

    vocab_size = int(vocab_size)
    if not SP_MIN_VOCAB <= vocab_size <= SP_MAX_VOCAB:
        raise ValueError(
            f"vocab_size={vocab_size} is out of range: with byte_fallback SentencePiece reserves "
            f"{SP_RESERVED_IDS} ids (3 specials + 256 bytes), so vocab_size must be in "
            f"{SP_MIN_VOCAB}..{SP_MAX_VOCAB} (and large enough to hold every distinct character too)."
        )
    lines = list(_training_lines(texts))
    if not lines:
        raise ValueError("train_sentencepiece got no text: pass a non-empty list of non-empty strings.")
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    # Trained into memory (model_writer) rather than via model_prefix: SentencePiece records the
    # prefix inside the model, which would make the bytes depend on the temp location.
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=buf,
            model_type="bpe",
            vocab_size=vocab_size,
            byte_fallback=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=False,
            character_coverage=0.9995,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise ValueError(
            f"SentencePiece training of a {vocab_size}-piece BPE model for {str(out_prefix)!r} "
            f"failed on {len(lines)} lines ({sum(len(l) for l in lines)} chars): {exc}"
        ) from exc
    model_bytes = buf.getvalue()
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    vocab_text = "".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n" for i in range(sp.vocab_size()))
    model_path = out_prefix.with_name(out_prefix.name + ".model")
    # .vocab (for humans) first: the .model file appearing is what readers treat as "done".
    atomic_write(out_prefix.with_name(out_prefix.name + ".vocab"), vocab_text.encode("utf-8"))
    atomic_write(model_path, model_bytes)
    logger.info("trained SentencePiece BPE vocab=%d on %d lines -> %s", vocab_size, len(lines), model_path)
    return model_path


def texts_fingerprint(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:16]


def parse_spec(spec: str) -> tuple[str, int | str | None]:
    """('byte', None) | ('spN', N) | ('sp:', Path string). ValueError for anything else."""
    if not isinstance(spec, str):
        raise ValueError(f"tokenizer spec must be a string, got {spec!r}; allowed: {_SPEC_HELP}")
    if spec == "byte":
        return "byte", None
    if spec.startswith("sp:"):
        path = spec[3:]
        if not path:
            raise ValueError(f"tokenizer spec {spec!r} has no path; use 'sp:/path/to/model.model'")
        return "sp:", path
    m = re.fullmatch(r"sp(\d+)", spec)
    if m:
        n = int(m.group(1))
        if not SP_MIN_VOCAB <= n <= SP_MAX_VOCAB:
            raise ValueError(
                f"tokenizer spec {spec!r}: vocab size {n} is out of range {SP_MIN_VOCAB}..{SP_MAX_VOCAB} "
                f"(byte_fallback BPE reserves {SP_RESERVED_IDS} ids for 3 specials + 256 bytes; ids must "
                "fit in uint16)."
            )
        return "spN", n
    raise ValueError(f"unknown tokenizer spec {spec!r}; allowed: {_SPEC_HELP}")


def make_tokenizer(
    spec: str,
    train_texts: Callable[[], list[str]] | None,
    cache_dir: Path,
    *,
    corpus_id: str | None = None,
) -> Tokenizer:
    """Build the tokenizer named by `spec`.

    'byte' -> ByteTokenizer. 'sp:/path/model.model' -> that model. 'spN' -> an N-piece BPE trained on
    `train_texts()` (called only when the model is not cached yet), stored at
    cache_dir/'tokenizers'/f'{corpus_id}-sp{N}.model' under a file lock so concurrent processes train
    it once. `corpus_id` names the training text (load_corpus passes one that includes the split); if
    omitted it is a hash of the training texts, which forces loading them.
    """
    kind, arg = parse_spec(spec)
    if kind == "byte":
        return ByteTokenizer()
    if kind == "sp:":
        return SentencePieceTokenizer(Path(str(arg)).expanduser().resolve())
    n = int(arg)  # type: ignore[arg-type]
    if train_texts is None:
        raise ValueError(
            f"tokenizer spec {spec!r} trains a model on the corpus, but no training texts were given "
            "(train_texts=None); this happens for pre-tokenized data such as 'fineweb:' shards, which "
            "need 'sp:/path/to/model.model' instead."
        )
    texts: list[str] | None = None
    if corpus_id is None:
        texts = train_texts()
        corpus_id = f"texts-{texts_fingerprint(texts)}"
    if not re.fullmatch(r"[A-Za-z0-9._-]+", corpus_id):
        raise ValueError(f"corpus_id {corpus_id!r} must be a file-name-safe string ([A-Za-z0-9._-]+)")
    from filelock import FileLock

    tok_dir = Path(cache_dir) / "tokenizers"
    tok_dir.mkdir(parents=True, exist_ok=True)
    prefix = tok_dir / f"{corpus_id}-sp{n}"
    model_path = prefix.with_name(prefix.name + ".model")
    if not model_path.is_file():
        with FileLock(str(prefix) + ".lock"):
            if not model_path.is_file():  # another process may have trained it while we waited
                if texts is None:
                    texts = train_texts()
                train_sentencepiece(texts, n, prefix)
    return SentencePieceTokenizer(model_path, name=f"sp{n}")

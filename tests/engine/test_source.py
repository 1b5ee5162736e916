"""engine.source: the data string parsed once; canonical spellings keep the token-cache keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.source import DataSource
from engine.spec import RunSpec


@pytest.mark.parametrize("text, kind, pretokenised", [
    ("kjv", "kjv", False), ("text:/corpus/dir", "text", False), ("fineweb:/shards", "fineweb", True),
])
def test_parse_kinds_and_round_trip(text, kind, pretokenised):
    src = DataSource.parse(text)
    assert src.kind == kind and src.pretokenised is pretokenised and src.has_documents is not pretokenised
    assert str(src) == text  # absolute paths print as given


@pytest.mark.parametrize("bad", ["bible", "s3://bucket", "txt:/x", "", 3, None])
def test_unknown_sources_name_the_value_and_the_spellings(bad):
    with pytest.raises(ValueError, match="unknown data source .*'kjv'"):
        DataSource.parse(bad)


def test_resolved_is_the_canonical_spelling(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c").mkdir()
    a, b = DataSource.parse("text:c").resolved(), DataSource.parse(f"text:{tmp_path}/./c").resolved()
    assert a == b and str(a) == f"text:{(tmp_path / 'c').resolve()}"
    assert DataSource.parse("kjv").resolved() == DataSource("kjv")
    assert DataSource.parse("text:~/x").path == Path.home() / "x"


def test_spec_exposes_the_parsed_source_without_changing_its_identity():
    spec = RunSpec(size="t20k", data="text:/some/dir")
    assert spec.source == DataSource("text", Path("/some/dir"))
    assert spec.to_dict()["data"] == "text:/some/dir"

"""Tests for engine.fineweb: `python -m engine data fineweb`, offline.

The hub is a local mirror of the export's layout (written with write_shard) behind the one
function that calls huggingface_hub, except where the real library is asked in offline mode.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from engine import fineweb
from engine.cli import Parser
from engine.data import load_corpus, load_documents, read_shard, write_shard
from engine.fineweb import add_data_parser, download_fineweb
from engine.tokenizer import train_sentencepiece

REPO = Path(__file__).resolve().parents[2]
DATASET = "datasets/fineweb10B_sp1024"
SHARD_TOKENS = {"fineweb_val_000000.bin": 500, "fineweb_train_000000.bin": 700, "fineweb_train_000001.bin": 300,
                "fineweb_train_000002.bin": 400}


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory) -> Path:
    return train_sentencepiece(load_documents("kjv")[:5], 320, tmp_path_factory.mktemp("sp") / "tiny")


@pytest.fixture
def mirror(tmp_path, sp_model) -> Path:
    """The hub repository's export root ('datasets/' in it), as parameter-golf publishes it."""
    root = tmp_path / "hub" / fineweb.REMOTE_ROOT
    rng = np.random.default_rng(0)
    for name, n in SHARD_TOKENS.items():
        write_shard(root / DATASET / name, rng.integers(0, 320, size=n))
    (root / "tokenizers").mkdir()
    shutil.copy(sp_model, root / "tokenizers" / "fineweb_1024_bpe.model")
    shutil.copy(sp_model.with_suffix(".vocab"), root / "tokenizers" / "fineweb_1024_bpe.vocab")
    manifest = {
        "datasets": [{"name": "fineweb10B_sp1024", "tokenizer_name": "sp_bpe_1024",
                      "stats": {"files_train": 3, "files_val": 1}}],
        "tokenizers": [{"name": "sp_bpe_1024", "model_path": "tokenizers/fineweb_1024_bpe.model",
                        "vocab_path": "tokenizers/fineweb_1024_bpe.vocab"}],
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture
def hub(monkeypatch, mirror) -> list:
    """Serve the mirror in place of the Hugging Face hub; the list records each (file, force_download) asked for."""
    calls = []

    def fetch(repo_id, remote, force):
        assert repo_id == fineweb.REPO_ID and remote.startswith(fineweb.REMOTE_ROOT + "/")
        calls.append((remote.removeprefix(fineweb.REMOTE_ROOT + "/"), force))
        return mirror.parent / remote

    monkeypatch.setattr(fineweb, "_hub_fetch", fetch)
    return calls


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """The directory the command runs from: the paper profile's paths are relative to it."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def cli(*argv: str) -> int:
    """`python -m engine data fineweb ...` through the argparse handler, as engine.cli wires it."""
    parser = Parser(prog="python -m engine")
    add_data_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", "fineweb", *argv])
    return args.func(args)


def replace_with_prefix(path: Path, n_bytes: int) -> None:
    """A truncated copy at `path`. Written as a new file: the old one may be a hard link to the hub cache."""
    head = path.read_bytes()[:n_bytes]
    path.unlink()
    path.write_bytes(head)


def test_download_lands_where_the_paper_profile_reads(hub, workdir, mirror, capsys):
    assert cli("--train-shards", "2") == 0
    paper = tomllib.loads((REPO / "fixtures" / "profiles" / "paper.toml").read_text())["defaults"]
    out = capsys.readouterr().out
    assert f'data = "{paper["data"]}", tokenizer = "{paper["tokenizer"]}"' in out
    data_dir = Path(paper["data"].removeprefix("fineweb:"))
    assert sorted(p.name for p in data_dir.iterdir()) == ["fineweb_train_000000.bin", "fineweb_train_000001.bin",
                                                          "fineweb_val_000000.bin"]  # the first 2 train shards
    for p in data_dir.iterdir():
        assert p.read_bytes() == (mirror / DATASET / p.name).read_bytes()
    corpus = load_corpus(paper["data"], paper["tokenizer"], workdir / "cache")
    assert len(corpus.train) == 700 + 300 and len(corpus.val) == 500
    assert np.array_equal(corpus.val[:], read_shard(mirror / DATASET / "fineweb_val_000000.bin"))
    assert (workdir / "data" / "tokenizers" / "fineweb_1024_bpe.vocab").is_file()
    assert not list(workdir.rglob(".partial.*"))


def test_second_download_fetches_nothing(hub, workdir):
    first = download_fineweb(train_shards=3)
    assert len(first.fetched) == 1 + 2 + 4 and not first.present  # manifest, tokenizer .model/.vocab, 4 shards
    hub.clear()
    again = download_fineweb(train_shards=3)
    assert hub == [] and again.fetched == [] and sorted(again.present) == sorted(first.fetched)
    assert again.data == first.data == "fineweb:data/datasets/fineweb10B_sp1024"
    assert again.tokenizer == "sp:data/tokenizers/fineweb_1024_bpe.model"


def test_truncated_shard_in_destination_is_fetched_again(hub, workdir):
    download_fineweb(train_shards=3)
    shard = workdir / "data" / DATASET / "fineweb_train_000001.bin"
    replace_with_prefix(shard, 1024 + 100)  # an interrupted copy: the header promises 300 tokens
    (workdir / "data" / DATASET / ".partial.fineweb_train_000002.bin").write_bytes(b"left by a killed run")
    hub.clear()
    report = download_fineweb(train_shards=3)
    assert hub == [(f"{DATASET}/fineweb_train_000001.bin", False)]
    assert report.fetched == [Path("data") / DATASET / shard.name]
    assert read_shard(shard).size == 300


def test_truncated_shard_from_the_hub_is_an_error_naming_it(hub, workdir, mirror, capsys):
    replace_with_prefix(mirror / DATASET / "fineweb_train_000001.bin", 1024 + 10)
    assert cli("--train-shards", "3") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {DATASET}/fineweb_train_000001.bin fetched from ")
    assert "truncated" in err and "copy a good file by hand" in err
    assert hub[-2:] == [(f"{DATASET}/fineweb_train_000001.bin", False), (f"{DATASET}/fineweb_train_000001.bin", True)]
    assert not (workdir / "data" / DATASET / "fineweb_train_000001.bin").exists()
    assert not list(workdir.rglob(".partial.*"))


def _offline_hub(monkeypatch, tmp_path):
    # The real library in offline mode: it answers as when the hub does not answer.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def _refused_connection(monkeypatch, tmp_path):
    # What hf_hub_download raises when the connection is refused and the file is not cached (probed
    # with huggingface_hub 2.4 against a closed port: after its retries).
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def refused(*args, **kwargs):
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub ...")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refused)


@pytest.mark.parametrize("no_hub", [_offline_hub, _refused_connection], ids=["offline", "connection-refused"])
def test_unreachable_hub_is_one_error_line(no_hub, workdir, monkeypatch, tmp_path, capsys):
    no_hub(monkeypatch, tmp_path)
    assert cli() == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: cannot reach the Hugging Face hub (https://huggingface.co) for dataset "
                          "'willdepueoai/parameter-golf': this machine needs network access to the hub; otherwise copy "
                          f"the files by hand into {Path('data') / DATASET}/ and {Path('data') / 'tokenizers'}/")
    with pytest.raises(ValueError, match="cannot reach the Hugging Face hub"):
        download_fineweb()
    assert not (workdir / "data").exists()


def test_bad_requests_are_one_error_line(hub, workdir, capsys):
    with pytest.raises(SystemExit) as ei:
        cli("--variant", "gpt2")
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: argument --variant: unknown FineWeb variant 'gpt2'")
    assert cli("--train-shards", "5") == 2
    assert capsys.readouterr().err == ("error: --train-shards 5: willdepueoai/parameter-golf publishes 3 train shards "
                                       "of fineweb10B_sp1024\n")
    assert cli("--variant", "sp4096") == 2
    assert "lists no dataset 'fineweb10B_sp4096'" in capsys.readouterr().err


def test_engine_imports_without_huggingface_hub(monkeypatch, workdir):
    probe = "import sys, engine.cli, engine.data, engine.fineweb; print('huggingface_hub' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if not installed
    with pytest.raises(ValueError, match=r"needs the package huggingface_hub: pip install 'huggingface_hub>=0.24'"):
        download_fineweb()


def test_check_reads_what_is_in_place_and_names_what_is_missing(hub, workdir, capsys):
    """`data fineweb --check` (scripts/gpu_check.sh's data step): no download, every shard checked."""
    assert cli("--check") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "fineweb10B_sp1024" in err
    download_fineweb(train_shards=3)
    hub.clear()
    assert cli("--check") == 0 and hub == []
    assert "1,400 train and 500 val tokens" in capsys.readouterr().out
    replace_with_prefix(workdir / "data" / DATASET / "fineweb_train_000002.bin", 1024 + 8)
    assert cli("--check") == 2 and "fineweb_train_000002.bin" in capsys.readouterr().err

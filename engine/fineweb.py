"""`python -m engine data fineweb`: fetch parameter-golf's published FineWeb shards and tokenizer.

Owns: where that export lives on the Hugging Face hub and how it is laid out (a manifest naming each
variant's shard counts and tokenizer files, the shards under datasets/fineweb10B_<variant>/), the
download into the layout the paper profile reads (data/datasets/fineweb10B_sp1024/ and
data/tokenizers/, relative to the working directory), resuming, and checking every shard's header
against its size. huggingface_hub is imported only when a download runs, so the engine imports
without it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from engine.data import shard_token_count

log = logging.getLogger(__name__)

# parameter-golf's data/cached_challenge_fineweb.py: its default repository, the export's root
# folder in it, and its default train-shard count (80 x 100M tokens = 8B, all of its baseline's data).
REPO_ID = "willdepueoai/parameter-golf"
REMOTE_ROOT = "datasets"
DEFAULT_TRAIN_SHARDS = 80
DEFAULT_DEST = Path("data")  # the paper profile's data and tokenizer paths live under ./data
VARIANTS = re.compile(r"sp\d+|byte260")  # the variants that script knows: SentencePiece vocabularies, raw bytes
MANIFEST = "manifest.json"


class HubUnreachable(Exception):
    """The hub did not answer (no network, offline mode, a proxy): the download cannot go on."""


@dataclass
class Download:
    """What `download_fineweb` did: every file it fetched and every one it found already in place."""

    data: str  # the RunSpec.data spelling of the downloaded shards
    tokenizer: str | None  # the RunSpec.tokenizer spelling ('sp:...'); None for byte260 (no SentencePiece model)
    fetched: list[Path] = field(default_factory=list)
    present: list[Path] = field(default_factory=list)


def dataset_name(variant: str) -> str:
    if not VARIANTS.fullmatch(variant):
        raise ValueError(f"unknown FineWeb variant {variant!r}; parameter-golf publishes sp<VOCAB> "
                         "(sp1024, the paper's, sp4096, ...) and byte260")
    return f"fineweb10B_{variant}"


def download_fineweb(dest: Path = DEFAULT_DEST, variant: str = "sp1024", train_shards: int = DEFAULT_TRAIN_SHARDS,
                     repo_id: str = REPO_ID) -> Download:
    """Fetch the variant's val shards, its first `train_shards` train shards and its tokenizer into `dest`.

    dest gets parameter-golf's layout: manifest.json, datasets/fineweb10B_<variant>/fineweb_*.bin and
    tokenizers/. A file already there that checks out (shard header against size, the model loads)
    is kept, so a rerun resumes; a missing, partial or damaged one is fetched. Every file lands
    whole or not at all. ValueError (one line naming the file or the repository, and the fix)
    when the hub cannot be reached, lacks a file, or serves a damaged one.
    """
    dest, name = Path(dest), dataset_name(variant)
    report = Download(f"fineweb:{dest / 'datasets' / name}", None)
    try:
        manifest = _get(repo_id, MANIFEST, dest, report)
        for rel in _wanted_files(json.loads(manifest.read_text()), name, train_shards, repo_id):
            path = _get(repo_id, rel, dest, report)
            if path.suffix == ".model":
                report.tokenizer = f"sp:{path}"
    except HubUnreachable as e:
        raise ValueError(
            f"cannot reach the Hugging Face hub ({e}) for dataset {repo_id!r}: this machine needs network "
            f"access to the hub; otherwise copy the files by hand into {dest / 'datasets' / name}/ and "
            f"{dest / 'tokenizers'}/ (and the manifest to {dest / MANIFEST})"
        ) from None
    return report


def _wanted_files(manifest: dict, name: str, train_shards: int, repo_id: str) -> list[str]:
    """The paths, relative to the export's root, of the variant's tokenizer files and shards."""
    try:
        entry = next(d for d in manifest["datasets"] if d["name"] == name)
        n_train, n_val = int(entry["stats"]["files_train"]), int(entry["stats"]["files_val"])
        tok = next(t for t in manifest["tokenizers"] if t["name"] == entry["tokenizer_name"])
    except (KeyError, TypeError, ValueError, StopIteration):
        raise ValueError(f"{repo_id}'s {MANIFEST} lists no dataset {name!r} with its shard counts and tokenizer; "
                         "check --variant, or --repo-id if it is not parameter-golf's export") from None
    if train_shards > n_train:
        raise ValueError(f"--train-shards {train_shards}: {repo_id} publishes {n_train} train shards of {name}")
    tokenizer = [_inside(str(tok[k])) for k in ("model_path", "vocab_path", "path") if tok.get(k)]
    val = [f"datasets/{name}/fineweb_val_{i:06d}.bin" for i in range(n_val)]
    train = [f"datasets/{name}/fineweb_train_{i:06d}.bin" for i in range(train_shards)]
    return tokenizer + val + train


def _inside(rel: str) -> str:
    # The manifest names the tokenizer files; a path leaving dest would write outside it.
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts:
        raise ValueError(f"the manifest names the file {rel!r}, outside the download folder; refusing to write it")
    return str(p)


def _get(repo_id: str, rel: str, dest: Path, report: Download) -> Path:
    """dest/rel, fetched from the hub unless it is already there and checks out."""
    target = dest / rel
    if _problem(target) is None:
        report.present.append(target)
        return target
    # Hidden from the loader's fineweb_*.bin; the same suffix, so it is checked as what it will be.
    partial = target.with_name(f".partial.{target.name}")
    for force in (False, True):  # a damaged copy in the hub cache is fetched anew, once
        log.info("fetching %s from %s", rel, repo_id)
        _place(_hub_fetch(repo_id, f"{REMOTE_ROOT}/{rel}", force), partial)
        problem = _problem(partial)
        if problem is None:
            os.replace(partial, target)
            report.fetched.append(target)
            return target
    partial.unlink()
    raise ValueError(f"{rel} fetched from {repo_id} is damaged ({problem}), twice; the hub's copy or the "
                     f"transfer is bad: retry later, or copy a good file by hand to {target}")


def _problem(path: Path) -> str | None:
    """Why `path` is not a usable copy (missing, truncated, not what its name says), or None."""
    if not path.is_file() or path.stat().st_size == 0:
        return "missing or empty"
    try:
        if path.suffix == ".bin":
            shard_token_count(path)  # header and exact size; the tokens are never read
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".model":
            import sentencepiece

            sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (ValueError, RuntimeError, OSError) as e:  # json: ValueError; sentencepiece: RuntimeError/OSError
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return None


def _place(source: Path, partial: Path) -> None:
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.unlink(missing_ok=True)
    try:
        os.link(source.resolve(), partial)  # the hub cache's copy, not a second one: the shards are 16 GB
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(source, partial)


def _hub_fetch(repo_id: str, remote: str, force: bool) -> Path:
    """The hub's file `remote` of the dataset repository `repo_id`, in the local Hugging Face cache."""
    try:
        from huggingface_hub import constants, hf_hub_download
        # .utils, not .errors: 0.24 has them only there, later versions in both
        from huggingface_hub.utils import (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                           RepositoryNotFoundError)
    except ImportError:
        raise ValueError("downloading FineWeb needs the package huggingface_hub: "
                         "pip install 'huggingface_hub>=0.24'") from None
    folder, _, name = remote.rpartition("/")
    try:
        return Path(hf_hub_download(repo_id, name, subfolder=folder or None, repo_type="dataset", force_download=force))
    except RepositoryNotFoundError:
        raise ValueError(f"{constants.ENDPOINT} has no dataset repository {repo_id!r} (or it is private); "
                         "check --repo-id") from None
    except LocalEntryNotFoundError:  # how huggingface_hub reports a connection error for a file not cached
        raise HubUnreachable(constants.ENDPOINT) from None
    except EntryNotFoundError:
        raise ValueError(f"dataset repository {repo_id!r} on {constants.ENDPOINT} has no file {remote!r}; "
                         "check --variant and --repo-id") from None
    except HfHubHTTPError as e:  # the hub answered, with an error (overloaded, down for maintenance)
        raise ValueError(f"{constants.ENDPOINT} answered {str(e).splitlines()[0]!r} for {remote!r} of "
                         f"{repo_id!r}; retry later (files already fetched are kept)") from None
    except (ConnectionError, TimeoutError) as e:  # OfflineModeIsEnabled is a ConnectionError
        raise HubUnreachable(f"{constants.ENDPOINT}: {type(e).__name__}") from None


# --- command line ------------------------------------------------------------------------------


def _shard_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of shards") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n} must be >= 0")
    return n


def _variant(text: str) -> str:
    try:
        dataset_name(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def add_data_parser(subparsers) -> None:
    """Register `data fineweb` on the engine's subcommands (engine.cli.build_parser's `sub`)."""
    data = subparsers.add_parser("data", help="fetch training data")
    kinds = data.add_subparsers(dest="data_source", metavar="{fineweb}", required=True)
    fw = kinds.add_parser("fineweb", help="download parameter-golf's FineWeb shards and tokenizer (Hugging Face hub)",
                          description="Download parameter-golf's published FineWeb shards and tokenizer from the "
                                      "Hugging Face hub into the layout the paper profile reads. A rerun resumes: "
                                      "files in place that check out are kept, partial or damaged ones fetched again.")
    fw.add_argument("--variant", type=_variant, default="sp1024",
                    help="tokenizer family: sp<VOCAB> (sp1024 is the paper's) or byte260 (default: sp1024)")
    fw.add_argument("--train-shards", type=_shard_count, default=DEFAULT_TRAIN_SHARDS, metavar="N",
                    help=f"train shards of 100M tokens to fetch, the first N (default: {DEFAULT_TRAIN_SHARDS}); "
                         "all val shards are always fetched")
    fw.add_argument("--dest", type=Path, default=DEFAULT_DEST,
                    help="folder that gets datasets/fineweb10B_<variant>/ and tokenizers/ (default: ./data, "
                         "where the paper profile looks)")
    fw.add_argument("--repo-id", default=REPO_ID, help=f"Hugging Face dataset repository (default: {REPO_ID})")
    fw.add_argument("--check", action="store_true",
                    help="download nothing: check that the shards and tokenizer under --dest are present and "
                         "well-formed (every shard's header and size, the SentencePiece model loads)")
    fw.set_defaults(func=cmd_data_fineweb)


def check_fineweb(dest: Path, variant: str) -> str:
    """One line on the shards and tokenizer in place under `dest`; ValueError/FileNotFoundError naming
    what is missing or damaged. Every shard's header is read against its size (engine.data.shard_token_count),
    not memoised: a file damaged since the last look is found."""
    from engine.tokenizer import SentencePieceTokenizer

    folder = dest / "datasets" / dataset_name(variant)
    counts = {}
    for split in ("train", "val"):
        files = sorted(folder.glob(f"fineweb_{split}_*.bin"))
        if not files:
            raise FileNotFoundError(f"no fineweb_{split}_*.bin shards in {folder}")
        counts[split] = sum(shard_token_count(f) for f in files)
    line = f"{folder}: {counts['train']:,} train and {counts['val']:,} val tokens"
    if variant.startswith("sp"):
        model = dest / "tokenizers" / f"fineweb_{variant[2:]}_bpe.model"
        if not model.is_file():
            raise FileNotFoundError(f"no tokenizer model {model}")
        line += f", tokenizer {model} (vocabulary {SentencePieceTokenizer(model).vocab_size})"
    return line


def cmd_data_fineweb(args) -> int:
    if args.check:
        try:
            print(check_fineweb(args.dest, args.variant))
        except (ValueError, OSError) as e:
            print(f"error: {e} (python -m engine data fineweb downloads it)", file=sys.stderr)
            return 2
        return 0
    try:
        d = download_fineweb(args.dest, args.variant, args.train_shards, args.repo_id)
    except (ValueError, OSError) as e:  # OSError: a full disk or a read-only destination
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.variant}: {len(d.fetched)} files fetched, {len(d.present)} already in place under {args.dest}")
    print(f"data = {json.dumps(d.data)}" + (f", tokenizer = {json.dumps(d.tokenizer)}" if d.tokenizer else ""))
    return 0

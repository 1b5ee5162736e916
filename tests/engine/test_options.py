"""engine.options and the CLI's use of it: one definition of the shared options, warmdown spelt out."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from engine.cli import build_parser, spec_from_args
from engine.options import SHARED, add_shared, shared_options


def test_every_shared_option_builds_an_argparse_flag_with_prefix():
    p = argparse.ArgumentParser()
    add_shared(p, *SHARED, prefix="qat-", dest_prefix="qat_")
    args = p.parse_args(["--qat-cache-dir", "/c", "--qat-on-corrupt", "quarantine", "--qat-pack", "4",
                         "--qat-progress", "--qat-threads", "2", "--qat-device", "cpu"])
    assert args.qat_cache_dir == Path("/c") and args.qat_on_corrupt == "quarantine" and args.qat_pack == 4
    assert args.qat_progress is True and args.qat_threads == 2 and args.qat_device == "cpu"
    with pytest.raises(SystemExit):
        p.parse_args(["--qat-on-corrupt", "ignore"])


def test_on_corrupt_default_is_the_same_for_every_consumer(monkeypatch):
    monkeypatch.delenv("QAT_ON_CORRUPT", raising=False)
    assert shared_options("on_corrupt")[0].argparse_kwargs()["default"] == "error"
    assert build_parser().parse_args(["show", "abcd"]).on_corrupt == "error"
    monkeypatch.setenv("QAT_ON_CORRUPT", "quarantine")  # read when the parser is built, not at import
    assert shared_options("on_corrupt")[0].argparse_kwargs()["default"] == "quarantine"
    assert build_parser().parse_args(["show", "abcd"]).on_corrupt == "quarantine"


def test_unknown_shared_option_names_the_known_ones():
    with pytest.raises(KeyError, match="cache_dir"):
        shared_options("cache")


def test_cli_uses_the_shared_options():
    args = build_parser().parse_args(["sweep", "--profile", "tiny", "--cache-dir", "/c", "--pack", "3", "--device", "cpu"])
    assert (args.cache_dir, args.pack, args.device, args.on_corrupt) == (Path("/c"), 3, "cpu", "error")
    assert (args.precision, args.compile) == (None, None)  # None: the device's default (engine.precision)


@pytest.mark.parametrize("command", [["sweep", "--profile", "tiny"], ["train"], ["bench"]])
def test_precision_and_compile_are_one_pair_of_flags_everywhere(command):
    p = build_parser()
    args = p.parse_args([*command, "--precision", "bf16", "--no-compile"])
    assert (args.precision, args.compile) == ("bf16", False)
    assert p.parse_args([*command, "--compile"]).compile is True
    with pytest.raises(SystemExit):
        p.parse_args([*command, "--precision", "fp8"])


@pytest.mark.parametrize("flags", [["--warmdown", "0.5", "--warmdown-shape", "cosine"],
                                   ["--wd", "0.5", "--wd-shape", "cosine"]])
def test_warmdown_flags_and_their_short_aliases_set_the_same_spec(flags):
    spec = spec_from_args(build_parser().parse_args(["train", "--size", "t20k", *flags]))
    assert (spec.warmdown, spec.warmdown_shape) == (0.5, "cosine")


def test_help_spells_warmdown_out():
    sub = build_parser()._subparsers._group_actions[0].choices["train"]
    text = sub.format_help()
    assert "--warmdown WARMDOWN" in text or "--warmdown FLOAT" in text
    assert "fraction of all steps" in text

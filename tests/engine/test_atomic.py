"""engine.atomic: whole files or nothing, unique temp names, fsync of file and directory."""

from __future__ import annotations

import json
import os

import pytest

from engine import atomic
from engine.atomic import atomic_write, atomic_write_json, temp_name


def test_writes_bytes_text_and_writer_functions(tmp_path):
    atomic_write(tmp_path / "a.bin", b"\x00\x01")
    atomic_write(tmp_path / "b.txt", "héllo")
    atomic_write(tmp_path / "sub" / "c.bin", lambda f: f.write(b"xyz"))  # parent made on demand
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "sub" / "c.bin").read_bytes() == b"xyz"
    assert not list(tmp_path.rglob("*.tmp"))


def test_json_is_sorted_indented_and_allows_nan(tmp_path):
    atomic_write_json(tmp_path / "r.json", {"b": float("nan"), "a": 1})
    text = (tmp_path / "r.json").read_text()
    assert text.index('"a"') < text.index('"b"') and "NaN" in text
    assert json.loads(text)["a"] == 1


def test_a_failed_write_keeps_the_old_file_and_leaves_no_debris(tmp_path):
    path = tmp_path / "r.json"
    atomic_write(path, "old")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, boom)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_temp_names_are_unique_hidden_and_beside_the_target(tmp_path):
    names = {temp_name(tmp_path / "record.json") for _ in range(100)}
    assert len(names) == 100
    for n in names:
        assert n.parent == tmp_path and n.name.startswith(".record.json.") and n.name.endswith(".tmp")


def test_file_and_directory_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: events.append("rename") or real_replace(a, b))
    atomic_write(tmp_path / "x", b"1")
    assert events == ["fsync", "rename", "fsync"]  # file contents, rename, directory entry


def test_fault_point_is_reached_between_durable_temp_and_rename(tmp_path, monkeypatch):
    seen = []

    def fault(point):
        seen.append((point, sorted(p.name for p in tmp_path.iterdir())))

    monkeypatch.setattr(atomic, "fault_point", fault)
    atomic_write(tmp_path / "rec", b"1", fault="cache_write")
    [(point, files)] = seen
    assert point == "cache_write" and len(files) == 1 and files[0].startswith(".rec.")
    atomic_write(tmp_path / "rec", b"2")  # no fault name: no fault point
    assert len(seen) == 1

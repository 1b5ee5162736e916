"""Packaging (pyproject.toml, setup.py, constraints.txt): a wheel built from the checkout carries the
claims and profiles, and an installed copy loads them and keeps its cache out of site-packages.

The wheel is built from a copy of the sources in the test's tmp dir (no build/ in the checkout)
without build isolation (the venv's setuptools: no network), then unpacked into a folder named
site-packages and imported from there in a subprocess: what a non-editable install gives, without
creating a venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "engine", "hypotheses", "fixtures")
FIXTURES = sorted(p.relative_to(ROOT / "fixtures").as_posix() for p in (ROOT / "fixtures").rglob("*.toml"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp / "dist")], check=True, timeout=300)
    (whl,) = (tmp / "dist").glob("*.whl")
    return whl


def test_wheel_carries_the_fixtures(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for rel in FIXTURES:
            assert f"engine/_fixtures/{rel}" in names
            assert z.read(f"engine/_fixtures/{rel}") == (ROOT / "fixtures" / rel).read_bytes()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "Requires-Python: >=3.11" in meta
    assert "joblib" not in meta and 'ray==2.60.0; extra == "cluster"' in meta


def test_installed_copy_loads_profiles_and_claims_and_caches_in_the_working_dir(wheel, tmp_path):
    site = tmp_path / "lib" / "site-packages"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    probe = ("import engine, json; from engine.design import available_profiles, load_profile; "
             "from hypotheses.claims import load_claims; from engine.paths import default_cache_dir; "
             "print(json.dumps({'engine': engine.__file__, 'profiles': available_profiles(), "
             "'tiny': load_profile('tiny').name, 'claims': sorted(load_claims()), 'cache': str(default_cache_dir())}))")
    env = {k: v for k, v in os.environ.items() if k not in ("QAT_CACHE_DIR", "PYTHONPATH")}
    out = subprocess.run([sys.executable, "-c", probe], cwd=work, env={**env, "PYTHONPATH": str(site)},
                         capture_output=True, text=True, timeout=120, check=True).stdout
    got = json.loads(out)
    assert Path(got["engine"]).is_relative_to(site)  # the unpacked copy, not the checkout
    assert got["profiles"] == ["paper", "small", "tiny"] and got["tiny"] == "tiny"
    assert {"C1", "C9", "R1", "R5"} <= set(got["claims"])
    assert got["cache"] == str(work / "cache")  # never site-packages/cache


def test_requires_python_is_what_the_code_needs():
    """engine.design and hypotheses.claims import tomllib (3.11+): requires-python must not claim less."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["requires-python"] == ">=3.11"


def _name(req: str) -> str:
    return req.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower().replace("_", "-")


def test_every_dependency_is_imported_somewhere_and_pinned_in_constraints():
    """joblib was declared and never imported; statsmodels is imported by the tests only (the [test] extra);
    constraints.txt pins every direct dependency."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"]) + [r for extra in meta["optional-dependencies"].values() for r in extra]
    names = {_name(r) for r in reqs} - {"qat-schedule-suite"}
    assert "joblib" not in names
    test_extra = {_name(r) for r in meta["optional-dependencies"]["test"]}
    uses_statsmodels = any("import statsmodels" in p.read_text() or "from statsmodels" in p.read_text()
                           for p in (ROOT / "tests").rglob("*.py"))
    assert ("statsmodels" in test_extra) == uses_statsmodels
    pinned = {_name(line) for line in (ROOT / "constraints.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert names == pinned
    lines = [x for x in (ROOT / "constraints.txt").read_text().splitlines() if x.strip() and not x.startswith("#")]
    assert all("==" in x for x in lines)

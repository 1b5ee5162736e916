"""engine.paths: the data directory follows the cache, environment read at call time."""

from __future__ import annotations

from engine import paths
from engine.cache import ResultsCache


def test_defaults_are_the_checkouts_cache(monkeypatch):
    monkeypatch.delenv(paths.CACHE_ENV, raising=False)
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    assert paths.default_cache_dir() == paths.REPO_ROOT / "cache"
    assert paths.data_dir() == paths.REPO_ROOT / "cache" / "_data"
    assert ResultsCache().data_dir == paths.REPO_ROOT / "cache" / "_data"


def test_data_follows_the_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    assert paths.data_dir(tmp_path) == tmp_path / "_data"
    assert ResultsCache(tmp_path / "elsewhere").data_dir == tmp_path / "elsewhere" / "_data"
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "env"))
    assert paths.data_dir() == tmp_path / "env" / "_data"
    assert ResultsCache().root == tmp_path / "env"


def test_data_env_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "d"))
    assert paths.data_dir(tmp_path / "c") == tmp_path / "d"
    assert ResultsCache(tmp_path / "c").data_dir == tmp_path / "d"


def test_cli_train_with_cache_dir_writes_its_data_there(tmp_path, monkeypatch):
    from engine.cli import main

    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    cache = tmp_path / "cache"
    argv = ["train", "--size", "t10k", "--steps", "3", "--batch-tokens", "128", "--seq-len", "16",
            "--val-tokens", "256", "--cache-dir", str(cache), "--threads", "1", "--quiet"]
    assert main(argv) == 0
    assert list((cache / "_data" / "tokens").glob("*/train.npy"))  # the corpus went with the cache
    assert len(list(cache.glob("[0-9a-f][0-9a-f]/*/record.json"))) == 1


def test_checkout_reads_its_own_fixtures(monkeypatch):
    assert paths.in_checkout()
    assert paths.fixtures_dir() == paths.REPO_ROOT / "fixtures"


def test_installed_copy_uses_its_fixtures_and_caches_in_the_working_dir(tmp_path, monkeypatch):
    """From site-packages (a wheel install) the fixtures are the packaged copy and the default cache is
    ./cache, not site-packages/cache; $QAT_CACHE_DIR still wins."""
    site = tmp_path / "lib" / "site-packages"
    site.mkdir(parents=True)
    (site / "fixtures").mkdir()  # another package's folder of that name is not ours
    monkeypatch.setattr(paths, "REPO_ROOT", site)
    monkeypatch.delenv(paths.CACHE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert not paths.in_checkout()
    assert paths.fixtures_dir() == paths.INSTALLED_FIXTURES
    assert paths.default_cache_dir() == tmp_path / "cache"
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "env"))
    assert paths.default_cache_dir() == tmp_path / "env"

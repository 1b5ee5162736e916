"""Build hook: a wheel carries the checkout's fixtures/ (claims.toml, profiles/) as engine/_fixtures/.

fixtures/ stays at the top of the checkout, where people read and edit it. A non-editable install
has no checkout, so the build copies the folder into the engine package, where
engine.paths.fixtures_dir() finds it; an editable install reads the checkout's folder and gets no
copy. Everything else about the build is declared in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PACKAGED = Path("engine") / "_fixtures"  # = engine.paths.INSTALLED_FIXTURES, relative to the install root
FIXTURE_FILES = "*.toml"


class BuildPyWithFixtures(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        files = sorted(FIXTURES.rglob(FIXTURE_FILES))
        if not files:  # a wheel without them could not load a profile: fail the build instead
            raise FileNotFoundError(f"no {FIXTURE_FILES} under {FIXTURES}: build from a checkout or an sdist")
        dest = Path(self.build_lib) / PACKAGED
        shutil.rmtree(dest, ignore_errors=True)
        for src in files:
            target = dest / src.relative_to(FIXTURES)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


setup(cmdclass={"build_py": BuildPyWithFixtures})

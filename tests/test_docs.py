"""The README and docs/ point only at things that exist, and the README stays short.

A newcomer follows the README's links and copies the file paths it names; a page moved or a
module renamed must fail here, not in their hands. Checked in README.md, CHANGELOG.md and every
docs/*.md: each Markdown link whose target is a relative path (anchors stripped), and each
inline-code span that names a repository file or folder (it starts with one of REPO_DIRS and
holds no spaces, wildcards or placeholders). Fenced code blocks are left out: they hold
commands and sample output, not references.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 260  # issue 23: a README a newcomer reads in ten minutes (~250 lines)

REPO_DIRS = ("engine/", "hypotheses/", "fixtures/", "tests/", "scripts/", "reports/", "docs/", ".ci/")
# Paths the docs name that a run creates; they are not in a fresh clone, so they cannot exist here.
RUNTIME_OUTPUTS = {
    "reports/report.html",  # the study's report: written by `pytest hypotheses/` (default --qat-report-dir)
    "reports/junit.xml",  # the study's JUnit XML, where the docs' commands pass --junitxml
    "reports/summary.md",  # the same verdicts in Markdown, written beside report.html
    "reports/verdicts.json",  # the suite's verdict rows, written beside report.html
    "reports/bench/bench-cuda.json",  # written by scripts/gpu_check.sh on a GPU machine; none has run it yet
}
RUNTIME_PREFIXES = (
    "reports/ci/",  # .ci/run's report directories, made during a CI run
)

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
PLACEHOLDER = re.compile(r"[<>{}*?\[\]]|\.\.\.|…")


def _prose(page: Path) -> str:
    """The page without its fenced code blocks."""
    return FENCE.sub("", page.read_text(encoding="utf-8"))


def _page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def relative_link_targets(text: str) -> list[str]:
    """Link targets that are paths in this repository: no scheme, no bare #anchor; anchor stripped."""
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http(s):, mailto:, an anchor on the same page
        targets.append(target.split("#", 1)[0])
    return targets


def repo_paths_in_code(text: str) -> list[str]:
    """Inline-code spans that name a repository path (not a command, pattern or placeholder)."""
    paths = []
    for span in CODE_SPAN.findall(text):
        span = span.strip()
        if not span.startswith(REPO_DIRS) or " " in span or PLACEHOLDER.search(span):
            continue
        paths.append(span.rstrip(".,;:"))
    return paths


def _is_runtime_output(path: str) -> bool:
    return path in RUNTIME_OUTPUTS or path.startswith(RUNTIME_PREFIXES)


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_relative_links_exist(page):
    missing = [t for t in relative_link_targets(_prose(page)) if not (page.parent / t).exists()]
    assert not missing, f"{_page_id(page)} links to missing paths: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_named_repository_paths_exist(page):
    missing = [p for p in repo_paths_in_code(_prose(page))
               if not _is_runtime_output(p) and not (ROOT / p).exists()]
    assert not missing, f"{_page_id(page)} names missing paths: {missing}"


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped but '-' and
    '_', spaces as '-' (a repeated heading's '-1' suffix is not needed here)."""
    out = set()
    for title in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M):
        out.add(re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_anchors_into_markdown_pages_name_a_heading(page):
    """A link such as docs/claims.md#c6 (the README's one click to a rule) lands on a heading."""
    broken = []
    for target in LINK.findall(_prose(page)):
        path, _, anchor = target.partition("#")
        if not anchor or not path.endswith(".md") or re.match(r"^[a-z][a-z0-9+.-]*:", path, re.I):
            continue
        dest = page.parent / path
        if dest.exists() and anchor not in heading_anchors(dest.read_text(encoding="utf-8")):
            broken.append(target)
    assert not broken, f"{_page_id(page)} links to anchors no heading has: {broken}"


def test_the_anchor_check_knows_githubs_slugs():
    assert heading_anchors("## Smallest effects of interest (δ) and seeds\n#### C6\n") == {
        "smallest-effects-of-interest-δ-and-seeds", "c6"}


def test_readme_is_short():
    lines = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / t).resolve() for t in relative_link_targets(_prose(ROOT / "README.md"))}
    unlinked = [_page_id(p) for p in PAGES[2:] if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README's table of contents does not list: {unlinked}"


def test_the_checks_see_links_and_paths():
    # the detectors themselves: a missing page or path must be found, a placeholder or command not
    text = ("[a](docs/nope.md#x) [b](https://x.org) [c](#top) `engine/nope.py` "
            "`reports/calibration/<profile>.json` `fixtures/profiles/*.toml` `tests/ -n 2` `python -m engine`")
    assert relative_link_targets(text) == ["docs/nope.md"]
    assert repo_paths_in_code(text) == ["engine/nope.py"]
    assert repo_paths_in_code("```\n`engine/nope.py`\n```") == ["engine/nope.py"]  # _prose strips fences
    assert FENCE.sub("", "a\n```bash\n`engine/nope.py`\n```\nb") == "a\n\nb"

"""Docstrings, --help texts and the README cite documents of this repository only.

The documentation site's own links are checked by ``mkdocs build --strict`` (``.ci/run``); this
covers what the site build does not see: the package's and the CLI's text, the tests, the
benchmarks and examples, and the README's relative links.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("rcml_st", "cli", "tests", "benchmarks", "examples")
# A path or file name ending in .md, not the tail of a templated path such as f"{folder}/README.md".
MARKDOWN_NAME = re.compile(r"(?<![}\w./-])[\w./-]*\w\.md\b")
MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@functools.cache
def _repo_file_names() -> set[str]:
    top = {path.name for path in ROOT.iterdir() if path.is_file()}
    return top | {p.name for name in (*SOURCES, "docs") for p in (ROOT / name).rglob("*") if p.is_file()}


def _cited_markdown(path: Path) -> list[str]:
    return MARKDOWN_NAME.findall(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "source",
    sorted(
        p.relative_to(ROOT).as_posix()
        for name in SOURCES
        for p in (ROOT / name).rglob("*.py")
        if p.name != Path(__file__).name  # this file names the old contract file on purpose
    ),
)
def test_python_sources_cite_documents_that_exist(source):
    names = _repo_file_names()
    for cited in _cited_markdown(ROOT / source):
        if "/" in cited:
            assert (ROOT / cited).is_file() or (ROOT / source).parent.joinpath(cited).is_file(), (
                f"{source} cites {cited}, which is not in the repository"
            )
        else:
            assert cited in names, f"{source} cites {cited}, which is not in the repository"


@pytest.mark.parametrize("document", ["README.md", *sorted(p.name for p in (ROOT / "examples").glob("*.md"))])
def test_readme_and_examples_link_to_files_that_exist(document):
    path = ROOT / document if document == "README.md" else ROOT / "examples" / document
    for target in MARKDOWN_LINK.findall(path.read_text(encoding="utf-8")):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (path.parent / target).exists(), f"{document} links to {target}, which does not exist"


def test_the_old_contract_file_is_cited_nowhere():
    # The contract lives in docs/contract/; a citation of interface.md would point outside the repo.
    assert not (ROOT / "interface.md").exists() and not (ROOT / "docs" / "interface.md").exists()
    offenders = [
        p.relative_to(ROOT).as_posix()
        for name in (*SOURCES, "docs")
        for p in (ROOT / name).rglob("*")
        if p.suffix in {".py", ".md"}
        and "interface.md" in p.read_text(encoding="utf-8")
        and p.name != Path(__file__).name
    ]
    assert not offenders

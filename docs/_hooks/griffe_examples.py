"""Griffe extension: the package's docstrings render as their authors meant them.

The docstrings are Google style with a few reStructuredText habits, which Griffe's Markdown
rendering would show literally. In the documentation build only (the source stays as it is):

- ``Example:`` section titles become ``Examples:`` (the title Griffe's Google parser knows), so
  the doctests render as Python code instead of an admonition's text;
- Sphinx roles (``:func:`load```, ``:class:`~rcml_st.index.Layout```) become inline code
  (``load``, ``Layout``);
- a paragraph ending in ``::`` (reStructuredText's "a literal block follows") ends in ``:``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
_ROLE = re.compile(r":(?:func|meth|class|mod|attr|data|exc|obj|py:\w+):`~?([^`]+)`")
_LITERAL_BLOCK = re.compile(r"(\S)::[ \t]*$", re.MULTILINE)


def _role(match: re.Match[str]) -> str:
    target = match.group(1)
    shown = target.rsplit(".", 1)[-1] if match.group(0).count("`~") else target
    return f"`{shown}`"


class ExampleSections(griffe.Extension):
    """Rewrites the reStructuredText habits above before the docstrings are parsed."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            text = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
            text = _ROLE.sub(_role, text)
            obj.docstring.value = _LITERAL_BLOCK.sub(r"\1:", text)

"""Griffe extension: ``Example:`` sections of the package's docstrings render as examples.

The package's Google-style docstrings title their doctests ``Example:``; Griffe's Google parser
only knows ``Examples:`` and would render the doctest lines as an admonition's text. This
renames the title (in the documentation build only; the source stays as it is) so the examples
render as Python code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Renames ``Example:`` section titles to ``Examples:`` before the docstrings are parsed."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)

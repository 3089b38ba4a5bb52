"""Lazy public names for a package (PEP 562), so that importing it stays cheap.

``rcml-st train bad.jsonl`` reads and rejects its data before torch, open_clip and
sentence-transformers are imported: packages that re-export names from heavy modules resolve them
on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, names: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` that import ``names`` (name -> module) on first use.

    Args:
        package: the package's ``__name__`` (for the error message).
        names: each public name and the module that defines it.
        namespace: the package's ``globals()``; a resolved name is stored there.

    Example:
        >>> get, listing = lazy_exports("demo", {"dumps": "json"}, {})
        >>> get("dumps")({"a": 1}), "dumps" in listing()
        ('{"a": 1}', True)
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__

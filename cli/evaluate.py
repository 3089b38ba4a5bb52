"""`rcml-st evaluate` (placeholder until its issue lands)."""

from __future__ import annotations

from rcml_st.cli._common import fail


def evaluate() -> None:
    """Not available yet."""
    raise fail("'rcml-st evaluate' is not available in this build yet", 1)

"""`rcml-st demo` (placeholder until its issue lands)."""

from __future__ import annotations

from rcml_st.cli._common import fail


def demo() -> None:
    """Not available yet."""
    raise fail("'rcml-st demo' is not available in this build yet", 1)

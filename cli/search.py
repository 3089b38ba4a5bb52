"""`rcml-st search` (placeholder until its issue lands)."""

from __future__ import annotations

from rcml_st.cli._common import fail


def search() -> None:
    """Not available yet."""
    raise fail("'rcml-st search' is not available in this build yet", 1)

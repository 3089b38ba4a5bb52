"""`rcml-st index` (placeholder until its issue lands)."""

from __future__ import annotations

from rcml_st.cli._common import fail


def index() -> None:
    """Not available yet."""
    raise fail("'rcml-st index' is not available in this build yet", 1)

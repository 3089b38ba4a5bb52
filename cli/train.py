"""`rcml-st train` (placeholder until its issue lands)."""

from __future__ import annotations

from rcml_st.cli._common import fail


def train() -> None:
    """Not available yet."""
    raise fail("'rcml-st train' is not available in this build yet", 1)

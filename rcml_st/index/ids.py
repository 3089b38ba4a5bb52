"""Deterministic Qdrant point ids: one point per (item, relation), the same id on every run.

Re-running an index therefore overwrites points instead of adding duplicates, and the CLI can
find an indexed item's own vectors (``rcml-st search --id``) without a payload lookup.
"""

from __future__ import annotations

import uuid

#: The package's fixed namespace for point ids. Never change it: every existing index was
#: written with it, and a new value would make re-runs write a second copy of every point.
NAMESPACE = uuid.UUID("1cf65f01-9d49-5c0d-b679-ed41a12c632c")

#: Separates item id and relation in the name hashed into the id (ASCII "unit separator": it
#: cannot be typed by accident, so ("a", "b c") and ("a b", "c") never collide).
SEPARATOR = "\x1f"


def point_id(item_id: str, relation: str) -> str:
    """The point id of ``item_id`` under ``relation``: ``uuid5(NAMESPACE, item_id + "\\x1f" + relation)``.

    Args:
        item_id: the item's ``id`` from the data file.
        relation: the relation description, exactly as indexed.

    Returns:
        The id as a canonical UUID string, which Qdrant accepts as a point id.

    Example:
        >>> point_id("B0001", "used together for infant feeding")
        '9d9731f8-bf2c-56ce-8aa5-968665255ba6'
        >>> point_id("B0001", "x") == point_id("B0001", "x")
        True
    """
    return str(uuid.uuid5(NAMESPACE, item_id + SEPARATOR + relation))

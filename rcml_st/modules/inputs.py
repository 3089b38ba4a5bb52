"""Normalising the inputs ``encode`` accepts into (text, image, relation) triples.

The model accepts, per item: a string (text), a PIL image, an image path (``pathlib.Path``, or a
string that ends in an image extension and contains no whitespace), or a dict with any of the
keys ``text``, ``image`` and ``relation``. This module validates one batch of those and reports
the first problem as a ``ValueError`` naming the item's index.

Texts are cut to their first :data:`MAX_TEXT_CHARS` characters before they are tokenised: a text
tower reads at most a few hundred tokens anyway (77 for CLIP), and tokenising a 50 MB text
whole took 17.6 GB of memory and minutes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tiff", ".tif", ".webp")
ITEM_KEYS = frozenset({"text", "image", "relation"})
#: Characters of a text (or relation description) that reach the tokenizer; the rest is cut.
#: 16 characters per token for the longest text towers (512 tokens) stays far above real text.
MAX_TEXT_CHARS = 8192


@dataclass(frozen=True)
class ParsedItem:
    """One input item, normalised.

    Attributes:
        text: the item's text, or None.
        image: a decoded RGB PIL image (as given, a path or PIL image, when not decoded), or None.
        relation: the relation description the item is encoded under, or None (plain embedding).
    """

    text: str | None
    image: Any
    relation: str | None


def looks_like_image_path(value: str) -> bool:
    """Whether a bare string is meant as an image path rather than as text.

    A string counts as a path when it ends in a common image extension and has no whitespace,
    e.g. ``"photos/B0001.jpg"``; ``"a jpg of a cat"`` stays text.

    Example:
        >>> looks_like_image_path("images/B0001.jpg"), looks_like_image_path("a red pram")
        (True, False)
    """
    return value.lower().endswith(IMAGE_EXTENSIONS) and not any(ch.isspace() for ch in value)


def _load_image(value: Any, index: int, load: bool = True) -> Any:
    if not load and isinstance(value, (Image.Image, str, os.PathLike)):
        return value
    if isinstance(value, Image.Image):
        return value.convert("RGB") if value.mode != "RGB" else value
    if isinstance(value, (str, os.PathLike)):
        from rcml_st.data.images import load_image

        try:
            return load_image(value)
        except ValueError as exc:
            raise ValueError(f"item {index}: {exc}") from None
    raise ValueError(f"item {index}: 'image' must be a PIL image or a path, not {type(value).__name__}")


def _check_relation(value: Any, index: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"item {index}: 'relation' must be a string, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"item {index}: the relation description is empty")
    return value


def parse_item(
    item: Any, index: int, default_relation: str | None = None, load_images: bool = True
) -> ParsedItem:
    """Normalises one input item; a per-item ``relation`` wins over ``default_relation``.

    Args:
        item: a string, PIL image, ``pathlib.Path`` or dict with ``text``/``image``/``relation``.
        index: the item's position in the batch, for error messages.
        default_relation: the call-level relation, used when the item has none.
        load_images: decode images (``False``: keep the path or PIL image as given).

    Returns:
        The :class:`ParsedItem`.

    Raises:
        ValueError: naming the item's index and the problem.

    Example:
        >>> parse_item({"text": "nursing pillow", "relation": "used together"}, 0)
        ParsedItem(text='nursing pillow', image=None, relation='used together')
    """
    relation = _check_relation(default_relation, index)
    if isinstance(item, dict):
        unknown = set(item) - ITEM_KEYS
        if unknown:
            raise ValueError(
                f"item {index}: unknown key(s) {sorted(unknown)}; an item dict takes 'text', 'image' "
                "and 'relation'"
            )
        text = item.get("text")
        if text is not None and not isinstance(text, str):
            raise ValueError(f"item {index}: 'text' must be a string, not {type(text).__name__}")
        if text is not None and not text.strip():
            text = None
        image = _load_image(item["image"], index, load_images) if item.get("image") is not None else None
        if text is None and image is None:
            raise ValueError(f"item {index}: the dict has neither 'text' nor 'image'")
        if item.get("relation") is not None:
            relation = _check_relation(item["relation"], index)
        return ParsedItem(text, image, relation)
    if isinstance(item, (Image.Image, Path)):
        return ParsedItem(None, _load_image(item, index, load_images), relation)
    if isinstance(item, str):
        if looks_like_image_path(item):
            return ParsedItem(None, _load_image(item, index, load_images), relation)
        if not item.strip():
            raise ValueError(f"item {index}: empty text")
        return ParsedItem(item, None, relation)
    raise ValueError(
        f"item {index}: unsupported input type {type(item).__name__}; pass a string, a PIL image, "
        "an image path or a dict with 'text', 'image' and 'relation'"
    )


def _short_repr(item: Any, limit: int = 60) -> str:
    text = repr(item)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_batch(
    items: Sequence[Any], default_relation: str | None = None, load_images: bool = True
) -> list[ParsedItem]:
    """Normalises a batch of items (see :func:`parse_item`).

    ``SentenceTransformer.encode`` reorders inputs by length before they reach the module, so
    errors quote the offending item as well as its index in the batch.
    """
    parsed = []
    for i, item in enumerate(items):
        try:
            parsed.append(parse_item(item, i, default_relation, load_images))
        except ValueError as exc:
            raise ValueError(f"{exc} (the item: {_short_repr(item)})") from None
    return parsed

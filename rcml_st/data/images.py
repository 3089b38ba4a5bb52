"""Loading item images as RGB PIL images, with a small bounded cache.

Training reads the same images every epoch; decoding them again each time is wasted work, but
holding a whole catalogue in memory is not an option (100k items). :func:`load_image` keeps the
most recently used images in an LRU cache bounded both by count and by decoded bytes.
"""

from __future__ import annotations

import collections
import os
import threading
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from rcml_st.errors import InputDataError

#: At most this many decoded images are kept.
CACHE_MAX_ITEMS = 256
#: ... and at most this many bytes of decoded pixels (a few large photos must not fill memory).
CACHE_MAX_BYTES = 256 * 1024 * 1024


class _ImageCache:
    """A thread-safe LRU of decoded images keyed by (path, mtime, size), bounded by count and bytes."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._data: collections.OrderedDict[tuple, Image.Image] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> Image.Image | None:
        with self._lock:
            image = self._data.get(key)
            if image is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return image

    def put(self, key: tuple, image: Image.Image) -> None:
        size = _nbytes(image)
        if size > self.max_bytes or self.max_items <= 0:
            return  # too big to cache at all: decode it again next time
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= _nbytes(old)
            self._data[key] = image
            self._bytes += size
            while len(self._data) > self.max_items or self._bytes > self.max_bytes:
                _, evicted = self._data.popitem(last=False)
                self._bytes -= _nbytes(evicted)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0
            self.hits = self.misses = 0

    def info(self) -> dict[str, int]:
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "items": len(self._data),
                "bytes": self._bytes,
                "max_items": self.max_items,
                "max_bytes": self.max_bytes,
            }


def _nbytes(image: Image.Image) -> int:
    return image.width * image.height * len(image.getbands())


def describe_image_error(exc: Exception) -> str:
    """A short reason for an image PIL could not read (its own messages repeat the path)."""
    if isinstance(exc, UnidentifiedImageError):
        return "not a recognised image format"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__


_cache = _ImageCache(CACHE_MAX_ITEMS, CACHE_MAX_BYTES)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Converts to RGB; transparent areas become white (product photos are cut out on white)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _decode(path: str) -> Image.Image:
    try:
        with Image.open(path) as opened:
            opened.load()
            # Phone photos store rotation in EXIF; apply it so the pixels are upright. This returns
            # a new image (a copy when nothing is rotated), detached from the open file.
            return _to_rgb(ImageOps.exif_transpose(opened))
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, DecompressionBomb...)
        raise InputDataError(f"cannot read image: {describe_image_error(exc)}", path=path) from None


def load_image(path: str | os.PathLike[str] | Image.Image) -> Image.Image:
    """Loads an image as an RGB PIL image, through a small bounded LRU cache.

    The returned image may be shared with later callers: do not modify it in place (call
    ``.copy()`` first). A PIL image passed in is converted to RGB and returned (not cached).

    Args:
        path: the image file (or an already loaded PIL image).

    Returns:
        An RGB ``PIL.Image.Image`` with EXIF rotation applied and transparency on white.

    Raises:
        InputDataError: naming the path when the file is missing or cannot be decoded.

    Example:
        >>> import tempfile, os
        >>> from PIL import Image
        >>> p = os.path.join(tempfile.mkdtemp(), "x.png")
        >>> Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(p)
        >>> img = load_image(p)
        >>> img.mode, img.getpixel((0, 0))
        ('RGB', (255, 255, 255))
    """
    if isinstance(path, Image.Image):
        return _to_rgb(path)
    path = os.fspath(path)
    try:
        stat = os.stat(path)
    except OSError as exc:
        problem = "image not found" if isinstance(exc, FileNotFoundError) else f"cannot read image: {exc}"
        raise InputDataError(problem, path=path) from None
    # mtime and size in the key: an image rewritten on disk is decoded again, never served stale.
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    image = _cache.get(key)
    if image is None:
        image = _decode(path)
        _cache.put(key, image)
    return image


def _cache_info() -> dict[str, Any]:
    """Cache statistics: hits, misses, items, bytes and the bounds."""
    return _cache.info()


def _cache_clear() -> None:
    """Empties the image cache."""
    _cache.clear()


# The functools.lru_cache-style handles, so callers and tests can inspect or reset the cache.
load_image.cache_info = _cache_info  # type: ignore[attr-defined]
load_image.cache_clear = _cache_clear  # type: ignore[attr-defined]

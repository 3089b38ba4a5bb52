"""Streaming the lines of a metadata file, gzip or not, with progress in bytes read.

Gzip is recognised by its magic bytes, not by the file name: the 2023 release ships plain
``.jsonl`` files, mirrors re-compress them, and a renamed file must still read. A damaged gzip
stream (bad header, corrupt data, truncated file) is one :class:`~rcml_st.errors.InputDataError`
naming the line where reading stopped; it cannot be skipped, since nothing after it is readable.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from rcml_st.errors import InputDataError

GZIP_MAGIC = b"\x1f\x8b"

# How often (in lines) the progress callback hears about the bytes read so far.
_PROGRESS_EVERY = 2000


def is_gzip(path: str | os.PathLike[str]) -> bool:
    """Whether a file starts with the gzip magic bytes.

    Example:
        >>> import gzip, pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "meta.json"
        >>> _ = p.write_bytes(gzip.compress(b"{}"))
        >>> is_gzip(p)
        True
    """
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def check_input(path: str | os.PathLike[str]) -> Path:
    """Checks that a metadata file exists and is a readable file; returns it as a ``Path``.

    Raises:
        InputDataError: naming the file when it is missing, a directory or unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError("file not found", path=str(path))
    if path.is_dir():
        raise InputDataError("is a directory, expected an Amazon metadata file", path=str(path))
    if not os.access(path, os.R_OK):
        raise InputDataError("file is not readable (permission denied)", path=str(path))
    return path


def iter_lines(
    path: str | os.PathLike[str], on_progress: Callable[[int], None] | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yields ``(line number, raw bytes)`` for every line of a (possibly gzipped) file, streaming.

    Args:
        path: the metadata file.
        on_progress: called now and then with the number of bytes of the file read so far
            (compressed bytes for a gzip file, so it reaches the file size at the end).

    Raises:
        InputDataError: when the gzip stream is corrupt or truncated, or the file cannot be read.

    Example:
        >>> import pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "meta.json"
        >>> _ = p.write_bytes(b"{'asin': 'B1'}\\n{'asin': 'B2'}\\n")
        >>> [n for n, _ in iter_lines(p)]
        [1, 2]
    """
    where = str(path)
    compressed = is_gzip(path)
    number = 0
    with open(path, "rb") as raw:
        # GzipFile's own small buffer keeps the line number of a corruption close to the truth
        # (a large read-ahead would fail lines before the damage); it is as fast for line reading.
        stream: io.BufferedIOBase = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        lines = iter(stream)
        while True:
            try:
                line = next(lines)
            except StopIteration:
                break
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                problem = f"corrupt gzip data ({exc}); the file is damaged or truncated: download it again"
                raise InputDataError(problem, path=where, line=number + 1) from None
            except OSError as exc:
                raise InputDataError(
                    f"cannot read file: {exc.strerror or exc}", path=where, line=number + 1
                ) from None
            number += 1
            yield number, line
            if on_progress is not None and number % _PROGRESS_EVERY == 0:
                on_progress(raw.tell())
        if on_progress is not None:
            on_progress(raw.tell())

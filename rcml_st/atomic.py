"""Files written whole or not at all, with the permissions a plain ``open()`` would give.

A reader (another process, an upload, a resumed run) must never see half a file, and a failed
write must be an error, not a short file. :func:`atomic_path` hands out a temporary name in the
target's folder; when the block ends without an error the file is flushed to disk, given the mode
``0o666 & ~umask`` (``tempfile`` creates ``0600`` files, which other users of a shared model folder
could not read) and renamed over the target in one step. On an error it is removed.

The temporary name starts with ``.`` and ends with :data:`TEMP_SUFFIX`; :func:`remove_stale_temps`
deletes those a killed process left behind (a model save calls it, so an upload of the folder
never carries one).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: Suffix of the temporary files (``.<name>.<random>.rcml-tmp``).
TEMP_SUFFIX = ".rcml-tmp"


def default_mode() -> int:
    """The mode a new file gets from ``open()`` under the current umask (``0o666 & ~umask``).

    Example:
        >>> old = os.umask(0o022)
        >>> oct(default_mode())
        '0o644'
        >>> _ = os.umask(old)
    """
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path to write ``path`` through: renamed into place when the block succeeds.

    Args:
        path: the file to write; its folder must exist.

    Yields:
        The temporary file's path (an empty file in the same folder) to write to.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "weights.bin"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_bytes(b"abc")
        >>> target.read_bytes(), [p.name for p in target.parent.iterdir()]
        (b'abc', ['weights.bin'])
    """
    target = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as written:  # the data is on disk before the name points at it
            os.fsync(written.fileno())
        os.chmod(tmp, default_mode())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically (:func:`atomic_path`); an I/O error raises.

    Example:
        >>> import tempfile
        >>> write_bytes(Path(tempfile.mkdtemp()) / "a.bin", b"xy").read_bytes()
        b'xy'
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        out.write(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Writes ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically.

    Example:
        >>> import tempfile
        >>> write_text(Path(tempfile.mkdtemp()) / "run.json", "{}\\n").read_text()
        '{}\\n'
    """
    return write_bytes(path, text.encode("utf-8"))


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Deletes the temporary files of :func:`atomic_path` left in ``folder`` (and below) by a kill.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / f".weights.bin.x1{TEMP_SUFFIX}").write_bytes(b"half")
        >>> [p.name for p in remove_stale_temps(folder)], list(folder.iterdir())
        (['.weights.bin.x1.rcml-tmp'], [])
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    stale = [p for p in root.rglob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


__all__ = ["TEMP_SUFFIX", "atomic_path", "default_mode", "remove_stale_temps", "write_bytes", "write_text"]

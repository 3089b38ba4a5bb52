"""Files written whole or not at all, with the permissions a plain ``open()`` would give.

A reader (another process, an upload, a resumed run) must never see half a file, and a failed
write must be an error, not a short file. :func:`atomic_path` hands out a temporary name in the
target's folder; when the block ends without an error the file is flushed to disk, given the mode
``0o666 & ~umask`` (``tempfile`` creates ``0600`` files, which other users of a shared model folder
could not read) and renamed over the target in one step. On an error it is removed.

The temporary name starts with ``.`` and ends with :data:`TEMP_SUFFIX`. A set of files written
by other libraries (a model's ``save_pretrained``) goes through :func:`staged_folder`: written
into a fresh folder next to the target, then moved in file by file, so what a killed writer
leaves behind is never inside the target (an upload of a model folder never carries it).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
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


def _publish(staging: Path, target: Path, file_mode: int) -> None:
    """Moves every file of ``staging`` to the same place under ``target``, one rename each."""
    folder_mode = file_mode | ((file_mode & 0o444) >> 2)  # r -> x for folders (0o644 -> 0o755)
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(staging.rglob("*")):
        destination = target / path.relative_to(staging)
        if path.is_dir():
            destination.mkdir(exist_ok=True)
            os.chmod(destination, folder_mode)
        else:
            os.chmod(path, file_mode)
            os.replace(path, destination)


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh folder next to ``target`` to write a set of files into; published when the block succeeds.

    Writers that make their own temporary files (safetensors, ``tempfile``) leave them, when killed,
    in the staging folder (``.<name>.staging-<random>.rcml-tmp``, removed by the next staged write),
    never in ``target``. On success every file is given the umask's mode and moved into ``target``
    with one rename each (each file appears whole; files of ``target`` not written are kept).

    Example:
        >>> import tempfile
        >>> model = Path(tempfile.mkdtemp()) / "rcml-baby"
        >>> with staged_folder(model) as staging:
        ...     _ = (staging / "modules.json").write_text("[]")
        >>> sorted(p.name for p in model.parent.iterdir()), (model / "modules.json").read_text()
        (['rcml-baby'], '[]')
    """
    target = Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.staging-*{TEMP_SUFFIX}"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", suffix=TEMP_SUFFIX, dir=target.parent))
    try:
        yield staging
        _publish(staging, target, default_mode())
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def published_name(folder: str | os.PathLike[str]) -> str:
    """The name ``folder`` is published under: the target's name for a :func:`staged_folder`.

    Example:
        >>> published_name("runs/.rcml-baby.staging-k2j4x9.rcml-tmp"), published_name("runs/rcml-baby")
        ('rcml-baby', 'rcml-baby')
    """
    name = Path(folder).name
    match = re.fullmatch(rf"\.(.+)\.staging-[^.]*{re.escape(TEMP_SUFFIX)}", name)
    return match.group(1) if match else name


__all__ = [
    "TEMP_SUFFIX",
    "atomic_path",
    "default_mode",
    "published_name",
    "staged_folder",
    "write_bytes",
    "write_text",
]

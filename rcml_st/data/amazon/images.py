"""Finding products' local images: a folder of files named by ASIN, indexed once.

A catalogue has up to millions of products; a ``stat`` per product on a network disk is slow.
The folder is listed once with :func:`os.scandir` (which reads the file type from the directory
entry on Linux) and lookups are then dictionary hits.
"""

from __future__ import annotations

import os
from pathlib import Path

from rcml_st.errors import InputDataError

#: Image extensions looked for, in order of preference when one ASIN has several files.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


def index_images(folder: str | os.PathLike[str]) -> dict[str, str]:
    """Lists a folder once and maps each ASIN to its image file.

    Files are matched by name: ``B000123.jpg`` is the image of ASIN ``B000123``. The extension
    is case-insensitive (``.JPG`` works) and so is the ASIN (ASINs are upper case; files saved
    in lower case still match). Subfolders are not searched.

    Args:
        folder: the images folder.

    Returns:
        Upper-cased ASIN -> absolute path of its image.

    Raises:
        InputDataError: when the folder does not exist or is not a folder.

    Example:
        >>> import pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "B0001.JPG").write_bytes(b"x"); _ = (d / "notes.txt").write_text("x")
        >>> sorted(index_images(d))
        ['B0001']
    """
    folder = Path(folder)
    if not folder.is_dir():
        problem = "images folder not found" if not folder.exists() else "--images must be a folder"
        raise InputDataError(problem, path=str(folder))
    rank = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
    best: dict[str, tuple[int, str]] = {}
    base = folder.resolve()
    with os.scandir(base) as entries:
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            order = rank.get(ext.lower())
            if order is None or not stem or not entry.is_file():
                continue
            key = stem.upper()
            current = best.get(key)
            # Several files for one ASIN: the preferred extension wins, then the name, so the
            # choice does not depend on the order the file system lists them in.
            if current is None or (order, entry.name) < (current[0], os.path.basename(current[1])):
                best[key] = (order, os.path.join(base, entry.name))
    return {key: path for key, (_, path) in best.items()}


def relative_image_path(image: str, output_dir: Path) -> str:
    """The path written to the data file: relative to the output file's folder when possible.

    Example:
        >>> relative_image_path("/data/amazon/images/B1.jpg", Path("/data/amazon"))
        'images/B1.jpg'
    """
    try:
        return Path(os.path.relpath(image, output_dir)).as_posix()
    except ValueError:  # another drive on Windows: no relative path exists
        return Path(image).as_posix()

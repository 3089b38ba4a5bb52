"""Streaming a catalogue file in bounded memory: validate it in one pass, then read it item by item.

:func:`read_catalog` holds every item and the relation graph; for indexing, which needs one
batch at a time, that is memory growing with the catalogue (about 0.24 GB per 100k items).
:func:`stream_catalog` instead

1. validates the whole file in one streaming pass, with the same checks and the same
   ``file:line: problem`` errors as :func:`read_catalog` (bad JSON, missing or duplicate id,
   neither text nor image, wrong types, missing or unreadable images, ``--skip-invalid``);
   it keeps only an 8-byte hash per item (to find duplicate ids) and the line numbers of
   skipped records, and imports nothing heavy (no torch), so bad data fails in about a second;
2. returns a :class:`CatalogStream`, which reads the file again, item by item, each time it
   is iterated, skipping what the validation skipped.

Relation targets are *not* checked against the file here (that needs every id at once):
:attr:`Item.relations` holds the relations as written. Indexing does not use them.

Example:
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "data.jsonl").write_text(
    ...     '{"id": "A", "text": "nursing pillow"}\\n'
    ...     '{"id": "B", "text": "bottle warmer", "brand": "Acme"}\\n')
    >>> stream = stream_catalog(folder / "data.jsonl")
    >>> len(stream), [item.id for item in stream], [item.metadata for item in stream]
    (2, ['A', 'B'], [{}, {'brand': 'Acme'}])
"""

from __future__ import annotations

import collections
import os
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rcml_st.data.catalog import (
    DUPLICATE_ID,
    Catalog,
    Item,
    _check_image,
    _open_lines,
    _parse_line,
    _RecordError,
    _validate_record,
    no_items_error,
)
from rcml_st.data.shard import Shard
from rcml_st.errors import InputDataError


@dataclass
class CatalogStream:
    """A validated catalogue file, read item by item (a fresh pass per iteration).

    Attributes:
        path: the data file.
        items: valid items in the whole file.
        selected: valid items in :attr:`shard` (what iterating yields; ``items`` without a shard).
        shard: the slice iterated, or ``None`` for all items.
        skipped: reason -> records skipped (``skip_invalid``).
        skip_examples: reason -> the full message of the first record skipped for it.
        skipped_lines: the line numbers skipped (so that every pass skips the same records).
    """

    path: Path
    items: int
    selected: int
    shard: Shard | None = None
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    skip_examples: dict[str, str] = field(default_factory=dict)
    skipped_lines: frozenset[int] = frozenset()

    def __len__(self) -> int:
        return self.selected

    def __iter__(self) -> Iterator[Item]:
        base_dir = self.path.resolve().parent
        where = str(self.path)
        try:
            for number, raw in _open_lines(self.path):
                if number in self.skipped_lines or not raw.strip():
                    continue
                try:
                    record = _parse_line(raw, first=number == 1)
                    if self.shard is not None and isinstance(record, dict):
                        item_id = record.get("id")
                        if isinstance(item_id, str) and not self.shard.contains(item_id):
                            continue
                    item_id, text, image, relations, metadata = _validate_record(record, base_dir)
                except _RecordError as bad:  # the file changed since it was validated
                    raise InputDataError(bad.problem, path=where, line=number) from None
                yield Item(item_id, text, image, dict(relations), metadata, number)
        except OSError as exc:
            raise InputDataError(f"cannot read file: {exc.strerror or exc}", path=where) from None

    def skip_summary(self) -> str:
        """One line saying how many records were skipped and why; ``""`` when none were."""
        return Catalog(self.path, [], self.skipped, 0, self.skip_examples).skip_summary()


def stream_catalog(
    path: str | os.PathLike[str],
    *,
    skip_invalid: bool = False,
    check_images: bool = True,
    shard: Shard | None = None,
) -> CatalogStream:
    """Validates a catalogue file in one streaming pass and returns it as a :class:`CatalogStream`.

    Memory: 8 bytes per item plus the skipped line numbers, whatever the size of the records.

    Args:
        path: the ``.jsonl`` file. Relative image paths are resolved against its folder.
        skip_invalid: skip bad records instead of failing on the first (counted by reason).
        check_images: check that every image exists and decodes (with a shard: only the images
            of the shard's items; every id and record is still checked).
        shard: iterate only this slice of the items (:class:`~rcml_st.data.shard.Shard`).

    Returns:
        The stream; ``len()`` is the number of items it yields.

    Raises:
        InputDataError: the first bad record as ``file:line: problem`` (unless ``skip_invalid``),
            or a missing, unreadable or empty file.

    Example:
        >>> import pathlib, tempfile
        >>> bad = pathlib.Path(tempfile.mkdtemp()) / "bad.jsonl"
        >>> _ = bad.write_text('{"id": "A", "text": "bib"}\\n{"id": "A", "text": "cup"}\\n')
        >>> stream_catalog(bad)
        Traceback (most recent call last):
        ...
        rcml_st.errors.InputDataError: ...bad.jsonl:2: duplicate id 'A' (first seen on line 1)
    """
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise InputDataError("file not found", path=where)
    if path.is_dir():
        raise InputDataError("is a directory, expected a .jsonl data file", path=where)
    base_dir = path.resolve().parent
    if shard is not None and shard.whole:
        shard = None

    hashes = array("q")  # hash(id) of every valid record: duplicates are found from these alone
    skipped: collections.Counter[str] = collections.Counter()
    examples: dict[str, str] = {}
    skipped_lines: set[int] = set()
    checked_images: set[str] = set()

    def reject(bad: _RecordError, number: int) -> None:
        error = InputDataError(bad.problem, path=where, line=number)
        if not skip_invalid:
            raise error from None
        skipped[bad.reason] += 1
        examples.setdefault(bad.reason, str(error))
        skipped_lines.add(number)

    items = selected = 0
    try:
        for number, raw in _open_lines(path):
            if not raw.strip():
                continue
            try:
                record = _parse_line(raw, first=number == 1)
                item_id, _text, image, _relations, _metadata = _validate_record(record, base_dir)
                wanted = shard is None or shard.contains(item_id)
                if check_images and wanted and image is not None and image not in checked_images:
                    _check_image(image)
                    checked_images.add(image)
            except _RecordError as bad:
                reject(bad, number)
                continue
            hashes.append(hash(item_id))
            selected += wanted
        items = len(hashes)
        repeated = _repeated_hashes(hashes)
        del hashes
        if repeated:
            for item_id in _reject_duplicates(path, repeated, skipped_lines, reject):
                items -= 1
                selected -= shard is None or shard.contains(item_id)
    except OSError as exc:
        raise InputDataError(f"cannot read file: {exc.strerror or exc}", path=where) from None

    if not items:
        raise no_items_error(path, where, skipped, examples)
    return CatalogStream(path, items, selected, shard, skipped, examples, frozenset(skipped_lines))


def _repeated_hashes(hashes: array) -> set[int]:
    """The hash values that occur more than once (almost always: duplicate ids)."""
    import numpy as np

    if len(hashes) < 2:
        return set()
    ordered = np.sort(np.frombuffer(hashes, dtype=np.int64))
    return set(ordered[1:][ordered[1:] == ordered[:-1]].tolist())


def _reject_duplicates(
    path: Path, repeated: set[int], skipped_lines: set[int], reject: Callable[[_RecordError, int], None]
) -> Iterator[str]:
    """Second look at the records whose id hash repeats: rejects each real duplicate, yields its id."""
    first_line: dict[str, int] = {}
    for number, raw in _open_lines(path):
        if number in skipped_lines or not raw.strip():
            continue
        item_id = _parse_line(raw, first=number == 1)["id"]  # validated: a string
        if hash(item_id) not in repeated:
            continue
        if item_id not in first_line:
            first_line[item_id] = number
            continue
        problem = f"duplicate id {item_id!r} (first seen on line {first_line[item_id]})"
        reject(_RecordError(DUPLICATE_ID, problem), number)
        yield item_id

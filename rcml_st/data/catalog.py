"""Reading, validating and writing catalogue files (JSON Lines, one item per line).

A catalogue file holds one JSON object per line (see ``docs/contract/data-format.md``)::

    {"id": "B0001", "text": "Organic cotton nursing pillow", "image": "images/B0001.png",
     "relations": {"used together for infant feeding": ["B0002"]}, "brand": "Acme"}

:func:`read_catalog` validates every record before any training starts and turns each problem
into one :class:`~rcml_st.errors.InputDataError` line naming the file, the line and the problem.
Images are only *checked* here (a cheap PIL ``verify``), never kept in memory: pixels are loaded
later, on demand, by :func:`rcml_st.data.images.load_image`.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

from rcml_st.errors import InputDataError

logger = logging.getLogger("rcml_st")

#: Keys with a meaning of their own; every other key of a record is metadata.
RESERVED_KEYS = ("id", "text", "image", "relations")

# Short reason keys used to count skipped records (``--skip-invalid``).
BAD_JSON = "bad JSON"
NOT_UTF8 = "not UTF-8"
NOT_OBJECT = "not an object"
MISSING_ID = "missing id"
BAD_ID = "bad id"
DUPLICATE_ID = "duplicate id"
NO_CONTENT = "no text or image"
BAD_TEXT = "bad text"
BAD_IMAGE = "bad image"
MISSING_IMAGE = "missing image"
UNREADABLE_IMAGE = "unreadable image"
BAD_RELATIONS = "bad relations"


class _RecordError(Exception):
    """One bad record: a short reason key (for counting) and the full problem text."""

    def __init__(self, reason: str, problem: str) -> None:
        super().__init__(problem)
        self.reason = reason
        self.problem = problem


class Edge(NamedTuple):
    """A relation edge between two items, as indices into :attr:`Catalog.items`."""

    source: int
    relation: str
    target: int


@dataclass(frozen=True)
class Item:
    """One validated catalogue item.

    Attributes:
        id: the item's unique id.
        text: the item's text, or ``None`` when it has none.
        image: the absolute path of the item's image, or ``None`` when it has none.
        relations: relation description -> target ids, restricted to targets present in the
            file (missing targets are dropped and counted by :func:`read_catalog`).
        metadata: every other key of the record, kept as-is.
        line: the 1-based line number of the record in its file (0 when not read from a file).

    Example:
        >>> item = Item(id="B1", text="bottle warmer", image=None, relations={}, metadata={}, line=1)
        >>> item.to_input()
        {'text': 'bottle warmer'}
    """

    id: str
    text: str | None
    image: str | None
    relations: dict[str, list[str]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    line: int = 0

    def to_input(self) -> dict[str, str]:
        """Returns the model input for this item: ``{"text": ..., "image": path}``.

        Only the modalities the item has are present; this dict is what the model's
        ``encode()`` accepts.
        """
        out: dict[str, str] = {}
        if self.text is not None:
            out["text"] = self.text
        if self.image is not None:
            out["image"] = self.image
        return out

    def to_record(self) -> dict[str, Any]:
        """Returns the item as a JSON-ready record (the inverse of reading one line).

        The image path is the absolute one; metadata keys follow the reserved keys.
        """
        record: dict[str, Any] = {"id": self.id}
        if self.text is not None:
            record["text"] = self.text
        if self.image is not None:
            record["image"] = self.image
        if self.relations:
            record["relations"] = {rel: list(targets) for rel, targets in self.relations.items()}
        record.update(self.metadata)
        return record


@dataclass
class Catalog:
    """A validated catalogue: items in file order plus derived relation structure.

    Attributes:
        path: the file the catalogue was read from (``None`` when built in memory).
        items: the items, in file order.
        skipped: reason -> number of records skipped (only with ``skip_invalid=True``).
        dropped_targets: how many relation targets were dropped because they are not in the file.
        skip_examples: reason -> the full message of the first record skipped for that reason.

    Example:
        >>> a = Item("A", "a", None, {"same brand": ["B"]}, {}, 1)
        >>> b = Item("B", "b", None, {}, {}, 2)
        >>> cat = Catalog(path=None, items=[a, b])
        >>> cat.relations, cat.edges
        (['same brand'], [Edge(source=0, relation='same brand', target=1)])
        >>> cat.neighbours("same brand")
        {0: {1}, 1: {0}}
    """

    path: Path | None
    items: list[Item]
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    dropped_targets: int = 0
    skip_examples: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index: dict[str, int] = {}
        for i, item in enumerate(self.items):
            first = self._index.setdefault(item.id, i)
            if first != i:
                raise InputDataError(
                    f"duplicate id {item.id!r} (first seen on line {self.items[first].line})",
                    path=self._where(),
                    line=item.line or None,
                )
        self._neighbours: dict[str, dict[int, set[int]]] = {}

    def _where(self) -> str | None:
        return str(self.path) if self.path is not None else None

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __getitem__(self, index: int) -> Item:
        return self.items[index]

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    @property
    def ids(self) -> list[str]:
        """The item ids, in file order."""
        return [item.id for item in self.items]

    def index_of(self, item_id: str) -> int:
        """Returns the position of an item in :attr:`items`.

        Raises:
            InputDataError: naming the id (and the file) when there is no such item.
        """
        try:
            return self._index[item_id]
        except KeyError:
            raise InputDataError(f"unknown id {item_id!r}", path=self._where()) from None

    @cached_property
    def edges(self) -> list[Edge]:
        """All relation edges, in file order, deduplicated.

        An edge is kept as written (``A -> B``); ``B -> A`` under the same relation is a separate
        edge when the file states it too. Use :meth:`neighbours` for the undirected view.
        Self-links and targets not in the catalogue are left out.
        """
        seen: set[Edge] = set()
        edges: list[Edge] = []
        for source, item in enumerate(self.items):
            for relation, targets in item.relations.items():
                for target_id in targets:
                    target = self._index.get(target_id)
                    if target is None or target == source:
                        continue
                    edge = Edge(source, relation, target)
                    if edge not in seen:
                        seen.add(edge)
                        edges.append(edge)
        return edges

    @cached_property
    def relations(self) -> list[str]:
        """The sorted relation vocabulary: descriptions with at least one edge."""
        return sorted({edge.relation for edge in self.edges})

    @cached_property
    def edge_counts(self) -> dict[str, int]:
        """Relation description -> number of (directed, deduplicated) edges, sorted by relation."""
        counts = collections.Counter(edge.relation for edge in self.edges)
        return {relation: counts[relation] for relation in sorted(counts)}

    def neighbours(self, relation: str) -> dict[int, set[int]]:
        """Returns the undirected adjacency under one relation.

        Args:
            relation: a relation description.

        Returns:
            item index -> indices of the items linked to it (in either direction) under the
            relation. Items without a link are absent; an unknown relation gives ``{}``.
            The result is cached: treat it as read-only.
        """
        adjacency = self._neighbours.get(relation)
        if adjacency is None:
            adjacency = {}
            for edge in self.edges:
                if edge.relation == relation:
                    adjacency.setdefault(edge.source, set()).add(edge.target)
                    adjacency.setdefault(edge.target, set()).add(edge.source)
            self._neighbours[relation] = adjacency
        return adjacency

    def subset(self, indices: Iterable[int]) -> Catalog:
        """Returns a catalogue of the given items (in the given order), edges restricted to them.

        Relation targets outside the subset are removed from the kept items, so the subset is
        self-consistent (as if it had been read from its own file).

        Args:
            indices: positions in :attr:`items`; duplicates are ignored after the first.
        """
        chosen: list[int] = []
        seen: set[int] = set()
        for i in indices:
            i = int(i)
            if not -len(self.items) <= i < len(self.items):
                raise IndexError(f"item index {i} out of range for a catalogue of {len(self.items)}")
            i %= len(self.items)
            if i not in seen:
                seen.add(i)
                chosen.append(i)
        kept_ids = {self.items[i].id for i in chosen}
        items = []
        for i in chosen:
            item = self.items[i]
            relations = {
                rel: [t for t in targets if t in kept_ids]
                for rel, targets in item.relations.items()
                if any(t in kept_ids for t in targets)
            }
            items.append(Item(item.id, item.text, item.image, relations, dict(item.metadata), item.line))
        return Catalog(
            path=self.path,
            items=items,
            skipped=collections.Counter(self.skipped),
            dropped_targets=self.dropped_targets,
            skip_examples=dict(self.skip_examples),
        )

    def skip_summary(self) -> str:
        """One line saying how many records were skipped and why; ``""`` when none were.

        Example: ``skipped 3 records: 2 bad JSON (first: data.jsonl:4: bad JSON: ...),
        1 missing image (first: ...)``.
        """
        total = sum(self.skipped.values())
        if not total:
            return ""
        parts = []
        for reason, count in self.skipped.most_common():
            example = self.skip_examples.get(reason)
            parts.append(f"{count} {reason}" + (f" (first: {example})" if example else ""))
        noun = "record" if total == 1 else "records"
        return f"skipped {total} {noun}: " + ", ".join(parts)


# --------------------------------------------------------------------------- reading


def _short(value: Any, limit: int = 40) -> str:
    """A short repr for messages, so one bad value cannot flood the error line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reject_constant(name: str) -> float:
    # NaN and Infinity are not JSON; Python's json accepts them, Qdrant payloads would not.
    raise ValueError(f"{name} is not valid JSON")


def _parse_line(raw: bytes, first: bool) -> Any:
    try:
        text = raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as exc:
        raise _RecordError(NOT_UTF8, f"not UTF-8 (byte {exc.start + 1} of the line)") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _RecordError(BAD_JSON, f"bad JSON: {exc.msg} (column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise _RecordError(BAD_JSON, f"bad JSON: {exc}") from None


def _check_image(path: str) -> None:
    """Checks that an image file exists and decodes to the end (no pixels kept).

    ``Image.verify()`` reads the headers only: a truncated JPEG passes it and fails later, when
    a batch is encoded. So the whole file is decoded here, JPEGs at 1/8 scale (the decoder still
    reads every byte; about a quarter faster).
    """
    from PIL import Image

    from rcml_st.data.images import describe_image_error

    if not os.path.exists(path):
        raise _RecordError(MISSING_IMAGE, f"image not found: {path}")
    if not os.path.isfile(path):
        raise _RecordError(MISSING_IMAGE, f"image is not a file: {path}")
    try:
        with Image.open(path) as img:
            img.draft("RGB", (1, 1))  # JPEG only: decode at the smallest scale
            img.load()
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, DecompressionBomb...)
        problem = f"unreadable image {path}: {describe_image_error(exc)}"
        raise _RecordError(UNREADABLE_IMAGE, problem) from None


def _validate_record(record: Any, base_dir: Path) -> tuple[str, str | None, str | None, dict, dict]:
    """Checks one parsed record; returns (id, text, image path, raw relations, metadata)."""
    if not isinstance(record, dict):
        kind = type(record).__name__ if record is not None else "null"
        raise _RecordError(NOT_OBJECT, f"expected a JSON object, got {kind}")

    item_id = record.get("id")
    if item_id is None:
        raise _RecordError(MISSING_ID, "missing id")
    if not isinstance(item_id, str):
        raise _RecordError(BAD_ID, f"id must be a string, got {_short(item_id)}")
    if not item_id.strip():
        raise _RecordError(MISSING_ID, "empty id")

    text = record.get("text")
    if text is not None and not isinstance(text, str):
        raise _RecordError(BAD_TEXT, f"item {item_id!r}: text must be a string, got {_short(text)}")
    if text is not None and not text.strip():
        text = None  # an empty text carries nothing: treat it as absent

    image = record.get("image")
    if image is not None and not isinstance(image, str):
        raise _RecordError(BAD_IMAGE, f"item {item_id!r}: image must be a string path, got {_short(image)}")
    if image is not None and not image.strip():
        image = None
    if image is not None:
        image = os.path.abspath(base_dir / os.path.expanduser(image))

    if text is None and image is None:
        raise _RecordError(NO_CONTENT, f"item {item_id!r} has neither text nor image")

    relations = record.get("relations")
    if relations is None:
        relations = {}
    if not isinstance(relations, dict):
        raise _RecordError(
            BAD_RELATIONS,
            f"item {item_id!r}: relations must be an object of description -> list of ids, "
            f"got {_short(relations)}",
        )
    for description, targets in relations.items():
        if not description.strip():
            raise _RecordError(BAD_RELATIONS, f"item {item_id!r}: empty relation description")
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise _RecordError(
                BAD_RELATIONS,
                f"item {item_id!r}: relation {description!r} must map to a list of id strings, "
                f"got {_short(targets)}",
            )

    metadata = {key: value for key, value in record.items() if key not in RESERVED_KEYS}
    return item_id, text, image, relations, metadata


def _open_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yields (1-based line number, raw bytes) for the file, streaming."""
    with open(path, "rb") as fh:
        yield from enumerate(fh, start=1)


def no_items_error(
    path: Path, where: str, skipped: collections.Counter, examples: dict[str, str]
) -> InputDataError:
    """The error for a data file without one valid item (all skipped, or empty)."""
    if skipped:
        summary = Catalog(path, [], skipped, 0, examples).skip_summary()
        return InputDataError(f"no valid items ({summary})", path=where)
    return InputDataError("no items (the file is empty)", path=where)


def read_catalog(
    path: str | os.PathLike[str],
    *,
    skip_invalid: bool = False,
    check_images: bool = True,
    on_warning: Callable[[str], None] | None = None,
) -> Catalog:
    """Reads and validates a catalogue file (JSON Lines, one item per line).

    Each problem is one :class:`~rcml_st.errors.InputDataError` naming the file, the line and what
    is wrong: bad JSON, not UTF-8, a line that is not an object, a missing, empty or non-string
    id, a duplicate id, neither text nor image, text or image of the wrong type, an image that
    is missing or not readable (when ``check_images``), relations of the wrong shape or an empty
    relation description. Blank lines are ignored. Relation targets that are not in the file are
    dropped and counted, and one warning says how many.

    Args:
        path: the ``.jsonl`` file. Relative image paths are resolved against its folder.
        skip_invalid: skip bad records instead of failing on the first one; the catalogue's
            :attr:`Catalog.skipped` counts them by reason (see :meth:`Catalog.skip_summary`).
        check_images: check that every image exists and decodes (read whole; no pixels are kept).
        on_warning: receives warning messages (default: a warning on the ``rcml_st`` logger).

    Returns:
        The validated :class:`Catalog`.

    Raises:
        InputDataError: on the first bad record (unless ``skip_invalid``), or when the file is
            missing, a directory, unreadable or holds no valid item.

    Example:
        >>> import pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "data.jsonl").write_text(
        ...     '{"id": "A", "text": "nursing pillow", "relations": {"same brand": ["B"]}}\\n'
        ...     '{"id": "B", "text": "bottle warmer", "brand": "Acme"}\\n')
        >>> cat = read_catalog(folder / "data.jsonl")
        >>> len(cat), cat.relations, cat.items[1].metadata
        (2, ['same brand'], {'brand': 'Acme'})
    """
    path = Path(path)
    where = str(path)
    warn = on_warning if on_warning is not None else logger.warning
    if not path.exists():
        raise InputDataError("file not found", path=where)
    if path.is_dir():
        raise InputDataError("is a directory, expected a .jsonl data file", path=where)
    base_dir = path.resolve().parent

    records: list[tuple[int, str, str | None, str | None, dict, dict]] = []
    first_line: dict[str, int] = {}
    skipped: collections.Counter[str] = collections.Counter()
    skip_examples: dict[str, str] = {}
    checked_images: set[str] = set()  # the same image file shared by several items is checked once

    try:
        lines = _open_lines(path)
        for number, raw in lines:
            if not raw.strip():
                continue
            try:
                record = _parse_line(raw, first=number == 1)
                item_id, text, image, relations, metadata = _validate_record(record, base_dir)
                if item_id in first_line:
                    raise _RecordError(
                        DUPLICATE_ID, f"duplicate id {item_id!r} (first seen on line {first_line[item_id]})"
                    )
                if check_images and image is not None and image not in checked_images:
                    _check_image(image)
                    checked_images.add(image)
            except _RecordError as bad:
                error = InputDataError(bad.problem, path=where, line=number)
                if not skip_invalid:
                    raise error from None
                skipped[bad.reason] += 1
                skip_examples.setdefault(bad.reason, str(error))
                continue
            first_line[item_id] = number
            records.append((number, item_id, text, image, relations, metadata))
    except OSError as exc:
        raise InputDataError(f"cannot read file: {exc.strerror or exc}", path=where) from None

    if not records:
        raise no_items_error(path, where, skipped, skip_examples)

    # Second pass over the (small) parsed records: keep only targets present in the file.
    dropped = 0
    dropped_example: str | None = None
    self_links = 0
    items: list[Item] = []
    for number, item_id, text, image, raw_relations, metadata in records:
        relations: dict[str, list[str]] = {}
        for description, targets in raw_relations.items():
            kept: list[str] = []
            for target in targets:
                if target not in first_line:
                    dropped += 1
                    dropped_example = dropped_example or target
                elif target == item_id:
                    self_links += 1  # "related to itself" teaches nothing and would be a trivial query
                elif target not in kept:
                    kept.append(target)
            if kept:
                relations[description] = kept
        items.append(Item(item_id, text, image, relations, metadata, number))

    if dropped:
        noun = "target" if dropped == 1 else "targets"
        warn(f"{where}: dropped {dropped} relation {noun} not in the file (e.g. {dropped_example!r})")
    if self_links:
        noun = "link" if self_links == 1 else "links"
        warn(f"{where}: ignored {self_links} relation {noun} from an item to itself")
    return Catalog(path, items, skipped, dropped, skip_examples)


# --------------------------------------------------------------------------- writing


def _json_default(value: Any) -> Any:
    # numpy scalars and paths show up in generated metadata; make them plain JSON.
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_catalog(items: Iterable[Mapping[str, Any] | Item], path: str | os.PathLike[str]) -> Path:
    """Writes records as a catalogue file (JSON Lines, UTF-8, one object per line).

    Used by the generators and converters. The file is written to a temporary name and then
    moved into place, so a failure never leaves half a catalogue behind.

    Args:
        items: records (dicts in the data format, or :class:`Item` objects).
        path: the output ``.jsonl`` file; its folder is created when needed.

    Returns:
        The path written.

    Example:
        >>> import pathlib, tempfile
        >>> out = write_catalog([{"id": "A", "text": "bib"}], pathlib.Path(tempfile.mkdtemp()) / "x.jsonl")
        >>> out.read_text()
        '{"id": "A", "text": "bib"}\\n'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            for record in items:
                if isinstance(record, Item):
                    record = record.to_record()
                _check_finite(record)
                fh.write(json.dumps(record, ensure_ascii=False, allow_nan=False, default=_json_default))
                fh.write("\n")
        # mkstemp creates 0600 files; give the catalogue the mode a plain open() would (umask applies).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def _check_finite(record: Mapping[str, Any]) -> None:
    # json.dumps(allow_nan=False) raises too, but without saying which record: say it here.
    for key, value in record.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"record {record.get('id')!r}: {key} is {value}, which JSON cannot hold")

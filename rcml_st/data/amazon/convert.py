"""Converting Amazon product metadata into an rcml-st data file, streaming.

Pass 1 reads the file once to learn which products will be items (their ASINs, and a short
document per product when relation types are clustered). Pass 2 reads it again and writes each
item with its relations restricted to products of the catalogue. Memory holds the ASIN index
(and the edges, with ``cluster``), never whole records: a multi-gigabyte file converts in flat
memory. With ``cluster`` the items of pass 2 go to a temporary file, the co-purchase edges are
clustered into named relation types, and a last pass over that file writes the types' names.
The output is written to a temporary file and renamed at the end, so a failed run leaves the
previous output (or none) in place.
"""

from __future__ import annotations

import collections
import json
import os
import tempfile
from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcml_st.data.amazon.clustering import cluster_edges, item_document
from rcml_st.data.amazon.formats import (
    FORMATS,
    MISSING_ASIN,
    AmazonRecord,
    RecordError,
    detect_format,
    item_text,
    normalise,
    parse_line,
)
from rcml_st.data.amazon.images import index_images, relative_image_path
from rcml_st.data.amazon.reader import check_input, iter_lines
from rcml_st.data.amazon.relations import CO_PURCHASE, relation_names
from rcml_st.data.catalog import write_catalog
from rcml_st.errors import InputDataError, UsageError

#: ``on_progress(phase, bytes_done, bytes_total)``: told about each pass's progress.
ProgressCallback = Callable[[str, int, int], None]

# Reasons a record is left out on purpose (not errors: never fatal).
DUPLICATE_ASIN = "duplicate ASIN (first kept)"
NO_IMAGE = "no image (--require-image)"
NO_CONTENT = "no text and no image"

DEFAULT_MAX_TARGETS = 20
DEFAULT_MAX_TEXT_CHARS = 300


@dataclass
class ConversionSummary:
    """What a conversion did, for the closing report.

    Attributes:
        input: the metadata file read.
        output: the data file written.
        format: the metadata format read ("2014", "2018" or "2023").
        records: non-blank lines read.
        items: items written.
        images: items written with an image.
        image_files: image files found in the images folder (``None`` without one).
        skipped: reason -> records left out (bad records only with ``skip_invalid``).
        skip_examples: reason -> where the first such record was (``file:line: problem``).
        edges: relation description -> edges written.
        dropped: raw relation name -> targets dropped because they are not in the catalogue.
        capped: raw relation name -> targets dropped by ``max_targets``.
        self_links: targets equal to their own source product (dropped).
        prices_unparsed: written items whose price was present but not a single number.
        relation_types: ``(name, edges)`` of each relation type made by ``cluster``.
    """

    input: Path
    output: Path
    format: str = ""
    records: int = 0
    items: int = 0
    images: int = 0
    image_files: int | None = None
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    skip_examples: dict[str, str] = field(default_factory=dict)
    edges: collections.Counter[str] = field(default_factory=collections.Counter)
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    capped: collections.Counter[str] = field(default_factory=collections.Counter)
    self_links: int = 0
    prices_unparsed: int = 0
    relation_types: list[tuple[str, int]] = field(default_factory=list)

    def skip(self, reason: str, where: str) -> None:
        """Counts one record left out, remembering where the first of its kind was."""
        self.skipped[reason] += 1
        self.skip_examples.setdefault(reason, where)


@dataclass
class _Pass1:
    """What the first pass learns: the catalogue's products and the lines to leave out."""

    fmt: str
    index: dict[str, int]  # ASIN -> product number, in file order
    skip_lines: set[int]  # lines pass 2 must not write (bad, duplicate or filtered records)
    documents: list[str]  # one short document per product, only when clustering


def convert_amazon(
    meta_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    images: str | os.PathLike[str] | None = None,
    require_image: bool = False,
    fmt: str | None = None,
    names: Mapping[str, str | None] | None = None,
    max_targets: int = DEFAULT_MAX_TARGETS,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
    cluster: int | None = None,
    seed: int = 0,
    skip_invalid: bool = False,
    on_progress: ProgressCallback | None = None,
) -> ConversionSummary:
    """Converts an Amazon metadata file (2014, 2018 or 2023 format) into an rcml-st data file.

    Args:
        meta_path: the metadata file (``meta_Baby.json.gz``, ``meta_Baby.jsonl``...), gzip or not.
        output: the ``.jsonl`` data file to write (its folder is created when needed).
        images: a folder of images named by ASIN (``B000123.jpg``); items without one stay
            text-only.
        require_image: leave out products without a local image.
        fmt: ``"2014"``, ``"2018"`` or ``"2023"`` to force a format; detected from the first
            valid record when ``None``.
        names: raw relation name -> description (or ``None`` to leave it out), over the defaults
            of :data:`~rcml_st.data.amazon.relations.DEFAULT_RELATION_NAMES`.
        max_targets: keep at most this many targets per relation list of a product (0: all).
        max_text_chars: cap on the length of an item's text (0: no cap).
        cluster: group the co-purchase edges into this many named relation types.
        seed: seeds the clustering.
        skip_invalid: count and skip bad records instead of stopping at the first.
        on_progress: receives ``(phase, bytes read, file size)`` during each pass.

    Returns:
        A :class:`ConversionSummary`.

    Raises:
        InputDataError: a missing or corrupt file, a bad record (without ``skip_invalid``), or
            nothing left to write. The message names the file and line.
        UsageError: bad option values.

    Example:
        >>> import pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "meta.json").write_text(
        ...     "{'asin': 'B1', 'title': 'Bottle', 'related': {'bought_together': ['B2', 'B9']}}\\n"
        ...     "{'asin': 'B2', 'title': 'Nipple', 'price': 3.5}\\n")
        >>> summary = convert_amazon(d / "meta.json", d / "baby.jsonl")
        >>> summary.format, summary.items, dict(summary.edges), dict(summary.dropped)
        ('2014', 2, {'frequently bought together': 1}, {'bought_together': 1})
        >>> (d / "baby.jsonl").read_text().splitlines()[0]
        '{"id": "B1", "text": "Bottle", "relations": {"frequently bought together": ["B2"]}}'
    """
    meta_path = check_input(meta_path)
    output = Path(output)
    _check_options(meta_path, output, fmt, max_targets, max_text_chars, cluster)
    descriptions = relation_names(names)
    summary = ConversionSummary(input=meta_path, output=output)
    image_index = index_images(images) if images is not None else {}
    if images is not None:
        summary.image_files = len(image_index)
    progress = on_progress or (lambda phase, done, total: None)
    passes = 3 if cluster else 2

    first = _scan(meta_path, fmt, image_index, require_image, bool(cluster), skip_invalid, summary, progress)
    summary.format = first.fmt
    if not first.index:
        why = _skip_text(summary) or "the file holds no product records"
        raise InputDataError(f"no items to write ({why})", path=str(meta_path))

    edge_sources = array("q")
    edge_targets = array("q")
    writer = _ItemWriter(
        path=meta_path,
        output=output,
        first=first,
        image_index=image_index,
        descriptions=descriptions,
        max_targets=max_targets,
        max_text_chars=max_text_chars,
        summary=summary,
        edges=(edge_sources, edge_targets) if cluster else None,
    )
    phase = f"pass 2/{passes}: writing items"
    if not cluster:
        write_catalog(writer.items(lambda done, total: progress(phase, done, total), final=True), output)
        return summary

    output.parent.mkdir(parents=True, exist_ok=True)
    fd, staged_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".pass2.tmp", dir=output.parent)
    os.close(fd)
    staged = Path(staged_name)
    try:
        write_catalog(writer.items(lambda done, total: progress(phase, done, total), final=False), staged)
        types = cluster_edges(first.documents, edge_sources, edge_targets, cluster, seed=seed)
        first.documents.clear()  # the clustering was their only use
        phase = f"pass 3/{passes}: naming relation types"
        named = writer.rename(
            staged, types.names, iter(types.labels.tolist()), lambda d, t: progress(phase, d, t)
        )
        write_catalog(named, output)
        # Sizes after merging: an edge both "also bought" and "bought together" is one edge of its type.
        sizes = [(name, summary.edges[name]) for name in types.names]
        summary.relation_types = sorted(sizes, key=lambda pair: -pair[1])
    finally:
        staged.unlink(missing_ok=True)
    return summary


def _check_options(
    meta_path: Path, output: Path, fmt: str | None, max_targets: int, max_text_chars: int, cluster: int | None
) -> None:
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r} (use one of {', '.join(FORMATS)})")
    if max_targets < 0:
        raise UsageError("--max-targets must be 0 (no cap) or more")
    if max_text_chars < 0:
        raise UsageError("--max-text-chars must be 0 (no cap) or more")
    if cluster is not None and cluster < 1:
        raise UsageError("--cluster must be at least 1")
    if output.exists() and output.is_dir():
        raise UsageError(f"--output {output} is a folder; give a .jsonl file path")
    if output.resolve() == meta_path.resolve():
        raise UsageError("--output must not be the metadata file itself")


def _skip_text(summary: ConversionSummary) -> str:
    return ", ".join(f"{count} {reason}" for reason, count in summary.skipped.most_common())


def _scan(
    path: Path,
    fmt: str | None,
    image_index: dict[str, str],
    require_image: bool,
    clustering: bool,
    skip_invalid: bool,
    summary: ConversionSummary,
    progress: ProgressCallback,
) -> _Pass1:
    """Pass 1: detects the format, validates every record and indexes the catalogue's products."""
    where = str(path)
    total = path.stat().st_size
    phase = f"pass 1/{3 if clustering else 2}: reading products"
    progress(phase, 0, total)
    index: dict[str, int] = {}
    skip_lines: set[int] = set()
    documents: list[str] = []
    detected = fmt
    for number, raw in iter_lines(path, lambda done: progress(phase, done, total)):
        if not raw.strip():
            continue
        summary.records += 1
        record: dict[str, Any] = {}
        syntax = "json"
        try:
            record, syntax = parse_line(raw, detected, first=number == 1)
            if detected is None:
                detected = detect_format(record, syntax)
                if detected is None:
                    raise RecordError(MISSING_ASIN, "missing 'asin' (or 'parent_asin'): no product id")
            product = normalise(record, detected)
        except RecordError as bad:
            problem = bad.problem
            if fmt is not None and bad.reason == MISSING_ASIN:
                looks = detect_format(record, syntax)
                if looks not in (None, fmt):
                    problem += f"; the record looks like the {looks} format (try without --format)"
            error = InputDataError(problem, path=where, line=number)
            if not skip_invalid:
                raise error from None
            summary.skip(bad.reason, str(error))
            skip_lines.add(number)
            continue
        reason = None
        if product.asin in index:
            reason = DUPLICATE_ASIN
        elif product.asin.upper() not in image_index:
            if require_image:
                reason = NO_IMAGE
            elif not (product.title or product.description):
                reason = NO_CONTENT
        if reason is not None:
            summary.skip(reason, f"{where}:{number}: {product.asin}")
            skip_lines.add(number)
            continue
        index[product.asin] = len(index)
        if clustering:
            documents.append(item_document(product))
    if detected is None:
        detected = fmt or ""
    return _Pass1(detected, index, skip_lines, documents)


class _ItemWriter:
    """Pass 2 (and 3): builds the output records of the products kept by pass 1."""

    def __init__(
        self,
        *,
        path: Path,
        output: Path,
        first: _Pass1,
        image_index: dict[str, str],
        descriptions: Mapping[str, str | None],
        max_targets: int,
        max_text_chars: int,
        summary: ConversionSummary,
        edges: tuple[array, array] | None,
    ) -> None:
        self.path = path
        self.output_dir = output.parent.resolve()
        self.first = first
        self.image_index = image_index
        self.descriptions = descriptions
        self.max_targets = max_targets
        self.max_text_chars = max_text_chars
        self.summary = summary
        self.edges = edges

    def items(self, progress: Callable[[int, int], None], final: bool) -> Iterator[dict[str, Any]]:
        """Yields one record per kept product, in file order.

        With ``final`` the relations carry their descriptions; otherwise their raw names (for
        :meth:`rename` to finish), and co-purchase edges are appended to ``self.edges``.
        """
        where = str(self.path)
        total = self.path.stat().st_size
        progress(0, total)
        index = self.first.index
        for number, raw in iter_lines(self.path, lambda done: progress(done, total)):
            if number in self.first.skip_lines or not raw.strip():
                continue
            try:
                product = normalise(parse_line(raw, self.first.fmt, first=number == 1)[0], self.first.fmt)
            except RecordError:
                product = None
            if product is None or index.get(product.asin) is None:
                raise InputDataError("the file changed while it was being converted", path=where, line=number)
            record = self._record(product, self._relations(product, index[product.asin]))
            if final:
                self._describe(record, None, None)
            yield record

    def _relations(self, product: AmazonRecord, source: int) -> dict[str, list[str]]:
        """The product's relation lists restricted to the catalogue, de-duplicated and capped."""
        index = self.first.index
        summary = self.summary
        kept_lists: dict[str, list[str]] = {}
        for name, targets in product.relations.items():
            if self.descriptions.get(name) is None:
                continue  # left out with --relation-names
            clustered = self.edges is not None and name in CO_PURCHASE
            kept: list[str] = []
            for target in targets:
                target = target.strip()
                number = index.get(target)
                if target == product.asin:
                    summary.self_links += 1
                elif number is None:
                    summary.dropped[name] += 1
                elif target in kept:
                    continue
                elif self.max_targets and len(kept) >= self.max_targets:
                    summary.capped[name] += 1
                else:
                    kept.append(target)
                    if clustered:
                        self.edges[0].append(source)
                        self.edges[1].append(number)
            if kept:
                kept_lists[name] = kept
        return kept_lists

    def _record(self, product: AmazonRecord, relations: dict[str, list[str]]) -> dict[str, Any]:
        record: dict[str, Any] = {"id": product.asin}
        text = item_text(product, self.max_text_chars)
        if text:
            record["text"] = text
        image = self.image_index.get(product.asin.upper())
        if image is not None:
            record["image"] = relative_image_path(image, self.output_dir)
            self.summary.images += 1
        if relations:
            record["relations"] = relations
        if product.brand:
            record["brand"] = product.brand
        if product.price is not None:
            record["price"] = product.price
        elif product.price_unparsed:
            self.summary.prices_unparsed += 1
        if product.categories:
            record["categories"] = product.categories
        self.summary.items += 1
        return record

    def _describe(
        self, record: dict[str, Any], type_names: list[str] | None, labels: Iterator[int] | None
    ) -> None:
        """Replaces raw relation names by descriptions (co-purchase edges by their type's name)."""
        raw = record.pop("relations", None)
        if not raw:
            return
        described: dict[str, list[str]] = {}
        for name, targets in raw.items():
            if type_names is not None and labels is not None and name in CO_PURCHASE:
                for target in targets:
                    _add(described.setdefault(type_names[next(labels)], []), target)
            else:
                bucket = described.setdefault(self.descriptions[name], [])
                for target in targets:
                    _add(bucket, target)
        for description, targets in described.items():
            self.summary.edges[description] += len(targets)
        # Keep "relations" in its place after "image", before the metadata.
        metadata = {k: record.pop(k) for k in list(record) if k not in ("id", "text", "image")}
        record["relations"] = described
        record.update(metadata)

    def rename(
        self, staged: Path, type_names: list[str], labels: Iterator[int], progress: Callable[[int, int], None]
    ) -> Iterator[dict[str, Any]]:
        """Pass 3: re-reads the staged records and gives their co-purchase edges their type's name.

        Edges were collected in the order they were written, so the labels are consumed in the
        same order here: item by item, relation by relation, target by target.
        """
        total = staged.stat().st_size
        done = 0
        progress(0, total)
        with open(staged, "rb") as fh:
            for number, line in enumerate(fh, start=1):
                done += len(line)
                record = json.loads(line)
                self._describe(record, type_names, labels)
                if number % 2000 == 0:
                    progress(done, total)
                yield record
        progress(done, total)


def _add(bucket: list[str], target: str) -> None:
    # Two raw relations can share a description (or a type): merge their targets without repeats.
    if target not in bucket:
        bucket.append(target)

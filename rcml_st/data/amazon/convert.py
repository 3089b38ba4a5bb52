"""Converting Amazon product metadata into an rcml-st data file, streaming.

Pass 1 reads the metadata file once: it parses and checks every record, keeps the ASIN index of
the products that will be items (and, for ``cluster``, one short document per product), and
stages each kept product, already reduced to what the output needs (text, image, brand, price,
categories, raw relation lists), as one line of a temporary file. The last pass reads that
staged file and writes each item with its relations restricted to products of the catalogue.
With ``cluster`` a pass in between collects the co-purchase edges to group them into named
relation types. Parsing (slow for the 2014 Python literals) happens once; memory holds the
index, the edges and the short documents, never whole records, so a multi-gigabyte file
converts in flat memory. The output is written to a temporary file and renamed at the end: a
failed run leaves the previous output (or none) in place.
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

from rcml_st.data.amazon.cleaning import BoilerplateCounter, remove_sentences
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
from rcml_st.data.amazon.reviews import CO_REVIEW_SIGNIFICANCE, MIN_CO_REVIEWS, REVIEW_RELATION, review_edges
from rcml_st.data.catalog import write_catalog
from rcml_st.data.interactions.cooccurrence import CooccurrenceStats
from rcml_st.data.interactions.source import LogStats
from rcml_st.errors import InputDataError, UsageError

#: ``on_progress(phase, bytes_done, bytes_total)``: told about each pass's progress.
ProgressCallback = Callable[[str, int, int], None]

# Reasons a record is left out on purpose (not errors: never fatal).
DUPLICATE_ASIN = "duplicate ASIN (first kept)"
NO_IMAGE = "no image (--require-image)"
NO_CONTENT = "no text and no image"

DEFAULT_MAX_TARGETS = 20
DEFAULT_MAX_TEXT_CHARS = 300

_PROGRESS_EVERY = 2000  # lines between progress reports in the staged-file passes


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
        boilerplate_sentences: distinct sentences found recurring across many brands (removed).
        boilerplate_items: items whose text lost at least one such sentence.
        reviews: the review file read (``None`` without one).
        review_stats: reviews read and left out (not verified, low rating), by reason.
        review_counting: the pair counting of "reviewed by the same customers".
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
    boilerplate_sentences: int = 0
    boilerplate_items: int = 0
    reviews: Path | None = None
    review_stats: LogStats = field(default_factory=LogStats)
    review_counting: CooccurrenceStats = field(default_factory=CooccurrenceStats)

    def skip(self, reason: str, where: str) -> None:
        """Counts one record left out, remembering where the first of its kind was."""
        self.skipped[reason] += 1
        self.skip_examples.setdefault(reason, where)

    def rows(self) -> list[tuple[str, str, str]]:
        """The closing report as ``(what, count, details)`` rows (``rcml-st prepare amazon`` prints them).

        Example:
            >>> ConversionSummary(Path("meta.json"), Path("out.jsonl"), records=3, items=2).rows()
            [('records read', '3', ''), ('items written', '2', '')]
        """
        rows: list[tuple[str, str, str]] = []

        def add(what: str, count: int, details: str = "") -> None:
            rows.append((what, f"{count:,}", details))

        add("records read", self.records)
        add("items written", self.items)
        if self.image_files is not None:
            without = f"{self.items - self.images:,} items text-only"
            add("images found", self.images, f"{without}; {self.image_files:,} image files in the folder")
        for reason, count in self.skipped.most_common():
            add("skipped", count, f"{reason} (first: {self.skip_examples.get(reason, '')})")
        for description, count in sorted(self.edges.items(), key=lambda kv: (-kv[1], kv[0])):
            add("edges", count, description)
        if self.reviews is not None:
            stats, counting = self.review_stats, self.review_counting
            add("reviews read", stats.rows, self.reviews.name)
            for reason, count in stats.skipped.most_common():
                add("reviews left out", count, reason)
            add("reviews dropped", stats.unknown_items, "product not in the catalogue")
            add("customers", counting.users, f"{counting.capped_users:,} cut to --max-items-per-user")
        for name, count in sorted(self.dropped.items()):
            add("targets dropped", count, f"{name}: not in the catalogue")
        for name, count in sorted(self.capped.items()):
            add("targets capped", count, f"{name}: over --max-targets")
        if self.self_links:
            add("self-links dropped", self.self_links, "a product listed as related to itself")
        if self.boilerplate_sentences:
            removed = f"removed from {self.boilerplate_items:,} item texts"
            add("boilerplate", self.boilerplate_sentences, f"sentences recurring across brands, {removed}")
        if self.prices_unparsed:
            add("prices not kept", self.prices_unparsed, "not a single number (ranges, text)")
        return rows


@dataclass
class _Options:
    images: dict[str, str]  # upper-cased ASIN -> image path
    output_dir: Path
    require_image: bool
    fmt: str | None
    descriptions: Mapping[str, str | None]
    max_targets: int
    max_text_chars: int
    clustering: bool
    skip_invalid: bool
    boilerplate_min_groups: int | None = None


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
    boilerplate_min_groups: int | None = None,
    reviews: str | os.PathLike[str] | None = None,
    verified_only: bool = True,
    min_rating: float | None = None,
    review_relation: str = REVIEW_RELATION,
    max_items_per_user: int = 100,
    min_co_reviews: int = MIN_CO_REVIEWS,
    co_review_significance: float = CO_REVIEW_SIGNIFICANCE,
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
        boilerplate_min_groups: a description sentence found in products of at least this many
            brands is boilerplate and left out of the item texts; ``None`` picks
            ``max(4, products / 1000)``, 0 keeps every sentence. See
            :class:`~rcml_st.data.amazon.cleaning.BoilerplateCounter`.
        reviews: a review file of the same category (2014, 2018 or 2023 release): products
            reviewed by the same customers become related under ``review_relation``, each
            keeping its ``max_targets`` partners reviewed together most often. With ``cluster``
            these edges are grouped with the co-purchase lists.
        verified_only: count only reviews of verified purchases (reviews without the flag,
            as in 2014, count).
        min_rating: count only reviews rated at least this.
        review_relation: the description of the review relation.
        max_items_per_user: a customer with more reviewed products keeps the most recent ones.
        min_co_reviews: products reviewed together by fewer customers are not related (2 by
            default: one customer's two reviews are mostly noise, see :mod:`~.reviews`).
        co_review_significance: and only when reviewed together this many standard deviations
            more often than customers reviewing at random would (3 by default; 0: off).
        on_progress: receives ``(phase, bytes read, bytes to read)`` during each pass.

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
    summary = ConversionSummary(input=meta_path, output=output)
    if reviews is not None:
        summary.reviews = check_input(reviews)
        if not review_relation or not review_relation.strip():
            raise UsageError("the review relation description must be a non-empty string")
        if max_items_per_user < 2 or min_co_reviews < 1:
            raise UsageError("--max-items-per-user must be at least 2 and --min-co-reviews at least 1")
    image_index = index_images(images) if images is not None else {}
    if images is not None:
        summary.image_files = len(image_index)
    options = _Options(
        images=image_index,
        output_dir=output.parent.resolve(),
        require_image=require_image,
        fmt=fmt,
        descriptions=relation_names(names),
        max_targets=max_targets,
        max_text_chars=max_text_chars,
        clustering=bool(cluster),
        skip_invalid=skip_invalid,
        boilerplate_min_groups=boilerplate_min_groups,
    )
    progress = on_progress or (lambda phase, done, total: None)
    passes = 2 + bool(cluster) + (reviews is not None)

    output.parent.mkdir(parents=True, exist_ok=True)
    fd, staged_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".products.tmp", dir=output.parent)
    os.close(fd)
    staged = Path(staged_name)
    try:
        phase = f"pass 1/{passes}: reading products"
        index, documents, counter = _stage(
            meta_path, staged, options, summary, lambda d, t: progress(phase, d, t)
        )
        if not index:
            why = _skip_text(summary) or "the file holds no product records"
            raise InputDataError(f"no items to write ({why})", path=str(meta_path))
        boilerplate = counter.boilerplate(options.boilerplate_min_groups)
        summary.boilerplate_sentences = len(boilerplate)
        linker = _Linker(index, options, summary, boilerplate)
        if summary.reviews is not None:
            progress(f"pass 2/{passes}: counting customers' reviews", 0, 0)
            partners, summary.review_counting = review_edges(
                summary.reviews,
                list(index),
                verified_only=verified_only,
                min_rating=min_rating,
                skip_invalid=skip_invalid,
                top_k=max_targets,
                min_count=min_co_reviews,
                significance=co_review_significance,
                max_items_per_user=max_items_per_user,
                temp_dir=output.parent,
                stats=summary.review_stats,
            )
            linker.add_reviews(partners, review_relation.strip())
        type_names: list[str] | None = None
        labels: Iterator[int] | None = None
        if cluster:
            phase = f"pass {passes - 1}/{passes}: collecting co-purchase edges"
            sources, targets = linker.co_purchase_edges(staged, lambda d, t: progress(phase, d, t))
            types = cluster_edges(documents, sources, targets, cluster, seed=seed)
            documents.clear()  # the clustering was their only use
            type_names, labels = types.names, iter(types.labels.tolist())
        phase = f"pass {passes}/{passes}: writing items"
        write_catalog(linker.items(staged, type_names, labels, lambda d, t: progress(phase, d, t)), output)
        if type_names is not None:
            # Sizes after merging: an edge both "also bought" and "bought together" is one edge.
            sizes = [(name, summary.edges[name]) for name in type_names]
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


def _stage(
    path: Path,
    staged: Path,
    options: _Options,
    summary: ConversionSummary,
    progress: Callable[[int, int], None],
) -> tuple[dict[str, int], list[str], BoilerplateCounter]:
    """Pass 1: detects the format, checks every record and stages the catalogue's products.

    Each staged line is a JSON array
    ``[asin, title, description, image, brand, price, categories, relations]`` with the raw
    relation lists (those not left out by the relation names). The item text is made in the
    last pass, once the boilerplate sentences are known.

    Returns:
        The ASIN -> product number index, one document per product when clustering, and the
        description sentences counted by brand.
    """
    where = str(path)
    total = path.stat().st_size
    progress(0, total)
    index: dict[str, int] = {}
    documents: list[str] = []
    counter = BoilerplateCounter()
    left_out: set[str] = set()  # products left out on purpose: a later copy is a duplicate too
    detected = options.fmt
    with open(staged, "w", encoding="utf-8", newline="\n") as out:
        for number, raw in iter_lines(path, lambda done: progress(done, total)):
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
                if options.fmt is not None and bad.reason == MISSING_ASIN:
                    looks = detect_format(record, syntax)
                    if looks not in (None, options.fmt):
                        problem += f"; the record looks like the {looks} format (try without --format)"
                error = InputDataError(problem, path=where, line=number)
                if not options.skip_invalid:
                    raise error from None
                summary.skip(bad.reason, str(error))
                continue

            text = item_text(product, options.max_text_chars)
            image = options.images.get(product.asin.upper())
            reason = None
            if product.asin in index or product.asin in left_out:
                reason = DUPLICATE_ASIN
            elif image is None and options.require_image:
                reason = NO_IMAGE
            elif image is None and text is None:
                reason = NO_CONTENT
            if reason is not None:
                if reason != DUPLICATE_ASIN:
                    left_out.add(product.asin)
                summary.skip(reason, f"{where}:{number}: {product.asin}")
                continue

            index[product.asin] = len(index)
            counter.add(product.description, group=product.brand.lower() or product.asin)
            if options.clustering:
                documents.append(item_document(product))
            if product.price_unparsed:
                summary.prices_unparsed += 1
            relations = {
                name: [target.strip() for target in targets]
                for name, targets in product.relations.items()
                if options.descriptions.get(name) is not None
            }
            image_path = relative_image_path(image, options.output_dir) if image is not None else None
            staged_record = [
                product.asin,
                product.title,
                product.description,
                image_path,
                product.brand,
                product.price,
                product.categories,
                relations,
            ]
            out.write(json.dumps(staged_record, ensure_ascii=False))
            out.write("\n")
    summary.format = detected or ""
    return index, documents, counter


def _staged_lines(staged: Path, progress: Callable[[int, int], None]) -> Iterator[list[Any]]:
    total = staged.stat().st_size
    done = 0
    progress(0, total)
    with open(staged, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            done += len(line)
            if number % _PROGRESS_EVERY == 0:
                progress(done, total)
            yield json.loads(line)
    progress(done, total)


class _Linker:
    """The last passes: relations restricted to the catalogue, then the output records."""

    def __init__(
        self,
        index: dict[str, int],
        options: _Options,
        summary: ConversionSummary,
        boilerplate: frozenset[int] = frozenset(),
    ) -> None:
        self.index = index
        self.options = options
        self.summary = summary
        self.boilerplate = boilerplate
        self.review_partners: dict[str, list[str]] = {}
        self.review_relation = REVIEW_RELATION

    def add_reviews(self, partners: dict[str, list[str]], description: str) -> None:
        """Adds "reviewed by the same customers" edges: product id -> partner ids."""
        self.review_partners = partners
        self.review_relation = description

    def _reviewed_with(self, asin: str) -> list[str]:
        return self.review_partners.get(asin, [])

    def _text(self, asin: str, title: str, description: str, brand: str | None) -> str | None:
        """The item text, without boilerplate sentences.

        A description that is nothing but boilerplate leaves the title, or else the brand; it
        is kept only for a product that has neither (its only text).
        """
        record = AmazonRecord(asin, title=title, brand=brand or "", description=description)
        if self.boilerplate and description:
            cleaned = remove_sentences(description, self.boilerplate)
            if cleaned != description:
                stripped = AmazonRecord(asin, title=title, brand=brand or "", description=cleaned)
                text = item_text(stripped, self.options.max_text_chars) or title or brand
                if text:
                    self.summary.boilerplate_items += 1
                    return text
        return item_text(record, self.options.max_text_chars)

    def _kept(self, source: str, name: str, targets: list[str], count: bool) -> list[str]:
        """The targets of one relation list that stay: in the catalogue, not itself, no repeats, capped."""
        cap = self.options.max_targets
        kept: list[str] = []
        for target in targets:
            if target == source:
                if count:
                    self.summary.self_links += 1
            elif target not in self.index:
                if count:
                    self.summary.dropped[name] += 1
            elif target in kept:
                continue
            elif cap and len(kept) >= cap:
                if count:
                    self.summary.capped[name] += 1
            else:
                kept.append(target)
        return kept

    def co_purchase_edges(self, staged: Path, progress: Callable[[int, int], None]) -> tuple[array, array]:
        """Pass 2 (``cluster``): the co-purchase edges, as source and target product numbers.

        The order (product by product, relation by relation, target by target) is the order in
        which :meth:`items` meets the same edges, so their relation types can be handed out in turn.
        """
        sources, targets = array("q"), array("q")
        for asin, *_, relations in _staged_lines(staged, progress):
            source = self.index[asin]
            for name, listed in relations.items():
                if name in CO_PURCHASE:
                    for target in self._kept(asin, name, listed, count=False):
                        sources.append(source)
                        targets.append(self.index[target])
            for target in self._reviewed_with(asin):  # also co-purchases, from the reviews
                sources.append(source)
                targets.append(self.index[target])
        return sources, targets

    def items(
        self,
        staged: Path,
        type_names: list[str] | None,
        labels: Iterator[int] | None,
        progress: Callable[[int, int], None],
    ) -> Iterator[dict[str, Any]]:
        """The last pass: one output record per staged product, in file order.

        With ``type_names`` and ``labels`` (from the clustering), each co-purchase edge takes the
        name of its relation type instead of its raw relation's description.
        """
        descriptions = self.options.descriptions
        summary = self.summary
        for asin, title, description, image, brand, price, categories, raw_relations in _staged_lines(
            staged, progress
        ):
            record: dict[str, Any] = {"id": asin}
            text = self._text(asin, title, description, brand)
            if text:
                record["text"] = text
            if image:
                record["image"] = image
                summary.images += 1
            relations: dict[str, list[str]] = {}
            for name, listed in raw_relations.items():
                kept = self._kept(asin, name, listed, count=True)
                if type_names is not None and labels is not None and name in CO_PURCHASE:
                    for target in kept:
                        _add(relations.setdefault(type_names[next(labels)], []), target)
                elif kept:
                    bucket = relations.setdefault(descriptions[name], [])  # type: ignore[arg-type]
                    for target in kept:
                        _add(bucket, target)
            for target in self._reviewed_with(asin):
                if type_names is not None and labels is not None:
                    _add(relations.setdefault(type_names[next(labels)], []), target)
                else:
                    _add(relations.setdefault(self.review_relation, []), target)
            if relations:
                record["relations"] = relations
                for description, targets in relations.items():
                    summary.edges[description] += len(targets)
            if brand:
                record["brand"] = brand
            if price is not None:
                record["price"] = price
            if categories:
                record["categories"] = categories
            summary.items += 1
            yield record


def _add(bucket: list[str], target: str) -> None:
    # Two raw relations can share a description (or a type): merge their targets without repeats.
    if target not in bucket:
        bucket.append(target)

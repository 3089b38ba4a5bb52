"""Indexing a catalogue with an RCML model, and searching the index: what ``rcml-st index`` / ``search`` run.

:func:`index_catalog` encodes each batch of items once through the backbone and then under every
relation at once (:func:`rcml_st.encode_relations`), turns the R x N vectors into one point per
(item, relation) and upserts them, batch by batch, so memory holds one batch of vectors however
big the catalogue is. It ends with :meth:`RelationIndex.finish`: a write barrier and an exact
count per relation. Point ids are deterministic, so an interrupted run is completed by running
it again, without duplicates.

:func:`search_index` answers "the items closest to this one (or to this text, or image) under
this relation", filtering on the relation.

This module is imported by ``import rcml_st.index``, which must stay light: torch,
sentence-transformers and :mod:`rcml_st.encoding` are imported inside the functions.

Example:
    >>> import rcml_st
    >>> from rcml_st.data import read_catalog
    >>> from rcml_st.index import RelationIndex, index_catalog, search_index
    >>> model = rcml_st.load("rcml-baby")  # doctest: +SKIP
    >>> catalog = read_catalog("data/test.jsonl")  # doctest: +SKIP
    >>> with RelationIndex.connect(path="./qdrant_data") as index:  # doctest: +SKIP
    ...     report = index_catalog(model, catalog, index)
    ...     print(report.summary())
    ...     hits = search_index(model, index, "matches in colour", item_id="S0001", limit=5)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from rcml_st.errors import InputDataError, ServiceError, UsageError
from rcml_st.index.layout import VECTOR_NAMES, Layout
from rcml_st.index.ownership import MODEL_KEY, check_search_model, claim_collection, model_fingerprint
from rcml_st.index.records import RESERVED_PAYLOAD_KEYS, Hit, PointRecord, keep_reserved
from rcml_st.index.store import RelationIndex
from rcml_st.index.writer import BatchWriter

if TYPE_CHECKING:
    from qdrant_client.models import Filter
    from sentence_transformers import SentenceTransformer

    from rcml_st.data import Catalog, Item
    from rcml_st.encoding import RelationEmbeddings

logger = logging.getLogger("rcml_st.index")

#: Items per encoding batch by default (the backbone batch; each gives R points per item).
DEFAULT_ENCODE_BATCH = 64

#: Called after each batch is written: ``(items_done, items_total, points_written)``.
ProgressCallback = Callable[[int, int, int], None]
Progress = bool | ProgressCallback | None
#: How an index run checks its work: exact per-relation counts of the whole collection, or (one
#: slice of a catalogue written by several workers) that each of its own points is there.
Verify = Literal["counts", "points", "none"]


class ItemSource(Protocol):
    """Items to index: a :class:`~rcml_st.data.Catalog`, a :class:`~rcml_st.data.CatalogStream`
    or a list of :class:`~rcml_st.data.Item`: sized, and iterable again for verification."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Item]: ...


@dataclass
class IndexReport:
    """What an index run did, with the counts it verified.

    Attributes:
        items: items indexed.
        relations: relations indexed, in the order given.
        points: points written (``items * len(relations)``).
        counts: relation -> point count found in the collection after the write barrier (equal
            to ``items`` for every relation: :func:`index_catalog` raises otherwise).
        collection: the collection name.
        target: the server URL or the embedded store's path.
        created: whether this run created the collection.
        seconds: wall time of the run (encoding, writing and verifying).
        verified: ``"counts"`` (exact per-relation counts of the collection), ``"points"`` (every
            point of this run found by id: one slice of several) or ``"none"``.

    Example:
        >>> report = IndexReport(2, ["goes with"], 2, {"goes with": 2}, "rcml", "store x")
        >>> report.summary()
        "Indexed 2 items x 1 relation = 2 points into collection 'rcml' at store x; verified: 'goes with' 2"
    """

    items: int
    relations: list[str]
    points: int
    counts: dict[str, int]
    collection: str
    target: str
    created: bool = False
    seconds: float = 0.0
    verified: str = "counts"

    @property
    def points_per_second(self) -> float:
        """Points written per second of wall time (0 when no time was measured)."""
        return self.points / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line: what was indexed where, and the verified count of every relation."""
        items = "item" if self.items == 1 else "items"
        noun = "relation" if len(self.relations) == 1 else "relations"
        verified = ", ".join(f"{relation!r} {self.counts.get(relation, 0)}" for relation in self.relations)
        if self.verified == "points":
            verified = f"all {self.points} points of this slice found ({verified})"
        elif self.verified == "none":
            verified = "not checked"
        return (
            f"Indexed {self.items} {items} x {len(self.relations)} {noun} = {self.points} points into "
            f"collection {self.collection!r} at {self.target}; verified: {verified}"
        )


def model_dims(model: SentenceTransformer) -> dict[str, int]:
    """The named vectors an RCML model makes and their size: ``{"text": D, "image": D, "item": D}``."""
    from rcml_st.modules import rcml_modules

    dim = int(rcml_modules(model)[0].get_embedding_dimension())
    return dict.fromkeys(VECTOR_NAMES, dim)


def resolve_relations(model: SentenceTransformer, relations: Sequence[str] | None) -> list[str]:
    """The relations to index: ``relations`` if given (deduplicated, order kept), else the model's vocabulary.

    Raises:
        UsageError: a relation is empty, or none is given and the model has no vocabulary.
    """
    if relations is None or len(relations) == 0:
        from rcml_st.model import relation_vocabulary

        chosen = relation_vocabulary(model)
        if not chosen:
            raise UsageError(
                "the model has no relation vocabulary (it was not trained with rcml-st train); "
                "name the relations to index with --relation TEXT (repeatable)"
            )
        return list(chosen)
    chosen = []
    for relation in relations:
        if not isinstance(relation, str) or not relation.strip():
            raise UsageError(f"--relation must be a non-empty text, got {relation!r}")
        if relation not in chosen:
            chosen.append(relation)
    return chosen


def _batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _payload(item: Item) -> dict[str, Any]:
    # Only what the item has: an image-only item carries no "text": null. Metadata keys named
    # like the index's own fields (item_id, relation) are kept under "meta", never overwritten.
    payload: dict[str, Any] = {}
    if item.text is not None:
        payload["text"] = item.text
    if item.image is not None:
        payload["image"] = item.image
    payload.update(item.metadata)
    where = f"item {item.id!r}" + (f" (line {item.line})" if item.line else "")
    return keep_reserved(payload, where)


def batch_records(
    items: Sequence[Item],
    embeddings: RelationEmbeddings,
    relations: Sequence[str],
    vectors: Sequence[str] = VECTOR_NAMES,
) -> list[PointRecord]:
    """One :class:`PointRecord` per (item, relation) from the embeddings of a batch of items.

    Each record carries the ``item`` vector always, and ``text`` / ``image`` only when the item
    has that modality (the encoder returns zeros for a missing one, which must not be stored).

    Args:
        items: the batch's items, in the order they were encoded.
        embeddings: :func:`rcml_st.encode_relations` output for them, under ``relations``.
        relations: the relations, in the order they were encoded.
        vectors: the named vectors to keep (the layout's), e.g. ``("item",)``.

    Returns:
        Records grouped by item, relations in order within each item.
    """
    records = []
    for n, item in enumerate(items):
        payload = _payload(item)
        for r, relation in enumerate(relations):
            named = {}
            if "item" in vectors:
                named["item"] = embeddings.item[r, n]  # type: ignore[index]
            if "text" in vectors and embeddings.has_text[n]:
                named["text"] = embeddings.text[r, n]  # type: ignore[index]
            if "image" in vectors and embeddings.has_image[n]:
                named["image"] = embeddings.image[r, n]  # type: ignore[index]
            if not named:  # e.g. --vectors text for an image-only item
                raise InputDataError(
                    f"item {item.id!r} (line {item.line}) has none of the stored vectors "
                    f"({', '.join(vectors)}); store the item vector too (--vectors item,...)"
                )
            records.append(PointRecord(item.id, relation, named, payload))
    return records


def _progress_callback(progress: Progress, total: int) -> tuple[ProgressCallback | None, Callable[[], None]]:
    if callable(progress):
        return progress, lambda: None
    if not progress:
        return None, lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="Indexing", unit="item")

    def update(done: int, _total: int, _points: int) -> None:
        bar.update(done - bar.n)

    return update, bar.close


def index_catalog(
    model: SentenceTransformer,
    catalog: Catalog | ItemSource | Sequence[Item],
    index: RelationIndex,
    relations: Sequence[str] | None = None,
    batch_size: int = DEFAULT_ENCODE_BATCH,
    progress: Progress = False,
    shards: int | None = None,
    replication_factor: int | None = None,
    layout: Layout | None = None,
    overlap: bool | None = None,
    verify: Verify = "counts",
    force: bool = False,
) -> IndexReport:
    """Encodes every item under every relation and writes one point per (item, relation).

    Steps: create the collection (the layout's named vectors, by default ``text``, ``image``,
    ``item`` of the model's size, and the ``relation`` tenant index) or check that an existing
    one matches; then for each batch of ``batch_size`` items run the backbone once and the
    relation pooling for all relations at once, and hand the batch's points to a writer thread,
    which upserts them while the next batch is encoded (``overlap``); finally wait for every
    write and check the result (``verify``).

    Memory is a few batches of vectors: ``catalog`` is read item by item (pass a
    :func:`~rcml_st.data.stream_catalog` stream to keep the file itself out of memory too).

    Re-running the same call after a failure completes the collection: point ids are
    ``uuid5(item id, relation)``, so points already written are overwritten, never doubled.

    Args:
        model: an RCML model (:func:`rcml_st.load` / :func:`rcml_st.build_model`).
        catalog: the items: a :class:`~rcml_st.data.Catalog`, a :class:`~rcml_st.data.CatalogStream`
            (e.g. one slice of a catalogue) or a list of :class:`~rcml_st.data.Item`.
        index: where to write (:meth:`RelationIndex.connect`).
        relations: relation descriptions to index; default: the model's relation vocabulary
            (:func:`rcml_st.relation_vocabulary`).
        batch_size: items per encoding batch (each batch writes ``batch_size * len(relations)``
            points, in requests of ``index.batch_size``).
        progress: ``True`` for a progress bar, or a callback
            ``(items_done, items_total, points_written)`` called after each batch is written
            (from the writer thread when ``overlap``).
        shards: shards of a new collection (a Qdrant cluster; ignored when it exists).
        replication_factor: copies of each shard of a new collection (a Qdrant cluster).
        layout: what a new collection stores (:class:`~rcml_st.index.layout.Layout`: vectors,
            quantization, on-disk, HNSW); default: the full layout. An existing collection must
            hold the same named vectors.
        overlap: encode the next batch while the previous one is written (``False``: one after
            the other, the same points). ``None`` (default): overlap when the model runs on a GPU;
            on CPU the writer thread competes with the encoder for the same cores (measured on 2
            cores: no gain at 32-d, slower at 512-d), so batches go one after the other.
        verify: ``"counts"``: every relation has exactly one point per item of ``catalog`` in the
            whole collection; ``"points"``: every point of this run is found by id (one slice of a
            catalogue that other workers write too; check the whole with :func:`verify_index`);
            ``"none"``: only the write barrier.
        force: write into a collection that another model indexed (it then records this one);
            without it that is an error (:mod:`rcml_st.index.ownership`).

    Returns:
        An :class:`IndexReport` with the verified per-relation counts.

    Raises:
        UsageError: no relations (the model has no vocabulary and none given), a bad option, or
            an existing collection whose vectors do not match the model or the layout, or that
            another model indexed (without ``force``).
        InputDataError: the catalogue is empty, or an item cannot be encoded (its image).
        ServiceError: Qdrant stayed unreachable past the index's retry bound, rejected a batch,
            or the final check failed (re-run to complete; see :meth:`RelationIndex.finish`).

    Example:
        >>> import pathlib, tempfile
        >>> import rcml_st
        >>> from rcml_st.data import stream_catalog
        >>> from rcml_st.index import RelationIndex, index_catalog
        >>> data = pathlib.Path(tempfile.mkdtemp()) / "data.jsonl"
        >>> _ = data.write_text('{"id": "A", "text": "sage bib"}\\n{"id": "B", "text": "sage cup"}\\n')
        >>> model = rcml_st.build_model("rcml-tiny", device="cpu")
        >>> with RelationIndex.connect(path=tempfile.mkdtemp()) as index:
        ...     report = index_catalog(model, stream_catalog(data), index, relations=["matches in colour"])
        >>> report.counts
        {'matches in colour': 2}
    """
    from rcml_st.encoding import encode_relations

    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if verify not in ("counts", "points", "none"):
        raise ValueError(f"verify must be 'counts', 'points' or 'none', got {verify!r}")
    items: ItemSource = catalog  # type: ignore[assignment]
    total = len(items)
    if total == 0 and verify == "counts":
        raise InputDataError("no items to index")
    layout = layout or Layout()
    chosen = resolve_relations(model, relations)
    started = time.perf_counter()
    dims = layout.dims(model_dims(model))
    fingerprint = model_fingerprint(model)
    created = index.ensure_collection(
        dims,
        shards=shards,
        replication_factor=replication_factor,
        layout=layout,
        metadata={MODEL_KEY: fingerprint},
    )
    claim_collection(index, fingerprint, created=created, force=force)
    _check_stored_vectors(index, dims)

    callback, close_bar = _progress_callback(progress, total)
    on_written = None if callback is None else (lambda done, points: callback(done, total, points))
    if overlap is None:
        overlap = str(getattr(model, "device", "cpu")).startswith("cuda")
    writer = BatchWriter(index, on_written=on_written, threaded=overlap)
    source = str(items.path) if isinstance(getattr(items, "path", None), (str, Path)) else None
    reserved = 0
    try:
        with writer:
            for batch in _batches(items, batch_size):
                embeddings = _encode(
                    encode_relations, model, batch, chosen, batch_size, layout.vectors, source
                )
                records = batch_records(batch, embeddings, chosen, layout.vectors)
                reserved += sum(1 for item in batch if any(k in item.metadata for k in RESERVED_PAYLOAD_KEYS))
                # The writer holds at most a couple of batches: memory stays bounded.
                writer.submit(records, items=len(batch))
    except ServiceError as exc:
        if writer.items == 0:
            raise
        # Say where it stopped and how to finish: ids are deterministic, a re-run completes it.
        raise ServiceError(
            f"{exc} ({writer.items} of {total} items were written; re-run the same command to complete)"
        ) from exc
    finally:
        close_bar()
    if reserved:
        logger.warning(
            "%d items have metadata keys named %s: kept in the payload under 'meta' (e.g. meta.item_id)",
            reserved,
            " or ".join(RESERVED_PAYLOAD_KEYS),
        )
    counts = _verify(index, items, chosen, total, verify)
    return IndexReport(
        items=total,
        relations=chosen,
        points=writer.points,
        counts=counts,
        collection=index.collection,
        target=index.target,
        created=created,
        seconds=time.perf_counter() - started,
        verified=verify,
    )


def _check_stored_vectors(index: RelationIndex, dims: dict[str, int]) -> None:
    existing = index.dims()
    extra = sorted(set(existing) - set(dims))
    if extra:
        raise UsageError(
            f"collection {index.collection!r} stores {', '.join(sorted(existing))} vectors but this run "
            f"would write only {', '.join(sorted(dims))} (its points would lack {', '.join(extra)}); use "
            "the --vectors it was created with, or another --collection"
        )


def _verify(
    index: RelationIndex, items: ItemSource, relations: Sequence[str], total: int, verify: Verify
) -> dict[str, int]:
    if verify == "counts":
        return index.finish(dict.fromkeys(relations, total))
    index.finish({})  # the write barrier alone
    if verify == "none":
        return {}
    for _attempt in range(3):  # replicas of a cluster can lag a moment behind the barrier
        missing = index.missing_points((item.id, relation) for item in items for relation in relations)
        if not any(missing.values()):
            break
        time.sleep(1.0)
    if any(missing.values()):
        detail = "; ".join(f"relation {r!r}: {n} of {total} missing" for r, n in missing.items() if n)
        raise ServiceError(
            f"collection {index.collection!r} at {index.target} lacks points of this slice: {detail}; "
            "re-run the same command to complete it"
        )
    return {relation: total - missing.get(relation, 0) for relation in relations}


def verify_index(index: RelationIndex, items: int, relations: Sequence[str]) -> dict[str, int]:
    """Checks a whole collection after several workers wrote its slices: exact counts per relation.

    Args:
        index: the collection.
        items: the number of items of the whole catalogue (e.g. ``stream_catalog(path).items``).
        relations: the relations indexed.

    Returns:
        relation -> point count (equal to ``items`` for each).

    Raises:
        ServiceError: a count differs (missing: re-run the slice that failed; extra: the
            collection holds other items).
    """
    if not index.exists():
        raise UsageError(f"collection {index.collection!r} does not exist at {index.target}")
    return index.finish(dict.fromkeys(relations, items))


def _encode(
    encode_relations: Callable[..., RelationEmbeddings],
    model: SentenceTransformer,
    batch: Sequence[Item],
    relations: Sequence[str],
    batch_size: int,
    vectors: Sequence[str] = VECTOR_NAMES,
    source: str | None = None,
) -> RelationEmbeddings:
    try:
        return encode_relations(
            model,
            [item.to_input() for item in batch],
            relations,
            batch_size=batch_size,
            modalities=tuple(vectors),
        )
    except (OSError, ValueError) as exc:
        # An image that vanished or broke since the catalogue was read: name its item and line.
        culprit = _unreadable_image(batch)
        if culprit is not None:
            item, problem = culprit
            raise InputDataError(
                f"{problem} (it changed since the data file was checked)", path=source, line=item.line
            ) from None
        if not isinstance(exc, OSError):
            raise
        first, last = batch[0], batch[-1]
        raise InputDataError(
            f"cannot encode items {first.id!r}..{last.id!r} (lines {first.line}-{last.line}): {exc}"
        ) from exc


def _unreadable_image(batch: Sequence[Item]) -> tuple[Item, str] | None:
    """The first item of ``batch`` whose image cannot be decoded now, with the reason."""
    from rcml_st.data.images import load_image

    for item in batch:
        if item.image is None:
            continue
        try:
            load_image(item.image)
        except (InputDataError, OSError) as exc:
            reason = exc.problem if isinstance(exc, InputDataError) else f"cannot read image: {exc}"
            return item, f"{reason} ({item.image})"
    return None


def _exactly_one(item_id: str | None, text: str | None, image: Any) -> str:
    options = (("--id", item_id), ("--text", text), ("--image", image))
    given = [name for name, value in options if value is not None]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        raise UsageError(f"give exactly one query: --id ID, --text TEXT or --image PATH (got {what})")
    return given[0]


def _check_relation(index: RelationIndex, relation: str) -> None:
    if not isinstance(relation, str) or not relation.strip():
        raise UsageError(f"--relation must be a non-empty text, got {relation!r}")
    if index.count(relation) > 0:
        return
    indexed = list(index.relations(limit=20))
    listing = ", ".join(repr(r) for r in indexed) if indexed else "none"
    raise UsageError(
        f"relation {relation!r} is not indexed in collection {index.collection!r} at {index.target} "
        f"(indexed relations: {listing})"
    )


def _as_query(text: str | None, image: Any) -> dict[str, Any]:
    if image is not None and isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise InputDataError("image not found" if not path.exists() else "not a file", path=str(path))
        from rcml_st.data import load_image

        image = load_image(str(path))
    query: dict[str, Any] = {}
    if text is not None:
        query["text"] = text
    if image is not None or text is None:
        query["image"] = image
    return query


def query_vectors(
    model: SentenceTransformer, queries: Sequence[Mapping[str, Any]], relations: Sequence[str]
) -> Any:
    """The vectors of several text or image queries under several relations, in one backbone pass.

    Each query goes through the backbone once, then is pooled under every relation at once
    (:func:`rcml_st.encode_relations`): what a service does with the queries of concurrent
    requests (``rcml-st serve`` batches them).

    Args:
        model: the RCML model the index was built with.
        queries: ``{"text": str}``, ``{"image": path or PIL image}`` or both (an item) each.
        relations: the relation descriptions to condition on.

    Returns:
        An (R, N, D) float32 array: the fused item vector of query n under relation r (unit
        length), comparable with every named vector of the index.

    Raises:
        InputDataError: an image path does not exist, or an image cannot be read.

    Example:
        >>> import rcml_st
        >>> model = rcml_st.build_model("rcml-tiny", device="cpu")
        >>> query_vectors(model, [{"text": "sage bib"}, {"text": "navy cup"}], ["matches in colour"]).shape
        (1, 2, 32)
    """
    from rcml_st.encoding import encode_relations

    items = [_as_query(query.get("text"), query.get("image")) for query in queries]
    try:
        out = encode_relations(
            model, items, list(relations), batch_size=max(1, len(items)), modalities=("item",)
        )
    except OSError as exc:
        raise InputDataError(f"cannot read the query image: {exc}") from exc
    return out.item


def query_vector(
    model: SentenceTransformer, relation: str, *, text: str | None = None, image: Any = None
) -> Any:
    """The vector of a text or image query encoded under ``relation`` (unit length, float32).

    Args:
        model: the RCML model the index was built with.
        relation: the relation description to condition on.
        text: a text query, or
        image: an image query: a path or a PIL image.

    Returns:
        A (D,) float32 array: the query's fused item vector (for a single modality, that
        modality's conditioned vector), comparable with every named vector of the index.

    Raises:
        InputDataError: the image path does not exist or cannot be read.
    """
    return query_vectors(model, [{"text": text, "image": image}], [relation])[0, 0]


def item_query_vector(index: RelationIndex, item_id: str, relation: str, using: str = "item") -> Any:
    """The stored vector of an indexed item under ``relation``, to search with (an id query).

    The ``using`` vector, or the item's fused ``item`` vector when it lacks that modality.

    Raises:
        UsageError: the item is not indexed under ``relation``, or has neither vector.
    """
    return pick_query_vector(index, index.get_vectors(item_id, relation), item_id, relation, using)


def pick_query_vector(
    index: RelationIndex, stored: Mapping[str, Any] | None, item_id: str, relation: str, using: str = "item"
) -> Any:
    """Of an item's stored vectors under ``relation``, the one to search ``using`` with (see
    :func:`item_query_vector`); ``stored`` is ``None`` when the item is not indexed under it.

    Raises:
        UsageError: ``stored`` is ``None``, or holds neither ``using`` nor ``item``.
    """
    if stored is None:
        raise UsageError(
            f"item {item_id!r} is not indexed under relation {relation!r} in collection "
            f"{index.collection!r} at {index.target}"
        )
    vector = stored.get(using, stored.get("item"))
    if vector is None:
        raise UsageError(f"item {item_id!r} has no {using!r} or 'item' vector under {relation!r}")
    return vector


def search_index(
    model: SentenceTransformer | None,
    index: RelationIndex,
    relation: str,
    *,
    item_id: str | None = None,
    text: str | None = None,
    image: Any = None,
    using: str = "item",
    limit: int = 10,
    query_filter: Filter | None = None,
    force: bool = False,
) -> list[Hit]:
    """The indexed items closest to a query under one relation, best first.

    Give exactly one query:

    - ``item_id``: an indexed item; its own stored vectors under ``relation`` are the query
      (the ``using`` one, or its fused ``item`` vector when the item lacks that modality), and
      the item itself is left out of the results. The model is not needed (may be ``None``).
    - ``text`` or ``image`` (a path or PIL image): encoded with ``model`` under ``relation``.

    Only points of ``relation`` are searched (a filter on the ``relation`` payload field).

    Args:
        model: the RCML model the index was built with (only used for text and image queries).
        index: the index to search.
        relation: the relation description, exactly as indexed.
        item_id: query by an indexed item's id.
        text: query by text.
        image: query by image.
        using: which named vector to search: ``"item"`` (fused, default), ``"text"`` or ``"image"``.
        limit: the number of results.
        query_filter: a Qdrant payload filter (``qdrant_client.models.Filter``) results must match too.
        force: search with ``model`` even when the collection records another model. The check
            hashes the model's weights (about a second for ViT-B-32 on CPU): many searches with one
            model can check once (:func:`~rcml_st.index.ownership.check_search_model`) and pass
            ``force=True`` afterwards.

    Returns:
        :class:`~rcml_st.index.Hit` list (rank, score, item_id, text, payload), best first.

    Raises:
        UsageError: not exactly one query, an unknown ``using``, a relation that is not indexed,
            an item id that is not indexed under the relation, or a model whose vector size
            differs from the collection's or that is not the one that indexed it (without ``force``).
        InputDataError: an image query that cannot be read.

    Example:
        >>> from rcml_st.index import RelationIndex, search_index
        >>> index = RelationIndex.connect(path="./qdrant_data")  # doctest: +SKIP
        >>> hits = search_index(None, index, "matches in colour", item_id="S0001", limit=3)  # doctest: +SKIP
        >>> for hit in hits:  # doctest: +SKIP
        ...     print(hit.rank, round(hit.score, 3), hit.item_id, hit.text)
        1 0.912 S0014 Oakbud bib - navy - washable
    """
    kind = _exactly_one(item_id, text, image)
    if using not in VECTOR_NAMES:
        raise UsageError(f"--modality must be one of {', '.join(VECTOR_NAMES)}, got {using!r}")
    dims = index.dims()
    _check_relation(index, relation)
    if kind == "--id":
        assert item_id is not None
        vector = item_query_vector(index, item_id, relation, using)
        return index.search(
            vector, relation, using=using, limit=limit, exclude_item_ids=[item_id], query_filter=query_filter
        )
    if model is None:
        raise UsageError(f"a {kind} query needs the model (--model DIR)")
    made = model_dims(model)["item"]
    if using in dims and dims[using] != made:
        raise UsageError(
            f"the model makes vectors of size {made} but collection {index.collection!r} holds {using} "
            f"vectors of size {dims[using]}: search with the model the collection was indexed with"
        )
    if not force:
        check_search_model(index, model_fingerprint(model))
    vector = query_vector(model, relation, text=text, image=image)
    return index.search(vector, relation, using=using, limit=limit, query_filter=query_filter)

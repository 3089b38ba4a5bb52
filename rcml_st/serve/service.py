"""The search service behind ``rcml-st serve``, without HTTP: relations, searches, items, images.

:class:`SearchService` holds the model, the index and the :class:`~rcml_st.serve.batching.QueryBatcher`.
Searches reuse the library: id queries take the item's stored vectors (one lookup for all
relations, :func:`rcml_st.index.pipeline.pick_query_vector` as ``search_index`` does), text and
image queries are encoded by :func:`rcml_st.index.query_vectors` (batched across requests, every
asked relation in one backbone pass per query), and all relations are searched in one request
with :meth:`RelationIndex.search_batch`.

Errors are the library's: :class:`NotFound` (an unknown item, 404), :class:`rcml_st.errors.UsageError`
or :class:`~rcml_st.errors.InputDataError` (a bad request), :class:`~rcml_st.errors.ServiceError`
(Qdrant down or failing). The HTTP layer (:mod:`rcml_st.serve.app`) maps them to status codes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rcml_st.errors import ServiceError, UsageError
from rcml_st.index import VECTOR_NAMES, Hit, RelationIndex, query_vectors
from rcml_st.index.pipeline import pick_query_vector
from rcml_st.serve.batching import DEFAULT_MAX_BATCH, QueryBatcher

if TYPE_CHECKING:
    from qdrant_client.models import Filter
    from sentence_transformers import SentenceTransformer

#: How long the list of indexed relations is reused before it is asked for again.
RELATIONS_TTL = 30.0
MAX_LIMIT = 100
#: Image files served for items: what PIL opens and a browser shows.
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
}


class NotFound(UsageError):
    """The request names something the index does not hold (an item id): HTTP 404."""


@dataclass(frozen=True)
class ImageFile:
    """An item's image on disk, with its media type."""

    path: Path
    media_type: str


class SearchService:
    """Relation-conditioned search over one collection, for concurrent requests.

    Args:
        model: the RCML model the collection was indexed with (``None``: id queries only).
        index: the collection (a server or the embedded store).
        max_batch: the most text/image queries encoded together.
        clock: a monotonic clock (tests pass a fake one), for the relation list's reuse.

    Example:
        >>> service = SearchService(model, RelationIndex.connect(path="rcml-demo/qdrant"))  # doctest: +SKIP
        >>> results = service.search(["matches in colour"], text="sage bib", limit=3)  # doctest: +SKIP
        >>> [hit.item_id for hit in results["matches in colour"]]  # doctest: +SKIP
        ['S0142', 'S0017', 'S0301']
    """

    def __init__(
        self,
        model: SentenceTransformer | None,
        index: RelationIndex,
        max_batch: int = DEFAULT_MAX_BATCH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.index = index
        self.clock = clock
        # The embedded store is a plain Python object: one request at a time uses it.
        self._store_lock = threading.Lock() if index.embedded else None
        self._relations: dict[str, int] | None = None
        self._relations_at = 0.0
        self._checked = False
        self.batcher = (
            QueryBatcher(lambda queries, relations: query_vectors(model, queries, relations), max_batch)
            if model is not None
            else None
        )

    # -- plumbing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _store(self) -> Iterator[RelationIndex]:
        if self._store_lock is None:
            yield self.index
            return
        with self._store_lock:
            yield self.index

    def close(self) -> None:
        """Stops the batcher and closes the index (releases the embedded store's lock)."""
        if self.batcher is not None:
            self.batcher.close()
        self.index.close()

    def check(self) -> None:
        """Checks once that the collection exists and matches the model's vector size.

        Raises:
            UsageError: no such collection, or vectors of another size than the model makes.
            ServiceError: Qdrant does not answer.
        """
        if self._checked:
            return
        with self._store() as index:
            dims = index.dims()
        if self.model is not None:
            from rcml_st.index.pipeline import model_dims

            made = model_dims(self.model)["item"]
            wrong = {name: size for name, size in dims.items() if size != made}
            if wrong:
                raise UsageError(
                    f"the model makes vectors of size {made} but collection {self.index.collection!r} "
                    f"holds {', '.join(f'{n} vectors of size {s}' for n, s in wrong.items())}: serve "
                    "with the model the collection was indexed with"
                )
        self._checked = True

    def health(self) -> dict[str, Any]:
        """Whether Qdrant answers now (one request, no retries), and what is served."""
        try:
            with self._store() as index:
                exists = bool(index.client.collection_exists(index.collection))
        except Exception as exc:
            from rcml_st.index.retry import describe

            return {"ok": False, "qdrant": False, "error": f"Qdrant at {self.index.target}: {describe(exc)}"}
        out: dict[str, Any] = {
            "ok": exists,
            "qdrant": True,
            "collection": self.index.collection,
            "target": self.index.target,
            "model": self.model is not None,
        }
        if not exists:
            out["error"] = f"collection {self.index.collection!r} does not exist at {self.index.target}"
        if self.batcher is not None:
            out["batches"] = self.batcher.stats.to_dict()
        return out

    # -- relations ------------------------------------------------------------------------------

    def relations(self, refresh: bool = False) -> dict[str, int]:
        """The indexed relations with their point counts (reused for :data:`RELATIONS_TTL` s)."""
        now = self.clock()
        if refresh or self._relations is None or now - self._relations_at > RELATIONS_TTL:
            try:
                self.check()
            except UsageError as exc:  # the collection went away or changed: the service's fault
                raise ServiceError(str(exc)) from exc
            with self._store() as index:
                self._relations = index.relations()
            self._relations_at = now
        return dict(self._relations)

    def resolve_relations(self, asked: Sequence[str] | None) -> list[str]:
        """The relations to search: ``asked`` (checked, deduplicated) or every indexed one.

        Raises:
            UsageError: a relation that is not indexed (the message lists the indexed ones).
        """
        known = self.relations()
        if not asked:
            if not known:
                raise UsageError(f"collection {self.index.collection!r} holds no points yet")
            return list(known)
        chosen = list(dict.fromkeys(asked))
        unknown = [r for r in chosen if r not in known]
        if unknown:  # indexed since the list was read?
            known = self.relations(refresh=True)
            unknown = [r for r in chosen if r not in known]
        if unknown:
            listing = ", ".join(repr(r) for r in known) or "none"
            raise UsageError(f"relation {unknown[0]!r} is not indexed (indexed relations: {listing})")
        return chosen

    # -- items ----------------------------------------------------------------------------------

    def item(self, item_id: str) -> dict[str, Any]:
        """The stored payload of an indexed item (without the per-point ``relation`` field).

        Raises:
            NotFound: the item is not indexed.
        """
        relations = self.relations()
        with self._store() as index:
            payload = index.get_payload(item_id, relations)
        if payload is None:
            raise NotFound(f"item {item_id!r} is not indexed in collection {self.index.collection!r}")
        payload.pop("relation", None)
        return payload

    def image_file(self, item_id: str) -> ImageFile:
        """The image file of an indexed item: the path its catalogue gave, as indexed.

        Only an item's own indexed image is ever served: the path comes from the index, never
        from the request, and must be an existing file of an image type.

        Raises:
            NotFound: the item is not indexed, has no image, or its image file is gone.
        """
        image = self.item(item_id).get("image")
        if not isinstance(image, str) or not image:
            raise NotFound(f"item {item_id!r} has no image")
        path = Path(image)
        media_type = IMAGE_TYPES.get(path.suffix.lower())
        if media_type is None or not path.is_absolute():
            raise NotFound(f"item {item_id!r} has no image file of a known type")
        if not path.is_file():
            raise NotFound(f"the image file of item {item_id!r} is missing")
        return ImageFile(path, media_type)

    def find_items(self, contains: str | None = None, limit: int = 20) -> list[Hit]:
        """Indexed items whose id is ``contains`` or whose text contains it (the first ones if ``None``)."""
        relations = self.relations()
        if not relations:
            return []
        with self._store() as index:
            return index.find_items(next(iter(relations)), contains or None, limit=_check_limit(limit))

    # -- search ---------------------------------------------------------------------------------

    def search(
        self,
        relations: Sequence[str] | None = None,
        *,
        item_id: str | None = None,
        text: str | None = None,
        image: Any = None,
        using: str = "item",
        limit: int = 10,
        query_filter: Filter | None = None,
    ) -> dict[str, list[Hit]]:
        """The nearest items to one query under each of ``relations``.

        Args:
            relations: relation descriptions as indexed; ``None`` or empty: every indexed relation.
            item_id: query by an indexed item (its stored vectors; it is left out of the results).
            text: query by text, or
            image: by image (a PIL image); encoded once for all relations.
            using: the named vector to search: ``item``, ``text`` or ``image``.
            limit: results per relation.
            query_filter: a Qdrant payload filter the results must match.

        Returns:
            relation -> hits, best first, in the order of ``relations``.

        Raises:
            UsageError: not exactly one query, an unknown relation or ``using``, a bad limit.
            NotFound: an unknown item id.
            ServiceError: Qdrant down.
        """
        given = [
            name for name, value in (("id", item_id), ("text", text), ("image", image)) if value is not None
        ]
        if len(given) != 1:
            what = "none" if not given else " and ".join(given)
            raise UsageError(f"give exactly one query: id, text or image (got {what})")
        if text is not None and not text.strip():
            raise UsageError("text must not be empty")
        if using not in VECTOR_NAMES:
            raise UsageError(f"modality must be one of {', '.join(VECTOR_NAMES)}, got {using!r}")
        limit = _check_limit(limit)
        chosen = self.resolve_relations(relations)
        if item_id is not None:
            with self._store() as index:
                stored = index.get_vectors_of(item_id, chosen)
            try:
                vectors = {r: pick_query_vector(self.index, stored.get(r), item_id, r, using) for r in chosen}
            except UsageError as exc:
                raise NotFound(str(exc)) from None
            exclude = [item_id]
        else:
            if self.batcher is None:
                raise UsageError("text and image queries need the model")
            query = {"text": text} if text is not None else {"image": image}
            vectors = self.batcher.encode(query, chosen)  # one backbone pass, all relations
            exclude = []
        with self._store() as index:  # one round trip for all relations
            found = index.search_batch(
                [(vectors[r], r) for r in chosen],
                using=using,
                limit=limit,
                exclude_item_ids=exclude,
                query_filter=query_filter,
            )
        return dict(zip(chosen, found, strict=True))

    def encode(self, items: Sequence[Mapping[str, Any]], relations: Sequence[str]) -> np.ndarray:
        """Embeddings of ``items`` (``{"text": ...}`` and/or ``{"image": PIL image}``) under ``relations``.

        Returns:
            An (R, N, D) float32 array of fused item vectors (the model's, relations need not be indexed).
        """
        if self.model is None:
            raise UsageError("encoding needs the model")
        if not items:
            raise UsageError("give at least one item to encode")
        if not relations or any(not isinstance(r, str) or not r.strip() for r in relations):
            raise UsageError("give at least one relation, each a non-empty text")
        for n, item in enumerate(items):
            if item.get("text") is None and item.get("image") is None:
                raise UsageError(f"item {n} has neither text nor image")
        assert self.batcher is not None
        futures = [self.batcher.submit(item, relations) for item in items]  # batched with the searches
        vectors = [future.result() for future in futures]
        return np.stack([np.stack([v[r] for v in vectors]) for r in dict.fromkeys(relations)])


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def service_error_status(exc: BaseException) -> int:
    """The HTTP status for a library error: 400/404 for bad requests, 503 when Qdrant fails."""
    if isinstance(exc, NotFound):
        return 404
    cause = exc.__cause__
    if cause is not None and _rejected_request(cause):
        return 400  # Qdrant found the request itself bad (e.g. a filter on a field of another type)
    if isinstance(exc, ServiceError) or _from_qdrant(cause):
        return 503
    return 400


def _from_qdrant(cause: BaseException | None) -> bool:
    # A UsageError raised for a Qdrant refusal (its API key) is the service's fault, not the client's.
    return cause is not None and type(cause).__module__.split(".")[0] in ("qdrant_client", "grpc")


def _rejected_request(cause: BaseException) -> bool:
    from qdrant_client.http.exceptions import UnexpectedResponse

    if isinstance(cause, UnexpectedResponse):
        return cause.status_code in (400, 422)
    code = getattr(cause, "code", None)
    if callable(code):
        import grpc

        try:
            return code() == grpc.StatusCode.INVALID_ARGUMENT
        except Exception:
            return False
    return False

"""The relation index: one Qdrant collection, one point per (item, relation).

Layout (``docs/contract/qdrant-layout.md``): named cosine vectors ``text``, ``image`` and ``item``
(each present when the item has that modality), a payload with ``item_id``, ``relation``, the
item's ``text``, ``image`` and metadata, and a keyword *tenant* index on ``relation`` created
before the first upsert, so that filtering one relation out of many stays fast. Point ids are
:func:`~rcml_st.index.ids.point_id`, so a re-run overwrites instead of duplicating.

Writing works around the client (``upload_points`` retries at once, even on 400): vectors are checked
before anything is sent; batches go out without waiting for indexing (``wait=False``) and are
retried whole, with backoff, on transient failures only; :meth:`RelationIndex.finish` then
waits for every write and checks exact per-relation counts.

Example:
    >>> import numpy as np
    >>> from rcml_st.index import PointRecord, RelationIndex
    >>> index = RelationIndex.connect(path="/tmp/rcml-doc-store", collection="doc")  # doctest: +SKIP
    >>> index.ensure_collection({"text": 4, "item": 4})  # doctest: +SKIP
    >>> vectors = {"text": np.ones(4), "item": np.ones(4)}
    >>> index.upsert([PointRecord("B1", "goes with", vectors)])  # doctest: +SKIP
    1
    >>> index.finish({"goes with": 1})  # doctest: +SKIP
    {'goes with': 1}
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import urlparse

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client import grpc as qgrpc
from qdrant_client.conversions.conversion import RestToGrpc

from rcml_st.errors import ServiceError, UsageError
from rcml_st.index.ids import point_id
from rcml_st.index.layout import VECTOR_NAMES, Layout, is_quantized, rescoring_params
from rcml_st.index.layout_drift import layout_differences
from rcml_st.index.records import Hit, PointRecord, check_records, check_vector
from rcml_st.index.retry import RetryPolicy, with_retry

logger = logging.getLogger("rcml_st.index")

#: The payload field every search filters on.
RELATION_FIELD = "relation"
DEFAULT_COLLECTION = "rcml"
DEFAULT_PATH = "./qdrant_data"
DEFAULT_BATCH_SIZE = 256
DEFAULT_TIMEOUT = 60
#: Qdrant's standard ports; a URL on another port (a proxy, a test server) gets REST only,
#: because the gRPC port cannot be guessed from it.
DEFAULT_HTTP_PORT = 6333
DEFAULT_GRPC_PORT = 6334

# gRPC channels back off up to 2 minutes between reconnects by default, so a server that comes
# back quickly would stay unused for a long time; keep the reconnect delay short instead.
_GRPC_OPTIONS = {
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.min_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 2000,
}
# A payload key no point has, for the write barrier in finish().
_BARRIER_KEY = "__rcml_st_barrier__"


@lru_cache(maxsize=16)
def _dense_prefix(size: int) -> bytes:
    # What protobuf writes before the floats of a DenseVector of `size` floats: cut from a
    # serialized zero vector, which ends with them. Prefix + raw little-endian float32 bytes is
    # the message itself, many times faster to build than a repeated field filled float by float.
    serialized = qgrpc.DenseVector(data=[0.0] * size).SerializeToString()
    return serialized[: len(serialized) - 4 * size]


def _grpc_point(record: PointRecord, vectors: Mapping[str, np.ndarray]) -> qgrpc.PointStruct:
    point = qgrpc.PointStruct(
        id=qgrpc.PointId(uuid=point_id(record.item_id, record.relation)),
        payload=RestToGrpc.convert_payload(record.full_payload()),
    )
    # Filled in place: nesting ready-made messages in constructors copies each of them again.
    named = point.vectors.vectors.vectors
    for name, array in vectors.items():
        named[name].dense.MergeFromString(
            _dense_prefix(len(array)) + array.astype("<f4", copy=False).tobytes()
        )
    return point


class RelationIndex:
    """A Qdrant collection of relation-conditioned vectors, with safe writes and filtered search.

    Args:
        client: a ``QdrantClient`` (server or embedded). :meth:`connect` builds one.
        collection: the collection name.
        batch_size: points per write request.
        retry: how long to retry transient failures (default: about two minutes in all).
        timeout: seconds per request.
        wait: whether each write waits until the server has applied it. ``False`` (default) is
            faster; :meth:`finish` waits for all writes at the end and counts them either way.
            (With ``False`` the server checks some things, e.g. vector sizes, only after it
            acknowledged the batch; a failure there shows up as missing points in ``finish``.)

    Example:
        >>> from qdrant_client import QdrantClient
        >>> index = RelationIndex(QdrantClient(":memory:"), collection="demo")
        >>> index.ensure_collection({"text": 3, "item": 3})
        True
        >>> index.count()
        0
    """

    def __init__(
        self,
        client: QdrantClient,
        collection: str = DEFAULT_COLLECTION,
        batch_size: int = DEFAULT_BATCH_SIZE,
        retry: RetryPolicy | None = None,
        timeout: int = DEFAULT_TIMEOUT,
        wait: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not collection:
            raise UsageError("the collection name must not be empty")
        self.client = client
        self.collection = collection
        self.batch_size = batch_size
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.wait = wait
        self._dims: dict[str, int] | None = None
        self._quantized = False
        options = client.init_options
        self.embedded = options.get("path") is not None or options.get("location") == ":memory:"
        self.target = self._describe_target(options)
        # Writes go straight to the gRPC stub with vectors as raw bytes when the client speaks
        # gRPC (the fastest measured path); otherwise through the client's models.
        self._grpc = bool(options.get("prefer_grpc")) and not self.embedded

    @staticmethod
    def _describe_target(options: Mapping[str, Any]) -> str:
        if options.get("path") is not None:
            return f"embedded store {options['path']}"
        if options.get("location") == ":memory:":
            return "in-memory store"
        return str(options.get("url") or options.get("location") or options.get("host") or "localhost")

    @classmethod
    def connect(
        cls,
        url: str | None = None,
        api_key: str | None = None,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        collection: str = DEFAULT_COLLECTION,
        prefer_grpc: bool = True,
        grpc_port: int | None = None,
        timeout: int = DEFAULT_TIMEOUT,
        batch_size: int = DEFAULT_BATCH_SIZE,
        retry: RetryPolicy | None = None,
        wait: bool = False,
    ) -> RelationIndex:
        """Opens a Qdrant server (``url``) or the embedded store at ``path``.

        Nothing is sent yet: an unreachable server shows up (after retries) on first use.

        Args:
            url: the server, e.g. ``http://localhost:6333`` or ``https://xyz.cloud.qdrant.io``.
                ``None`` opens the embedded store at ``path``.
            api_key: the server's API key; defaults to the ``QDRANT_API_KEY`` environment variable.
            path: the embedded store's folder (only without ``url``).
            collection: the collection name.
            prefer_grpc: use gRPC for speed. Applies when the URL is on Qdrant's standard port
                (or none) with gRPC on 6334, or when ``grpc_port`` is given; otherwise REST.
            grpc_port: the server's gRPC port, when it is not 6334.
            timeout: seconds per request.
            batch_size: points per write request.
            retry: how long to retry transient failures.
            wait: whether each write waits until the server has applied it (see the class).

        Returns:
            The index (the collection itself may not exist yet; see :meth:`ensure_collection`).

        Raises:
            UsageError: the URL is malformed, or the embedded store is locked by another process.

        Example:
            >>> index = RelationIndex.connect(url="http://localhost:6333")  # doctest: +SKIP
            >>> index = RelationIndex.connect(path="./qdrant_data")  # doctest: +SKIP
        """
        kwargs: dict[str, Any] = {"batch_size": batch_size, "retry": retry, "timeout": timeout, "wait": wait}
        if url is None:
            return cls(_open_embedded(str(path)), collection=collection, **kwargs)
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise UsageError(f"--qdrant-url must look like http://HOST:PORT or https://HOST, got {url!r}")
        try:
            http_port = parsed.port
        except ValueError:
            raise UsageError(f"--qdrant-url has an invalid port: {url!r}") from None
        use_grpc = prefer_grpc and (grpc_port is not None or http_port in (None, DEFAULT_HTTP_PORT))
        client = QdrantClient(
            url=url,
            api_key=api_key or os.environ.get("QDRANT_API_KEY") or None,
            prefer_grpc=use_grpc,
            grpc_port=grpc_port or DEFAULT_GRPC_PORT,
            grpc_options=dict(_GRPC_OPTIONS),
            timeout=timeout,
            # The server may be older or newer than the client; unsupported options are what
            # matters and those are tested, the version check would only warn.
            check_compatibility=False,
        )
        return cls(client, collection=collection, **kwargs)

    # -- plumbing -------------------------------------------------------------------------------

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        return with_retry(call, self.retry, target=self.target, what=what)

    def close(self) -> None:
        """Closes the client (releases the embedded store's lock)."""
        self.client.close()

    def __enter__(self) -> RelationIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RelationIndex(target={self.target!r}, collection={self.collection!r})"

    # -- collection -----------------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the collection exists."""
        return bool(self._call("collection lookup", lambda: self.client.collection_exists(self.collection)))

    def dims(self) -> dict[str, int]:
        """The collection's vector names and sizes, e.g. ``{"image": 512, "item": 512, "text": 512}``.

        Raises:
            UsageError: the collection does not exist, or is not laid out with named vectors.
        """
        if self._dims is None:
            if not self.exists():
                raise UsageError(
                    f"collection {self.collection!r} does not exist at {self.target}; "
                    "index some data first (rcml-st index) or check --collection"
                )
            info = self._info()
            self._dims = {name: params.size for name, params in self._vector_params(info).items()}
            self._quantized = is_quantized(info)
        return dict(self._dims)

    @property
    def quantized(self) -> bool:
        """Whether the collection keeps quantized vectors (searches then rescore with the originals)."""
        self.dims()
        return self._quantized

    def metadata(self) -> dict[str, Any]:
        """The collection's metadata (Qdrant 1.16+; ``{}`` when it has none)."""
        return dict(self._info().config.metadata or {})

    def update_metadata(self, values: Mapping[str, Any]) -> None:
        """Merges ``values`` into the collection's metadata."""
        self._call(
            f"metadata update of collection {self.collection!r}",
            lambda: self.client.update_collection(self.collection, metadata=dict(values)),
        )

    def _info(self) -> models.CollectionInfo:
        return self._call("collection info", lambda: self.client.get_collection(self.collection))

    def _vector_params(self, info: models.CollectionInfo | None = None) -> dict[str, models.VectorParams]:
        info = info or self._info()
        vectors = info.config.params.vectors
        if not isinstance(vectors, dict):
            raise UsageError(
                f"collection {self.collection!r} at {self.target} has a single unnamed vector, not the "
                f"named vectors {', '.join(VECTOR_NAMES)} rcml-st writes; use --collection NAME or delete it"
            )
        return dict(vectors)

    def ensure_collection(
        self,
        dims: Mapping[str, int],
        shards: int | None = None,
        replication_factor: int | None = None,
        layout: Layout | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> bool:
        """Creates the collection and its ``relation`` tenant index if missing, else checks its layout.

        Args:
            dims: the vectors to store and their sizes, e.g. ``{"text": 512, "image": 512, "item": 512}``.
            shards: number of shards (a server cluster; fixed at creation).
            replication_factor: copies of each shard (a server cluster).
            layout: quantization, on-disk storage and HNSW settings of a new collection
                (:class:`~rcml_st.index.layout.Layout`; its ``vectors`` are ``dims``' names).
            metadata: the collection metadata of a new collection (e.g. which model writes it).

        Returns:
            ``True`` if the collection was created, ``False`` if it existed and matches.

        Raises:
            UsageError: the existing collection's vectors do not match ``dims``, or a bad option.
        """
        dims = {str(name): int(size) for name, size in dims.items()}
        if not dims or any(size < 1 for size in dims.values()):
            raise ValueError(f"dims must name at least one vector with a positive size, got {dims}")
        for option, value in (("--shards", shards), ("--replication-factor", replication_factor)):
            if value is not None and value < 1:
                raise UsageError(f"{option} must be at least 1, got {value}")
        if self.embedded and (shards or replication_factor):
            logger.warning(
                "the embedded store has no shards or replicas; --shards/--replication-factor ignored"
            )
        created = False
        config = (layout or Layout()).collection_config(dims)
        if self.embedded:
            # The embedded store is exact brute force in RAM: no graph, no quantization, no mmap.
            if layout is not None and layout.tuned:
                logger.warning(
                    "the embedded store keeps vectors in RAM and searches exactly; --quantization, "
                    "--vectors-on-disk, --payload-in-ram and --hnsw-* are ignored (--vectors applies)"
                )
            config = {"vectors_config": config["vectors_config"]}
            for params in config["vectors_config"].values():
                params.on_disk = None
        if not self.exists():
            try:
                self._call(
                    f"creation of collection {self.collection!r}",
                    lambda: self.client.create_collection(
                        self.collection,
                        shard_number=shards,
                        replication_factor=replication_factor,
                        metadata=dict(metadata) if metadata else None,
                        **config,
                    ),
                )
                created = True
            except Exception:
                # A retried create whose first attempt got through, or another process creating
                # it at the same time: fine if it now exists (its layout is checked below).
                if not self.exists():
                    raise
        if not created:
            self._check_layout(dims)
            self._warn_kept_layout(layout)
        if not self.embedded:
            # The embedded store filters by scanning and warns that payload indexes do nothing there.
            self._ensure_relation_index()
        self._dims = None
        self.dims()
        return created

    def _warn_kept_layout(self, layout: Layout | None) -> None:
        """Says which asked storage settings an existing collection lacks (it keeps its own)."""
        if layout is None or not layout.tuned or self.embedded:  # embedded: warned above, all ignored
            return
        differences = layout_differences(layout, self._info())
        if differences:
            logger.warning(
                "collection %r exists and keeps its layout: %s asked but not applied (the layout is set "
                "when a collection is created; delete it or use another --collection to get it)",
                self.collection,
                ", ".join(differences),
            )

    def _check_layout(self, dims: Mapping[str, int]) -> None:
        existing = self._vector_params()
        name = self.collection
        for vector, size in dims.items():
            params = existing.get(vector)
            if params is None:
                raise UsageError(
                    f"collection {name!r} has no {vector} vectors but this run stores them (size {size}); "
                    "use the --vectors it was created with, another --collection NAME, or delete it"
                )
            if params.size != size:
                raise UsageError(
                    f"collection {name!r} has {vector} vectors of size {params.size} but the model makes "
                    f"{size}; use --collection NAME or delete it"
                )
            if params.distance != models.Distance.COSINE:
                raise UsageError(
                    f"collection {name!r} compares {vector} vectors by {params.distance.value}, not Cosine; "
                    "use --collection NAME or delete it"
                )

    def _ensure_relation_index(self) -> None:
        info = self._info()
        current = (info.payload_schema or {}).get(RELATION_FIELD)
        if current is not None:
            if current.data_type != models.PayloadSchemaType.KEYWORD:
                raise UsageError(
                    f"collection {self.collection!r} indexes {RELATION_FIELD!r} as "
                    f"{current.data_type.value}, not keyword; use --collection NAME or delete it"
                )
            return
        self._call(
            f"creation of the {RELATION_FIELD!r} index",
            lambda: self.client.create_payload_index(
                self.collection,
                RELATION_FIELD,
                field_schema=models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
                wait=True,
            ),
        )

    # -- writing --------------------------------------------------------------------------------

    def upsert(self, records: Iterable[PointRecord], on_batch: Callable[[int], None] | None = None) -> int:
        """Writes points, all vectors checked first, in batches retried whole on transient failures.

        Every vector of every record in this call is checked (dimension, finite) before the first
        request, so a bad one leaves the collection untouched. Ids are deterministic, so a batch
        sent twice (a retry, a re-run) overwrites itself.

        Args:
            records: the points; each carries only the vectors its item has.
            on_batch: called with the number of points after each batch is accepted (progress).

        Returns:
            The number of points written.

        Raises:
            InputDataError: a bad vector or id (nothing was sent).
            ServiceError: the server stayed unreachable past the retry bound, or rejected a batch.
            UsageError: the collection does not exist, or the API key was refused.
        """
        records = list(records)
        if not records:
            return 0
        vectors = check_records(records, self.dims())
        for start in range(0, len(records), self.batch_size):
            stop = min(start + self.batch_size, len(records))
            send = self._batch_sender(records[start:stop], vectors[start:stop])
            self._call(f"upsert of {stop - start} points", send)
            if on_batch is not None:
                on_batch(stop - start)
        return len(records)

    def _batch_sender(
        self, records: Sequence[PointRecord], vectors: Sequence[dict[str, np.ndarray]]
    ) -> Callable[[], Any]:
        # The request is built once; a retry re-sends exactly the same batch.
        if self._grpc:
            request = qgrpc.UpsertPoints(
                collection_name=self.collection,
                wait=self.wait,
                points=[_grpc_point(record, named) for record, named in zip(records, vectors, strict=True)],
            )
            return lambda: self.client.grpc_points.Upsert(request, timeout=self.timeout)
        points = [
            models.PointStruct(
                id=point_id(record.item_id, record.relation),
                vector={name: array.tolist() for name, array in named.items()},
                payload=record.full_payload(),
            )
            for record, named in zip(records, vectors, strict=True)
        ]
        return lambda: self.client.upsert(self.collection, points=points, wait=self.wait)

    def finish(self, expected: Mapping[str, int], settle_time: float = 5.0) -> dict[str, int]:
        """Waits for every write, then checks each relation's exact point count.

        Args:
            expected: relation -> number of items indexed under it.
            settle_time: how long to keep re-counting while a count is still short (replicas of a
                cluster can lag a moment behind the write barrier).

        Returns:
            relation -> point count (equal to ``expected``).

        Raises:
            ServiceError: a count differs: points missing (re-run the same command to complete
                them) or extra points (the collection holds items that this run did not index).
        """
        deadline = time.monotonic() + settle_time
        while True:
            self._barrier()
            counts = {relation: self.count(relation) for relation in expected}
            short = any(counts[r] < n for r, n in expected.items())
            if not short or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        problems = []
        for relation, want in expected.items():
            have = counts[relation]
            if have < want:
                problems.append(
                    f"relation {relation!r} has {have} points for {want} items ({want - have} missing)"
                )
            elif have > want:
                problems.append(
                    f"relation {relation!r} has {have} points for {want} items ({have - want} extra)"
                )
        if problems:
            where = f"collection {self.collection!r} at {self.target}"
            if all(counts[r] <= n for r, n in expected.items()):
                raise ServiceError(
                    f"{where} is incomplete: {'; '.join(problems)}; re-run the same command to complete it"
                )
            raise ServiceError(
                f"{where} holds points this run did not index: {'; '.join(problems)}; "
                "use --collection NAME or delete it"
            )
        return counts

    def _barrier(self) -> None:
        # A write with wait=True that every shard applies (it selects by filter) returns only
        # after the writes queued before it on each shard are applied: after it, counts are final.
        nothing = models.Filter(
            must=[models.IsEmptyCondition(is_empty=models.PayloadField(key=RELATION_FIELD))]
        )
        self._call(
            "write barrier",
            lambda: self.client.delete_payload(
                self.collection, keys=[_BARRIER_KEY], points=nothing, wait=True
            ),
        )

    # -- reading --------------------------------------------------------------------------------

    def count(self, relation: str | None = None) -> int:
        """The exact number of points, of one relation or of all.

        Example:
            >>> from qdrant_client import QdrantClient
            >>> index = RelationIndex(QdrantClient(":memory:"), collection="c")
            >>> _ = index.ensure_collection({"item": 2})
            >>> index.count("goes with")
            0
        """
        flt = None if relation is None else _relation_filter(relation)
        what = "count" if relation is None else f"count of relation {relation!r}"
        result = self._call(what, lambda: self.client.count(self.collection, count_filter=flt, exact=True))
        return int(result.count)

    def relations(self, limit: int = 100_000) -> dict[str, int]:
        """The indexed relations with their exact point counts (most points first)."""
        response = self._call(
            "relation listing",
            lambda: self.client.facet(self.collection, key=RELATION_FIELD, limit=limit, exact=True),
        )
        return {str(hit.value): int(hit.count) for hit in response.hits}

    def search(
        self,
        vector: Any,
        relation: str,
        using: str = "item",
        limit: int = 10,
        exclude_item_ids: Sequence[str] = (),
        query_filter: models.Filter | None = None,
    ) -> list[Hit]:
        """The closest points of one relation to a query vector.

        Args:
            vector: the query, encoded under ``relation``.
            relation: only points of this relation are searched.
            using: which named vector to search: ``"text"``, ``"image"`` or ``"item"``.
            limit: the number of results.
            exclude_item_ids: items to leave out (e.g. the query item itself).
            query_filter: a Qdrant payload filter the results must also match (e.g. on
                ``price`` or ``brand``); combined with the relation filter.

        Returns:
            Hits, best first, ranked from 1.

        Raises:
            UsageError: ``using`` is not a vector of the collection, or ``limit`` < 1.
            InputDataError: the query vector has the wrong size or non-finite values.
        """
        dims = self.dims()
        if using not in dims:
            raise UsageError(
                f"collection {self.collection!r} has no {using!r} vectors (it has {', '.join(sorted(dims))})"
            )
        if limit < 1:
            raise UsageError(f"--limit must be at least 1, got {limit}")
        query = check_vector(vector, dims[using], f"query {using} vector").tolist()
        flt = _search_filter(relation, exclude_item_ids, query_filter)
        params = rescoring_params() if self._quantized else None
        response = self._call(
            f"search of relation {relation!r}",
            lambda: self.client.query_points(
                self.collection,
                query=query,
                using=using,
                query_filter=flt,
                limit=limit,
                with_payload=True,
                search_params=params,
            ),
        )
        return [_hit(rank, point) for rank, point in enumerate(response.points, start=1)]

    def search_batch(
        self,
        queries: Sequence[tuple[Any, str]],
        using: str = "item",
        limit: int = 10,
        exclude_item_ids: Sequence[str] = (),
        query_filter: models.Filter | None = None,
    ) -> list[list[Hit]]:
        """Several searches in one request: each ``(vector, relation)`` of ``queries`` as :meth:`search`.

        One round trip to the server for all of them (e.g. one query under every relation).

        Returns:
            For each query, its hits, best first.

        Example:
            >>> from qdrant_client import QdrantClient
            >>> index = RelationIndex(QdrantClient(":memory:"), collection="b")
            >>> _ = index.ensure_collection({"item": 2})
            >>> _ = index.upsert([PointRecord("B1", "r1", {"item": [1.0, 0.0]}),
            ...                   PointRecord("B2", "r2", {"item": [0.0, 1.0]})])
            >>> found = index.search_batch([([1, 0], "r1"), ([1, 0], "r2")])
            >>> [[hit.item_id for hit in hits] for hits in found]
            [['B1'], ['B2']]
        """
        dims = self.dims()
        if using not in dims:
            raise UsageError(
                f"collection {self.collection!r} has no {using!r} vectors (it has {', '.join(sorted(dims))})"
            )
        if limit < 1:
            raise UsageError(f"--limit must be at least 1, got {limit}")
        if not queries:
            return []
        params = rescoring_params() if self._quantized else None
        requests = [
            models.QueryRequest(
                query=check_vector(vector, dims[using], f"query {using} vector").tolist(),
                using=using,
                filter=_search_filter(relation, exclude_item_ids, query_filter),
                limit=limit,
                with_payload=True,
                params=params,
            )
            for vector, relation in queries
        ]
        responses = self._call(
            f"search of {len(requests)} relations",
            lambda: self.client.query_batch_points(self.collection, requests=requests),
        )
        return [
            [_hit(rank, point) for rank, point in enumerate(response.points, start=1)]
            for response in responses
        ]

    def get_vectors_of(self, item_id: str, relations: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
        """The stored vectors of ``item_id`` under each of ``relations`` it is indexed under (one lookup).

        Example:
            >>> from qdrant_client import QdrantClient
            >>> index = RelationIndex(QdrantClient(":memory:"), collection="w")
            >>> _ = index.ensure_collection({"item": 2})
            >>> _ = index.upsert([PointRecord("B1", "r1", {"item": [1.0, 0.0]})])
            >>> {r: v["item"].tolist() for r, v in index.get_vectors_of("B1", ["r1", "r2"]).items()}
            {'r1': [1.0, 0.0]}
        """
        ids = {point_id(item_id, relation): relation for relation in relations}
        if not ids:
            return {}
        records = self._call(
            f"lookup of item {item_id!r}",
            lambda: self.client.retrieve(
                self.collection, ids=list(ids), with_payload=False, with_vectors=True
            ),
        )
        out = {}
        for record in records:
            if isinstance(record.vector, dict) and str(record.id) in ids:
                out[ids[str(record.id)]] = {
                    name: np.asarray(values, dtype=np.float32) for name, values in record.vector.items()
                }
        return out

    def get_payload(self, item_id: str, relations: Iterable[str]) -> dict[str, Any] | None:
        """The stored payload of ``item_id`` (from its point under the first of ``relations`` found).

        Args:
            item_id: the item's id.
            relations: the relations it may be indexed under (one lookup for all of them).

        Returns:
            The payload (``item_id``, ``relation``, ``text``, ``image``, metadata), or ``None``
            when the item is indexed under none of ``relations``.

        Example:
            >>> from qdrant_client import QdrantClient
            >>> index = RelationIndex(QdrantClient(":memory:"), collection="p")
            >>> _ = index.ensure_collection({"item": 2})
            >>> index.upsert([PointRecord("B1", "goes with", {"item": [1.0, 0.0]}, {"text": "cup"})])
            1
            >>> index.get_payload("B1", ["goes with"])["text"]
            'cup'
            >>> index.get_payload("B2", ["goes with"]) is None
            True
        """
        order = {point_id(item_id, relation): n for n, relation in enumerate(relations)}
        if not order:
            return None
        records = self._call(
            f"lookup of item {item_id!r}",
            lambda: self.client.retrieve(
                self.collection, ids=list(order), with_payload=True, with_vectors=False
            ),
        )
        if not records:
            return None
        first = min(records, key=lambda point: order.get(str(point.id), len(order)))
        return dict(first.payload or {})

    def find_items(self, relation: str, contains: str | None = None, limit: int = 20) -> list[Hit]:
        """Items indexed under ``relation``, optionally those whose id or text contains ``contains``.

        For browsing and picking a query item (scores are 0). The id is matched exactly, the text
        with Qdrant's text match (a substring match without a full-text index on ``text``).

        Args:
            relation: the relation whose points are listed (every item has one per relation).
            contains: a piece of text or an exact id; ``None`` lists the first items.
            limit: the most items returned.

        Example:
            >>> from qdrant_client import QdrantClient
            >>> index = RelationIndex(QdrantClient(":memory:"), collection="f")
            >>> _ = index.ensure_collection({"item": 2})
            >>> _ = index.upsert([PointRecord("B1", "r", {"item": [1.0, 0.0]}, {"text": "sage cup"}),
            ...                   PointRecord("B2", "r", {"item": [0.0, 1.0]}, {"text": "navy bib"})])
            >>> [hit.item_id for hit in index.find_items("r", "cup")]
            ['B1']
        """
        if limit < 1:
            raise UsageError(f"limit must be at least 1, got {limit}")
        flt = _relation_filter(relation)
        if contains:
            flt.should = [
                models.FieldCondition(key="item_id", match=models.MatchValue(value=contains)),
                models.FieldCondition(key="text", match=models.MatchText(text=contains)),
            ]
        points, _next = self._call(
            f"listing of relation {relation!r}",
            lambda: self.client.scroll(
                self.collection, scroll_filter=flt, limit=limit, with_payload=True, with_vectors=False
            ),
        )
        return [_hit(rank, point, score=0.0) for rank, point in enumerate(points, start=1)]

    def missing_points(self, pairs: Iterable[tuple[str, str]], chunk: int = 1024) -> dict[str, int]:
        """How many of the given (item id, relation) points are not in the collection, per relation.

        Looks the points up by id, ``chunk`` at a time (memory stays bounded however many there
        are); used to verify one slice of a catalogue written by several workers.

        Args:
            pairs: (item id, relation) of every point that should be there.
            chunk: ids per lookup request.

        Returns:
            relation -> points missing (``0`` for every relation when all are there).

        Example:
            >>> from qdrant_client import QdrantClient
            >>> index = RelationIndex(QdrantClient(":memory:"), collection="m")
            >>> _ = index.ensure_collection({"item": 2})
            >>> index.missing_points([("B1", "goes with")])
            {'goes with': 1}
        """
        missing: dict[str, int] = {}
        batch: list[tuple[str, str]] = []

        def check() -> None:
            ids = {point_id(item_id, relation): relation for item_id, relation in batch}
            found = self._call(
                f"lookup of {len(ids)} points",
                lambda: self.client.retrieve(
                    self.collection, ids=list(ids), with_payload=False, with_vectors=False
                ),
            )
            present = {str(point.id) for point in found}
            for pid, relation in ids.items():
                missing[relation] = missing.get(relation, 0) + (pid not in present)
            batch.clear()

        for pair in pairs:
            batch.append(pair)
            if len(batch) >= chunk:
                check()
        if batch:
            check()
        return missing

    def get_vectors(self, item_id: str, relation: str) -> dict[str, np.ndarray] | None:
        """The stored vectors of ``item_id`` under ``relation``, or ``None`` if it is not indexed.

        Example:
            >>> from qdrant_client import QdrantClient
            >>> index = RelationIndex(QdrantClient(":memory:"), collection="v")
            >>> _ = index.ensure_collection({"item": 2})
            >>> index.get_vectors("B1", "goes with") is None
            True
        """
        records = self._call(
            f"lookup of item {item_id!r}",
            lambda: self.client.retrieve(
                self.collection, ids=[point_id(item_id, relation)], with_payload=False, with_vectors=True
            ),
        )
        if not records:
            return None
        vectors = records[0].vector
        if not isinstance(vectors, dict):
            return None
        return {name: np.asarray(values, dtype=np.float32) for name, values in vectors.items()}


def _hit(rank: int, point: Any, score: float | None = None) -> Hit:
    payload = dict(point.payload or {})
    text = payload.get("text")
    return Hit(
        rank=rank,
        score=float(point.score) if score is None else score,
        item_id=str(payload.get("item_id", point.id)),
        text=text if isinstance(text, str) else None,
        payload=payload,
    )


def _search_filter(
    relation: str, exclude_item_ids: Sequence[str], query_filter: models.Filter | None
) -> models.Filter:
    flt = _relation_filter(relation)
    if query_filter is not None:
        flt.must.append(query_filter)  # type: ignore[union-attr]
    if exclude_item_ids:
        flt.must_not = [
            models.FieldCondition(key="item_id", match=models.MatchAny(any=list(exclude_item_ids)))
        ]
    return flt


def _relation_filter(relation: str) -> models.Filter:
    return models.Filter(
        must=[models.FieldCondition(key=RELATION_FIELD, match=models.MatchValue(value=relation))]
    )


def _open_embedded(path: str) -> QdrantClient:
    try:
        return QdrantClient(path=path)
    except RuntimeError as exc:
        # The embedded store takes an exclusive lock on its folder.
        if "already accessed" in str(exc):
            raise UsageError(
                f"the embedded Qdrant store at {path} is in use by another process; wait for it to "
                "finish, use another --qdrant-path, or run a Qdrant server (--qdrant-url)"
            ) from None
        raise
    except OSError as exc:
        raise UsageError(f"cannot open the embedded Qdrant store at {path}: {exc}") from None

"""Micro-batching of query encoding across concurrent requests.

A text or image query costs one backbone pass; passes over a batch of queries cost much less
than one pass per query. :class:`QueryBatcher` runs the encoder in one worker thread: a request
hands its query over and waits; whenever the worker is free it takes every query that arrived
meanwhile (up to ``max_batch``) and encodes them together, under the union of the relations they
ask for, in one :func:`rcml_st.index.query_vectors` call. Nothing waits for a batch to fill: at
low load a query is encoded alone at once, under load the batches grow by themselves while the
previous batch is encoded (dynamic batching).

Example:
    >>> import numpy as np
    >>> calls = []
    >>> def encode(queries, relations):
    ...     calls.append((len(queries), list(relations)))
    ...     return np.zeros((len(relations), len(queries), 4), dtype=np.float32)
    >>> with QueryBatcher(encode) as batcher:
    ...     vectors = batcher.encode({"text": "sage bib"}, ["matches in colour", "made by the same brand"])
    >>> sorted(vectors), vectors["matches in colour"].shape
    (['made by the same brand', 'matches in colour'], (4,))
    >>> calls
    [(1, ['matches in colour', 'made by the same brand'])]
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: ``encode(queries, relations) -> (R, N, D) array``: :func:`rcml_st.index.query_vectors` with its model.
Encoder = Callable[[Sequence[Mapping[str, Any]], Sequence[str]], np.ndarray]

DEFAULT_MAX_BATCH = 32


@dataclass
class _Request:
    query: Mapping[str, Any]
    relations: list[str]
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    """What the batcher did: batches run, queries encoded, and the largest batch."""

    batches: int = 0
    queries: int = 0
    largest: int = 0

    def to_dict(self) -> dict[str, float]:
        """JSON-ready, with the mean batch size."""
        mean = self.queries / self.batches if self.batches else 0.0
        return {"batches": self.batches, "queries": self.queries, "largest": self.largest, "mean": mean}


class QueryBatcher:
    """Encodes the queries of concurrent requests in shared batches, in one worker thread.

    Args:
        encode: ``encode(queries, relations)`` returning an (R, N, D) array; each query is a
            ``{"text": ...}`` or ``{"image": ...}`` dict.
        max_batch: the most queries encoded in one call.

    An error raised by ``encode`` for a batch is retried query by query, so one unreadable image
    fails only its own request.
    """

    def __init__(self, encode: Encoder, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._encode = encode
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="rcml-st-query-batcher", daemon=True)
        self._thread.start()

    def submit(self, query: Mapping[str, Any], relations: Sequence[str]) -> Future:
        """Queues one query; the future gives ``{relation: (D,) vector}``."""
        if self._closed:
            raise RuntimeError("the query batcher is closed")
        if not relations:
            raise ValueError("at least one relation is needed")
        request = _Request(query, list(dict.fromkeys(relations)))
        self._queue.put(request)
        return request.future

    def encode(self, query: Mapping[str, Any], relations: Sequence[str]) -> dict[str, np.ndarray]:
        """Queues one query and waits for its vectors: ``{relation: (D,) vector}``."""
        return self.submit(query, relations).result()

    def close(self) -> None:
        """Finishes the queued queries and stops the worker."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()

    def __enter__(self) -> QueryBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take(self) -> tuple[list[_Request], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                break
            if request is None:
                self._run(batch)
                return [], True
            batch.append(request)
        return batch, False

    def _work(self) -> None:
        while True:
            batch, stop = self._take()
            if batch:
                self._run(batch)
            if stop:
                return

    def _run(self, batch: list[_Request]) -> None:
        batch = [request for request in batch if request.future.set_running_or_notify_cancel()]
        if not batch:
            return
        relations = list(dict.fromkeys(r for request in batch for r in request.relations))
        try:
            vectors = self._encode([request.query for request in batch], relations)
        except BaseException as exc:
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            for request in batch:  # find the query at fault; the others still get their answer
                self._run_alone(request)
            return
        self._record(len(batch))
        for n, request in enumerate(batch):
            request.future.set_result({r: vectors[relations.index(r), n] for r in request.relations})

    def _run_alone(self, request: _Request) -> None:
        try:
            vectors = self._encode([request.query], request.relations)
        except BaseException as exc:
            request.future.set_exception(exc)
            return
        self._record(1)
        request.future.set_result({r: vectors[k, 0] for k, r in enumerate(request.relations)})

    def _record(self, size: int) -> None:
        self.stats.batches += 1
        self.stats.queries += size
        self.stats.largest = max(self.stats.largest, size)

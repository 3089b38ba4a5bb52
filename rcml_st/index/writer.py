"""A writer thread, so that encoding batch k+1 overlaps the upsert of batch k.

Encoding (torch) and sending (gRPC) both release the GIL, so a second thread lets the device
keep working while the network and the server take the previous batch. The queue between them
is bounded (``depth`` batches), so memory stays at a few batches of vectors. The first error on
either side stops both: the writer's error is raised on the encoding side at its next
:meth:`BatchWriter.submit` or at :meth:`BatchWriter.close`; an error on the encoding side
(:meth:`BatchWriter.abort`) makes the writer drop what is queued and stop.

Example:
    >>> from qdrant_client import QdrantClient
    >>> import numpy as np
    >>> from rcml_st.index import PointRecord, RelationIndex
    >>> index = RelationIndex(QdrantClient(":memory:"), collection="w")
    >>> _ = index.ensure_collection({"item": 2})
    >>> with BatchWriter(index) as writer:
    ...     writer.submit([PointRecord("B1", "goes with", {"item": np.ones(2)})], items=1)
    >>> writer.points, writer.items
    (1, 1)
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Sequence

from rcml_st.index.records import PointRecord
from rcml_st.index.store import RelationIndex

#: Called after each batch is written, from the writer thread: ``(items_written, points_written)``.
WrittenCallback = Callable[[int, int], None]

_STOP = object()


class BatchWriter:
    """Upserts batches of points on a background thread, in order, one batch at a time.

    Args:
        index: where to write.
        depth: batches that may wait in the queue (the encoding side blocks beyond that).
        on_written: called after each batch is accepted, with the running totals.
        threaded: ``False`` writes inline in :meth:`submit` (the sequential path, same API).

    Attributes:
        items: items whose points were all written.
        points: points written.
    """

    def __init__(
        self,
        index: RelationIndex,
        depth: int = 2,
        on_written: WrittenCallback | None = None,
        threaded: bool = True,
    ) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.index = index
        self.on_written = on_written
        self.items = 0
        self.points = 0
        self._error: BaseException | None = None
        self._stopping = threading.Event()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="rcml-st-writer", daemon=True)
            self._thread.start()

    def _write(self, records: Sequence[PointRecord], items: int) -> None:
        self.points += self.index.upsert(records)
        self.items += items
        if self.on_written is not None:
            self.on_written(self.items, self.points)

    def _run(self) -> None:
        while True:
            task = self._queue.get()
            if task is _STOP or self._stopping.is_set():
                return
            records, items = task  # type: ignore[misc]
            try:
                self._write(records, items)
            except BaseException as exc:  # handed to the encoding side, which raises it
                self._error = exc
                self._stopping.set()
                return

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, records: Sequence[PointRecord], items: int) -> None:
        """Queues one batch (``items`` items' points), blocking while the queue is full.

        Raises:
            Exception: the writer's error, if an earlier batch failed (nothing more is written).
        """
        self._raise_if_failed()
        if self._thread is None:
            self._write(records, items)
            return
        while True:
            try:
                self._queue.put((records, items), timeout=0.1)
                return
            except queue.Full:
                self._raise_if_failed()
                if not self._thread.is_alive():
                    raise RuntimeError("the index writer thread stopped unexpectedly") from None

    def close(self) -> None:
        """Waits until every queued batch is written; raises the writer's error if one failed."""
        if self._thread is not None:
            while self._thread.is_alive():
                try:
                    self._queue.put(_STOP, timeout=0.1)
                    break
                except queue.Full:
                    self._raise_if_failed()
            self._thread.join()
        self._raise_if_failed()

    def abort(self) -> None:
        """Stops the writer without writing what is still queued (the encoding side failed)."""
        self._stopping.set()
        if self._thread is not None:
            while True:  # make room for the stop marker, so a blocked get() wakes up
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_STOP)
            # A batch in flight may be retrying; it is dropped with the (daemon) thread if slow.
            self._thread.join(timeout=5.0)

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

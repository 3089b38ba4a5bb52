"""The overlapped pipeline: a writer thread behind a bounded queue; errors on either side stop the run."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from qdrant_client import QdrantClient

from rcml_st.data import read_catalog
from rcml_st.errors import InputDataError, ServiceError
from rcml_st.index import BatchWriter, PointRecord, RelationIndex, index_catalog


def memory_index(name: str = "w") -> RelationIndex:
    index = RelationIndex(QdrantClient(":memory:"), collection=name)
    index.ensure_collection({"text": 32, "image": 32, "item": 32})
    return index


def batch(start: int, n: int = 4) -> list[PointRecord]:
    return [PointRecord(f"B{i}", "r", {"item": np.ones(32)}) for i in range(start, start + n)]


class SlowIndex:
    """Stands in for an index whose writes take a while; fails on the batch numbered ``fail_at``."""

    def __init__(self, delay: float, fail_at: int | None = None) -> None:
        self.delay, self.fail_at, self.calls = delay, fail_at, []

    def upsert(self, records):
        self.calls.append(threading.current_thread().name)
        time.sleep(self.delay)
        if len(self.calls) == self.fail_at:
            raise ServiceError("Qdrant rejected the batch")
        return len(records)


class BlockedIndex:
    """An index whose writes wait until the test releases them."""

    def __init__(self) -> None:
        self.release, self.calls = threading.Event(), []

    def upsert(self, records):
        self.calls.append(threading.current_thread().name)
        assert self.release.wait(timeout=30), "the test never released the writes"
        return len(records)


def test_submit_returns_while_the_writer_is_busy_and_close_waits_for_all():
    blocked = BlockedIndex()
    writer = BatchWriter(blocked, depth=2)  # type: ignore[arg-type]
    for k in range(3):  # one batch being written, two queued: no submit waits for a write
        writer.submit(batch(4 * k), items=4)
    assert writer.points == 0  # handed over while no write had finished
    blocked.release.set()
    writer.close()
    assert writer.items == 12 and writer.points == 12
    assert blocked.calls == ["rcml-st-writer"] * 3  # written on the writer thread


def test_a_writer_error_stops_the_run_and_nothing_after_it_is_written():
    slow = SlowIndex(delay=0.01, fail_at=2)
    writer = BatchWriter(slow, depth=1)  # type: ignore[arg-type]
    with pytest.raises(ServiceError, match="rejected"):
        for k in range(20):
            writer.submit(batch(4 * k), items=4)
        writer.close()
    assert len(slow.calls) == 2 and writer.items == 4


def test_index_catalog_reports_written_items_when_the_writer_fails(tiny_model, mixed_catalog, monkeypatch):
    index = memory_index()
    real = RelationIndex.upsert
    calls = []

    def failing(self, records, on_batch=None):
        calls.append(len(records))
        if len(calls) == 2:
            raise ServiceError("Qdrant at x: upsert failed")
        return real(self, records, on_batch)

    monkeypatch.setattr(RelationIndex, "upsert", failing)
    catalog = read_catalog(mixed_catalog)
    with pytest.raises(ServiceError, match=r"\(8 of 30 items were written; re-run the same command"):
        index_catalog(tiny_model, catalog, index, relations=["r"], batch_size=8, overlap=True)
    assert len(calls) == 2  # the run stopped at the failed batch


def test_an_encoding_error_stops_the_writer(tiny_model, mixed_catalog, monkeypatch):
    import rcml_st.encoding

    index = memory_index()
    real = rcml_st.encoding.encode_relations
    seen = []

    def broken(model, items, relations, **kwargs):
        seen.append(len(items))
        if len(seen) == 3:
            raise OSError("image file is truncated")
        return real(model, items, relations, **kwargs)

    monkeypatch.setattr(rcml_st.encoding, "encode_relations", broken)
    with pytest.raises(InputDataError, match=r"cannot encode items .* image file is truncated"):
        index_catalog(
            tiny_model, read_catalog(mixed_catalog), index, relations=["r"], batch_size=5, overlap=True
        )
    assert index.count() <= 10  # at most the two batches encoded before the error
    assert not any(t.name == "rcml-st-writer" for t in threading.enumerate())


def test_overlap_is_the_default_on_a_gpu_only(tiny_model, mixed_catalog, monkeypatch):
    import rcml_st.index.pipeline as pipeline

    threaded = []
    real = pipeline.BatchWriter

    def spy(*args, **kwargs):
        threaded.append(kwargs["threaded"])
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "BatchWriter", spy)
    catalog = read_catalog(mixed_catalog).subset(range(3))
    index_catalog(tiny_model, catalog, memory_index(), relations=["r"])  # a CPU model
    index_catalog(tiny_model, catalog, memory_index("x"), relations=["r"], overlap=True)
    assert threaded == [False, True]


def test_overlapped_and_sequential_runs_write_the_same_points(tiny_model, mixed_catalog):
    catalog = read_catalog(mixed_catalog).subset(range(12))
    stored = []
    for overlap in (True, False):
        index = memory_index(f"o{overlap}")
        report = index_catalog(tiny_model, catalog, index, relations=["r"], batch_size=5, overlap=overlap)
        assert report.counts == {"r": 12}
        stored.append({item.id: index.get_vectors(item.id, "r")["item"] for item in catalog})
    for item in catalog:
        np.testing.assert_allclose(stored[0][item.id], stored[1][item.id], atol=1e-6)

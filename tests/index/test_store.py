"""RelationIndex against the real session server (gRPC, and REST where it matters)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from qdrant_client import models

from rcml_st.errors import InputDataError, ServiceError, UsageError
from rcml_st.index import PointRecord, RelationIndex, point_id

pytestmark = pytest.mark.qdrant

DIMS = {"text": 8, "image": 8, "item": 8}


def test_layout_named_cosine_vectors_and_tenant_index_before_any_upsert(make_index):
    index = make_index()
    assert index.ensure_collection(DIMS) is True
    info = index.client.get_collection(index.collection)
    vectors = info.config.params.vectors
    assert {name: (p.size, p.distance) for name, p in vectors.items()} == {
        name: (8, models.Distance.COSINE) for name in ("text", "image", "item")
    }
    relation_index = info.payload_schema["relation"]
    assert relation_index.data_type == models.PayloadSchemaType.KEYWORD
    assert relation_index.params.is_tenant is True
    assert index.count() == 0  # the index exists while the collection is still empty


@pytest.mark.parametrize("grpc", [True, False], ids=["grpc", "rest"])
def test_upsert_writes_deterministic_ids_payload_and_only_present_vectors(make_index, make_records, grpc):
    index = make_index(grpc=grpc)
    assert index._grpc is grpc
    index.ensure_collection(DIMS)
    recs = make_records(6, relations=("goes with", "instead of"))
    assert index.upsert(recs) == 12
    assert index.finish({"goes with": 6, "instead of": 6}) == {"goes with": 6, "instead of": 6}

    points = index.client.retrieve(
        index.collection,
        ids=[point_id("B0000", "goes with"), point_id("B0001", "goes with")],
        with_vectors=True,
    )
    by_item = {p.payload["item_id"]: p for p in points}
    assert set(by_item) == {"B0000", "B0001"}
    assert by_item["B0000"].payload == {
        "item_id": "B0000",
        "relation": "goes with",
        "text": "item 0",
        "price": 0.0,
    }
    assert set(by_item["B0000"].vector) == {"text", "image", "item"}
    assert set(by_item["B0001"].vector) == {"text", "item"}  # no image, no image vector
    stored = np.asarray(by_item["B0000"].vector["item"])
    sent = recs[0].vectors["item"]
    np.testing.assert_allclose(stored, sent / np.linalg.norm(sent), rtol=1e-5)  # cosine stores unit vectors


def test_sharded_collection_counts_exactly_across_shards(make_index, make_records):
    index = make_index(batch_size=16)
    index.ensure_collection(DIMS, shards=3, replication_factor=1)
    params = index.client.get_collection(index.collection).config.params
    assert params.shard_number == 3 and params.replication_factor == 1
    index.upsert(make_records(100, relations=("a", "b")))
    assert index.finish({"a": 100, "b": 100}) == {"a": 100, "b": 100}
    with pytest.raises(UsageError, match="--shards must be at least 1"):
        make_index().ensure_collection(DIMS, shards=0)


def test_reupsert_overwrites_and_never_duplicates(make_index, make_records):
    index = make_index(batch_size=4)
    index.ensure_collection(DIMS)
    index.upsert(make_records(10, seed=0))
    index.upsert(make_records(10, seed=1))  # same ids, new vectors
    index.upsert(make_records(10, seed=1)[3:7])
    assert index.finish({"goes with": 10}) == {"goes with": 10}
    assert index.count() == 10
    got = index.get_vectors("B0005", "goes with")
    want = make_records(10, seed=1)[5].vectors["text"]
    np.testing.assert_allclose(got["text"], want / np.linalg.norm(want), rtol=1e-5)


def test_counts_are_exact_per_relation(make_index, make_records):
    index = make_index(batch_size=7)
    index.ensure_collection(DIMS)
    index.upsert(make_records(30, relations=("a",)) + make_records(11, relations=("b", "c")))
    assert index.finish({"a": 30, "b": 11, "c": 11}) == {"a": 30, "b": 11, "c": 11}
    assert index.count("a") == 30
    assert index.count("nope") == 0
    assert index.count() == 52
    assert index.relations() == {"a": 30, "b": 11, "c": 11}


def test_finish_reports_missing_and_extra_points(make_index, make_records):
    index = make_index()
    index.ensure_collection(DIMS)
    index.upsert(make_records(5))
    with pytest.raises(
        ServiceError, match=r"has 5 points for 6 items \(1 missing\).*re-run the same command"
    ):
        index.finish({"goes with": 6}, settle_time=0)
    with pytest.raises(ServiceError, match=r"has 5 points for 4 items \(1 extra\).*--collection NAME"):
        index.finish({"goes with": 4}, settle_time=0)


@pytest.mark.parametrize(
    ("bad_vectors", "message"),
    [
        ({"text": np.full(8, np.nan), "item": np.ones(8)}, "text vector has 8 non-finite"),
        ({"text": np.ones(8), "item": np.ones(7)}, "item vector has size 7, but the collection expects 8"),
    ],
)
def test_bad_vectors_are_rejected_before_anything_is_sent(make_index, make_records, bad_vectors, message):
    index = make_index(batch_size=4)
    index.ensure_collection(DIMS)
    recs = make_records(20)
    recs.append(PointRecord("BAD", "goes with", bad_vectors))  # last, after several full batches
    sent = []
    with pytest.raises(InputDataError) as info:
        index.upsert(recs, on_batch=sent.append)
    assert "item 'BAD' under relation 'goes with'" in str(info.value)
    assert message in str(info.value)
    assert sent == []
    assert index.count() == 0


def _recreate_with_size(index: RelationIndex, size: int) -> None:
    index.client.delete_collection(index.collection)
    index.client.create_collection(
        index.collection,
        vectors_config={n: models.VectorParams(size=size, distance=models.Distance.COSINE) for n in DIMS},
    )


@pytest.mark.parametrize("grpc", [True, False], ids=["grpc", "rest"])
@pytest.mark.parametrize(
    ("change", "wait", "expected"),
    [
        # Someone recreates the collection with other sizes under our feet: 400 (seen with wait=True;
        # with wait=False the server checks after acknowledging, and finish() catches the loss).
        (lambda index: _recreate_with_size(index, 4), True, ["dimension"]),
        # ... or deletes it: 404, seen at once either way.
        (lambda index: index.client.delete_collection(index.collection), False, ["doesn't exist"]),
    ],
    ids=["400", "404"],
)
def test_client_errors_fail_at_once_without_retry(
    make_index, make_records, caplog, grpc, change, wait, expected, retry_clock
):
    index = make_index(grpc=grpc, retry=None, wait=wait)  # the default 2-minute budget: retries would show
    index.ensure_collection(DIMS)
    change(index)
    with caplog.at_level(logging.WARNING, logger="rcml_st.index"), pytest.raises(ServiceError) as info:
        index.upsert(make_records(3))
    assert retry_clock.sleeps == []  # failed at once, no retry
    assert "rejected upsert of 3 points" in str(info.value)
    for text in expected:
        assert text in str(info.value)
    assert not [r for r in caplog.records if "retry" in r.getMessage()]


def test_points_rejected_after_acknowledgement_are_caught_by_finish(make_index, make_records):
    index = make_index()  # wait=False
    index.ensure_collection(DIMS)
    _recreate_with_size(index, 4)
    index.upsert(make_records(3))
    with pytest.raises(ServiceError, match=r"0 points for 3 items \(3 missing\)"):
        index.finish({"goes with": 3}, settle_time=0)


def test_missing_collection_is_a_usage_error(make_index, make_records):
    index = make_index()
    with pytest.raises(UsageError, match="does not exist"):
        index.upsert(make_records(1))
    with pytest.raises(UsageError, match="does not exist"):
        index.search(np.ones(8), "goes with")


def test_existing_collection_with_other_sizes_is_refused_clearly(make_index):
    index = make_index()
    index.ensure_collection({"text": 8, "image": 8, "item": 512})
    assert index.ensure_collection({"text": 8, "image": 8, "item": 512}) is False
    with pytest.raises(UsageError) as info:
        index.ensure_collection({"text": 8, "image": 8, "item": 256})
    assert str(info.value) == (
        f"collection '{index.collection}' has item vectors of size 512 but the model makes 256; "
        "use --collection NAME or delete it"
    )
    with pytest.raises(UsageError, match="has no audio vectors"):
        index.ensure_collection({"audio": 8})


def test_unnamed_vector_collection_is_refused(make_index):
    index = make_index()
    index.client.create_collection(
        index.collection, vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE)
    )
    with pytest.raises(UsageError, match="single unnamed vector"):
        index.ensure_collection(DIMS)


def test_existing_collection_without_tenant_index_gets_one(make_index):
    index = make_index()
    index.client.create_collection(
        index.collection,
        vectors_config={n: models.VectorParams(size=8, distance=models.Distance.COSINE) for n in DIMS},
    )
    assert index.ensure_collection(DIMS) is False
    schema = index.client.get_collection(index.collection).payload_schema
    assert schema["relation"].params.is_tenant is True


def test_search_filters_by_relation_and_ranks(make_index):
    index = make_index()
    index.ensure_collection(DIMS)
    rng = np.random.default_rng(3)
    base = {f"B{i}": rng.standard_normal(8) for i in range(10)}
    # The same vectors under two relations: only the filter can tell them apart.
    recs = [
        PointRecord(item, relation, {"text": vec, "item": vec}, {"text": f"{item} text"})
        for relation in ("goes with", "instead of")
        for item, vec in base.items()
    ]
    index.upsert(recs)
    index.finish({"goes with": 10, "instead of": 10})
    hits = index.search(base["B3"], "instead of", limit=4)
    assert [h.rank for h in hits] == [1, 2, 3, 4]
    assert hits[0].item_id == "B3" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].text == "B3 text"
    assert all(h.payload["relation"] == "instead of" for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert index.search(base["B3"], "unknown relation") == []
    others = index.search(base["B3"], "goes with", using="text", limit=20, exclude_item_ids=["B3"])
    assert len(others) == 9 and "B3" not in {h.item_id for h in others}


def test_search_checks_query_and_options(make_index, make_records):
    index = make_index()
    index.ensure_collection({"text": 8, "item": 8})
    with pytest.raises(UsageError, match="no 'image' vectors"):
        index.search(np.ones(8), "r", using="image")
    with pytest.raises(InputDataError, match="query item vector has size 3"):
        index.search(np.ones(3), "r")
    with pytest.raises(UsageError, match="--limit"):
        index.search(np.ones(8), "r", limit=0)


def test_get_vectors_of_missing_item_is_none(make_index, make_records):
    index = make_index()
    index.ensure_collection(DIMS)
    index.upsert(make_records(2))
    # Upserts do not wait for the server to apply them (wait=False); finish() is the barrier.
    index.finish({"goes with": 2})
    assert index.get_vectors("B0000", "other relation") is None
    assert set(index.get_vectors("B0000", "goes with")) == {"text", "image", "item"}

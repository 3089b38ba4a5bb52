"""index_catalog / search_index: a tiny model and 30 generated items, on the real server and embedded."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

import rcml_st
from rcml_st.data import read_catalog
from rcml_st.errors import InputDataError, ServiceError, UsageError
from rcml_st.index import RelationIndex, RetryPolicy, index_catalog, point_id, search_index
from rcml_st.index.pipeline import IndexReport

RELATIONS = ("made by the same brand", "matches in colour", "used together for the same activity")

pytestmark = pytest.mark.qdrant


@pytest.fixture(scope="module")
def catalog(mixed_catalog):
    return read_catalog(mixed_catalog)


def stored_points(index: RelationIndex) -> list:
    points, _ = index.client.scroll(index.collection, limit=10_000, with_payload=True, with_vectors=True)
    return points


def test_index_catalog_writes_one_point_per_item_and_relation_with_verified_counts(
    make_index, tiny_model, catalog
):
    index = make_index()
    seen: list[tuple[int, int, int]] = []
    report = index_catalog(tiny_model, catalog, index, batch_size=8, progress=lambda *args: seen.append(args))
    assert isinstance(report, IndexReport)
    assert report.items == 30 and report.points == 90 and report.created is True
    assert report.relations == list(RELATIONS)  # the model's vocabulary by default
    assert report.counts == dict.fromkeys(RELATIONS, 30)
    assert index.relations() == dict.fromkeys(RELATIONS, 30)
    assert seen == [(8, 30, 24), (16, 30, 48), (24, 30, 72), (30, 30, 90)]
    assert "verified: 'made by the same brand' 30, 'matches in colour' 30" in report.summary()

    # Re-run: same ids, overwritten, nothing doubled; the collection is reused.
    again = index_catalog(tiny_model, catalog, index, batch_size=16)
    assert again.created is False and again.counts == report.counts
    assert index.count() == 90


def test_points_carry_payload_and_only_the_vectors_of_present_modalities(make_index, tiny_model, catalog):
    index = make_index()
    index_catalog(tiny_model, catalog, index, relations=["matches in colour"], batch_size=7)
    points = {p.payload["item_id"]: p for p in stored_points(index)}
    assert len(points) == 30
    for item in catalog:
        point = points[item.id]
        assert str(point.id) == point_id(item.id, "matches in colour")
        expected_vectors = (
            {"item"} | ({"text"} if item.text else set()) | ({"image"} if item.image else set())
        )
        assert set(point.vector) == expected_vectors
        payload = dict(point.payload)
        assert payload.pop("item_id") == item.id
        assert payload.pop("relation") == "matches in colour"
        assert payload.pop("text", None) == item.text
        assert payload.pop("image", None) == item.image
        assert payload == item.metadata  # brand, colour, price, ... kept as they are
    # Image-only and text-only items really occur in this catalogue.
    assert any(set(p.vector) == {"item", "image"} for p in points.values())
    assert any(set(p.vector) == {"item", "text"} for p in points.values())


def test_stored_vectors_are_the_models_encoding_under_the_relation(make_index, tiny_model, catalog):
    index = make_index()
    index_catalog(tiny_model, catalog, index, relations=["matches in colour", "made by the same brand"])
    for item in catalog.items[:3]:
        for relation in ("matches in colour", "made by the same brand"):
            want = tiny_model.encode([item.to_input()], relation=relation)[0]
            got = index.get_vectors(item.id, relation)["item"]
            np.testing.assert_allclose(got, want, atol=1e-5)
    a = index.get_vectors(catalog.items[0].id, "matches in colour")["item"]
    b = index.get_vectors(catalog.items[0].id, "made by the same brand")["item"]
    assert not np.allclose(a, b)  # conditioning changes the vector


def test_backbone_runs_once_per_batch_for_all_relations_and_upserts_stream(
    make_index, tiny_model, catalog, monkeypatch
):
    import rcml_st.encoding

    index = make_index()
    calls: list[tuple[int, int]] = []
    real_encode = rcml_st.encoding.encode_relations

    def spy_encode(model, items, relations, **kwargs):
        calls.append((len(items), len(relations)))
        return real_encode(model, items, relations, **kwargs)

    upserts: list[int] = []
    real_upsert = RelationIndex.upsert

    def spy_upsert(self, records, on_batch=None):
        records = list(records)
        upserts.append(len(records))
        return real_upsert(self, records, on_batch)

    monkeypatch.setattr(rcml_st.encoding, "encode_relations", spy_encode)
    monkeypatch.setattr(RelationIndex, "upsert", spy_upsert)
    index_catalog(tiny_model, catalog, index, batch_size=10)
    assert calls == [(10, 3), (10, 3), (10, 3)]  # one encode per batch, all relations in it
    assert upserts == [30, 30, 30]  # never more than one batch of vectors held at once


def test_relation_choice_and_errors(make_index, tiny_model, tiny_clip_config, catalog):
    index = make_index()
    report = index_catalog(tiny_model, catalog, index, relations=["matches in colour", "matches in colour"])
    assert report.relations == ["matches in colour"] and report.points == 30
    # A relation outside the vocabulary is fine: RCML conditions on any text.
    report = index_catalog(tiny_model, catalog, index, relations=["same nursery theme"])
    assert index.relations() == {"matches in colour": 30, "same nursery theme": 30}

    with pytest.raises(UsageError, match="non-empty"):
        index_catalog(tiny_model, catalog, index, relations=["  "])
    with pytest.raises(UsageError, match="--batch-size"):
        index_catalog(tiny_model, catalog, index, batch_size=0)
    with pytest.raises(InputDataError, match="no items"):
        index_catalog(tiny_model, [], index)

    no_vocab = rcml_st.build_model(tiny_clip_config, device="cpu")
    with pytest.raises(UsageError, match=r"no relation vocabulary.*--relation"):
        index_catalog(no_vocab, catalog, index)


def test_model_of_another_size_than_the_collection_is_a_usage_error(make_index, tiny_model, catalog):
    index = make_index()
    index.ensure_collection({"text": 16, "image": 16, "item": 16})
    with pytest.raises(UsageError, match="has text vectors of size 16 but the model makes 32"):
        index_catalog(tiny_model, catalog, index)
    assert index.count() == 0


def test_search_by_id_excludes_the_item_and_filters_on_the_relation(make_index, tiny_model, catalog):
    index = make_index()
    index_catalog(tiny_model, catalog, index)
    query = catalog.items[0].id
    hits = search_index(None, index, "matches in colour", item_id=query, limit=29)
    assert len(hits) == 29 and query not in {h.item_id for h in hits}
    assert {h.payload["relation"] for h in hits} == {"matches in colour"}
    assert [h.rank for h in hits] == list(range(1, 30))
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    # The stored vector is the query: the best hit's score is its cosine with the item's vector.
    own = index.get_vectors(query, "matches in colour")["item"]
    best = index.get_vectors(hits[0].item_id, "matches in colour")["item"]
    assert hits[0].score == pytest.approx(float(own @ best), abs=1e-4)

    other = search_index(None, index, "made by the same brand", item_id=query, limit=5)
    assert {h.payload["relation"] for h in other} == {"made by the same brand"}


def test_search_by_text_and_image_encodes_under_the_relation(make_index, tiny_model, catalog):
    index = make_index()
    index_catalog(tiny_model, catalog, index)
    item = next(i for i in catalog if i.text and i.image)
    hits = search_index(tiny_model, index, "matches in colour", text=item.text, using="text", limit=3)
    assert hits[0].item_id == item.id and hits[0].score == pytest.approx(1.0, abs=1e-4)
    hits = search_index(tiny_model, index, "matches in colour", image=item.image, using="image", limit=3)
    assert hits[0].item_id == item.id and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert all("image" in h.payload for h in hits)  # only items with an image have image vectors
    text_only = next(i for i in catalog if i.image is None)
    # A text-only item queried against images falls back to its fused (= text) vector.
    hits = search_index(None, index, "matches in colour", item_id=text_only.id, using="image", limit=40)
    assert len(hits) == sum(1 for i in catalog if i.image is not None)


def test_search_errors_are_clear(make_index, tiny_model, catalog, tmp_path):
    index = make_index()
    index_catalog(tiny_model, catalog, index, relations=["matches in colour"])
    with pytest.raises(UsageError, match=r"exactly one query.*got none"):
        search_index(tiny_model, index, "matches in colour")
    with pytest.raises(UsageError, match=r"exactly one query.*got --id and --text"):
        search_index(tiny_model, index, "matches in colour", item_id="S0001", text="x")
    with pytest.raises(UsageError, match="item 'nope' is not indexed under relation 'matches in colour'"):
        search_index(None, index, "matches in colour", item_id="nope")
    with pytest.raises(
        UsageError, match=r"relation 'colour' is not indexed.*indexed relations: 'matches in colour'"
    ):
        search_index(None, index, "colour", item_id="S0001")
    with pytest.raises(UsageError, match="--modality"):
        search_index(None, index, "matches in colour", item_id="S0001", using="audio")
    with pytest.raises(UsageError, match="needs the model"):
        search_index(None, index, "matches in colour", text="bib")
    with pytest.raises(InputDataError, match="image not found"):
        search_index(tiny_model, index, "matches in colour", image=tmp_path / "missing.png")


def test_embedded_store_runs_the_same_pipeline(tmp_path, tiny_model, catalog):
    with RelationIndex.connect(path=tmp_path / "store") as index:
        report = index_catalog(tiny_model, catalog, index, relations=["matches in colour"], batch_size=16)
        assert report.counts == {"matches in colour": 30}
        hits = search_index(None, index, "matches in colour", item_id="S0001", limit=3)
        assert len(hits) == 3 and "S0001" not in {h.item_id for h in hits}


def test_server_killed_mid_run_then_a_rerun_completes(start_qdrant, tiny_model, catalog):
    server = start_qdrant()
    index = RelationIndex.connect(
        url=server.url, grpc_port=server.grpc_port, collection="c", retry=RetryPolicy(max_time=0.5)
    )

    def kill_after_first(done: int, _total: int, _points: int) -> None:
        if done == 10:
            server.kill()

    with pytest.raises(ServiceError, match="unreachable after"):
        index_catalog(tiny_model, catalog, index, batch_size=10, progress=kill_after_first)
    server.start()
    rerun = RelationIndex.connect(url=server.url, grpc_port=server.grpc_port, collection="c")
    assert 0 < rerun.count() < 90  # the first run had written part of it
    report = index_catalog(tiny_model, catalog, rerun, batch_size=10)
    assert report.counts == dict.fromkeys(RELATIONS, 30) and rerun.count() == 90


def test_server_restart_mid_run_is_survived_by_the_same_run(start_qdrant, tiny_model, catalog):
    server = start_qdrant()
    index = RelationIndex.connect(
        url=server.url,
        grpc_port=server.grpc_port,
        collection="c",
        retry=RetryPolicy(max_time=30, initial_delay=0.2),
    )
    restarter = threading.Thread(target=server.start)

    def crash_after_first(done: int, _total: int, _points: int) -> None:
        if done == 10:
            server.kill()
            threading.Timer(0.5, restarter.start).start()

    report = index_catalog(tiny_model, catalog, index, batch_size=10, progress=crash_after_first)
    restarter.join()
    assert report.counts == dict.fromkeys(RELATIONS, 30) and index.count() == 90


def test_text_query_with_a_model_of_another_size_is_a_usage_error(make_index, tiny_model):
    from rcml_st.index import PointRecord

    index = make_index()
    index.ensure_collection({"text": 16, "item": 16})
    index.upsert([PointRecord("A", "goes with", {"text": np.ones(16), "item": np.ones(16)})])
    index.finish({"goes with": 1})
    with pytest.raises(UsageError, match=r"model makes vectors of size 32 but collection .* size 16"):
        search_index(tiny_model, index, "goes with", text="a bib")
    assert search_index(None, index, "goes with", item_id="A") == []  # only itself there, excluded

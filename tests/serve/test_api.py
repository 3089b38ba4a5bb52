"""The HTTP API of ``rcml-st serve`` against a real Qdrant server (in-process client)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from rcml_st.encoding import encode_relations
from rcml_st.index import PointRecord, search_index
from rcml_st.model import rcml_modules
from rcml_st.serve import SearchService, create_app

pytestmark = pytest.mark.qdrant


@pytest.fixture(scope="module")
def service(indexed):
    service = SearchService(indexed.model, indexed.connect())
    yield service
    service.close()


@pytest.fixture(scope="module")
def client(service):
    with TestClient(create_app(service, max_upload_bytes=20_000), raise_server_exceptions=False) as client:
        yield client


def ids(hits):
    return [hit["id"] for hit in hits]


def by_relation(body):
    return {entry["relation"]: entry["hits"] for entry in body["results"]}


def test_health_and_relations_with_point_counts(client, indexed):
    health = client.get("/api/health")
    assert health.status_code == 200 and health.json()["qdrant"] is True
    body = client.get("/api/relations").json()
    assert body["collection"] == indexed.collection
    assert {r["relation"]: r["points"] for r in body["relations"]} == dict.fromkeys(
        indexed.relations, len(indexed.items)
    )


def test_id_search_under_several_relations_matches_the_library(client, indexed, service):
    item = indexed.items[3]
    response = client.get("/api/search", params={"id": item.id, "relation": indexed.relations, "limit": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"]["item"]["id"] == item.id and body["query"]["item"]["text"] == item.text
    results = by_relation(body)
    assert list(results) == indexed.relations
    for relation in indexed.relations:
        expected = search_index(None, service.index, relation, item_id=item.id, limit=5)
        assert ids(results[relation]) == [hit.item_id for hit in expected]
        assert [h["score"] for h in results[relation]] == pytest.approx([h.score for h in expected])
        assert item.id not in ids(results[relation])
    # The neighbourhoods differ by relation: that is what the page shows side by side.
    assert len({tuple(ids(hits)) for hits in results.values()}) > 1


def test_text_query_runs_the_backbone_once_for_all_relations_and_matches_the_library(
    client, indexed, service
):
    clip, _pooling = rcml_modules(indexed.model)
    batch_sizes = []
    handle = clip.register_forward_hook(lambda _m, _i, out: batch_sizes.append(len(out["text_index"])))
    try:
        response = client.get("/api/search", params={"text": "navy bath toy", "limit": 4})
    finally:
        handle.remove()
    assert response.status_code == 200, response.text
    assert batch_sizes == [1]  # one backbone pass for one query, whatever the number of relations
    results = by_relation(response.json())
    assert list(results) == list(service.relations())  # all indexed relations by default
    for relation, hits in results.items():
        expected = search_index(indexed.model, service.index, relation, text="navy bath toy", limit=4)
        assert ids(hits) == [hit.item_id for hit in expected]
        assert [h["score"] for h in hits] == pytest.approx([h.score for h in expected], abs=1e-5)


def test_image_upload_search_matches_the_library_with_the_same_file(client, indexed, service):
    item = indexed.items[7]
    relation = indexed.relations[1]
    data = Path(item.image).read_bytes()
    response = client.post(
        "/api/search",
        files={"image": ("photo.png", data, "image/png")},
        data={"relation": relation, "limit": "3", "modality": "image"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"] == {"kind": "image", "filename": "photo.png", "bytes": len(data)}
    expected = search_index(indexed.model, service.index, relation, image=item.image, using="image", limit=3)
    assert ids(by_relation(body)[relation]) == [hit.item_id for hit in expected]
    assert ids(by_relation(body)[relation])[0] == item.id  # its own image is the closest


def test_payload_filter_restricts_results(client, indexed):
    colour = indexed.items[0].metadata["colour"]
    flt = {"must": [{"key": "colour", "match": {"value": colour}}]}
    response = client.get("/api/search", params={"text": "bottle", "limit": 10, "filter": json.dumps(flt)})
    assert response.status_code == 200, response.text
    hits = [hit for entry in response.json()["results"] for hit in entry["hits"]]
    assert hits and all(hit["payload"]["colour"] == colour for hit in hits)
    wanted = sum(1 for item in indexed.items if item.metadata["colour"] == colour)
    assert all(len(entry["hits"]) == min(10, wanted) for entry in response.json()["results"])


def test_encode_endpoint_matches_encode_relations(client, indexed):
    item = indexed.items[2]
    image = base64.b64encode(Path(item.image).read_bytes()).decode()
    relations = indexed.relations[:2]
    response = client.post(
        "/api/encode",
        json={"items": [{"text": "sage bib"}, {"text": item.text, "image": image}], "relations": relations},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    got = np.asarray(body["embeddings"], dtype=np.float32)
    expected = encode_relations(
        indexed.model, [{"text": "sage bib"}, {"text": item.text, "image": item.image}], relations
    ).item
    assert got.shape == expected.shape == (2, 2, body["dim"])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_item_payload_and_its_own_image_file(client, indexed):
    item = indexed.items[5]
    body = client.get("/api/item", params={"id": item.id}).json()
    assert body["id"] == item.id and body["text"] == item.text
    assert body["payload"]["colour"] == item.metadata["colour"]
    assert "relation" not in body["payload"]
    assert item.image not in json.dumps(body)  # the server's file paths are not given out
    image = client.get(body["image"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == Path(item.image).read_bytes()


def test_images_are_served_only_from_the_indexed_items_own_files(client, service, indexed):
    for attempt in (
        "../../../../etc/passwd",
        "/etc/passwd",
        indexed.items[0].image,
        "..%2F..%2Fetc%2Fpasswd",
    ):
        response = client.get("/api/image", params={"id": attempt})
        assert response.status_code == 404, (attempt, response.text)
    for path in ("/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/app.py", "/static/..%2Fservice.py"):
        response = client.get(path)
        assert response.status_code == 404, (path, response.text)
        assert "root:" not in response.text and "import" not in response.text
    # An item whose payload names a file that is not an image is not served either.
    relation = indexed.relations[0]
    service.index.upsert(
        [
            PointRecord(
                "EVIL", relation, {"item": np.ones(32, np.float32)}, {"text": "x", "image": "/etc/passwd"}
            )
        ]
    )
    service.index.finish({})
    try:
        response = client.get("/api/image", params={"id": "EVIL"})
        assert response.status_code == 404 and "root:" not in response.text
    finally:
        from qdrant_client import models

        service.index.client.delete(
            service.index.collection,
            points_selector=models.FilterSelector(
                filter=models.Filter(
                    must=[models.FieldCondition(key="item_id", match=models.MatchValue(value="EVIL"))]
                )
            ),
            wait=True,
        )


def _png(size: int = 16) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (10, 200, 30)).save(out, format="PNG")
    return out.getvalue()


def _noise_png(nbytes: int) -> bytes:
    side = int((nbytes / 3) ** 0.5) + 8
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
        out, "PNG"
    )
    return out.getvalue()


BAD_GETS = [
    ({"id": "S0001", "relation": "sold in the same shop"}, 400, "not indexed"),
    ({"id": "NOPE"}, 404, "NOPE"),
    ({}, 400, "give exactly one query"),
    ({"id": "S0001", "text": "bib"}, 400, "give exactly one query"),
    ({"text": "   "}, 400, "must not be empty"),
    ({"id": "S0001", "limit": 0}, 422, "limit"),
    ({"id": "S0001", "limit": "many"}, 422, "limit"),
    ({"id": "S0001", "modality": "smell"}, 400, "modality"),
    ({"id": "S0001", "filter": "{not json"}, 400, "filter"),
    (
        {"id": "S0001", "filter": json.dumps({"must": [{"key": "colour", "match": {"nope": 1}}]})},
        400,
        "filter",
    ),
    ({"id": "S0001", "filter": json.dumps({"must": "colour"})}, 400, "filter"),
]


@pytest.mark.parametrize(("params", "status", "words"), BAD_GETS)
def test_bad_searches_get_a_one_line_json_error(client, params, status, words):
    response = client.get("/api/search", params=params)
    _check_error(response, status, words)


def test_bad_uploads_and_requests_get_a_one_line_json_error(client):
    cases = [
        (
            client.post("/api/search", files={"image": ("a.txt", b"just some text", "text/plain")}),
            415,
            "not an image",
        ),
        (client.post("/api/search", files={"image": ("e.png", b"", "image/png")}), 400, "empty"),
        (
            client.post("/api/search", files={"image": ("big.png", _noise_png(30_000), "image/png")}),
            413,
            "the limit is 20000 bytes",
        ),
        (
            client.post("/api/search", files={"image": ("huge.png", b"0" * 200_000, "image/png")}),
            413,
            "limit",
        ),
        (client.post("/api/search", data={"relation": "matches in colour"}), 422, "image: is required"),
        (
            client.post(
                "/api/search", files={"image": ("a.png", _png(), "image/png")}, data={"relation": "nope"}
            ),
            400,
            "not indexed",
        ),
        (client.get("/api/item"), 422, "id: is required"),
        (client.get("/api/item", params={"id": "NOPE"}), 404, "NOPE"),
        (client.get("/api/image", params={"id": "NOPE"}), 404, "NOPE"),
        (client.get("/api/nothing-here"), 404, "Not Found"),
        (client.post("/api/encode", json={"items": [{"image": "***"}], "relations": ["r"]}), 400, "base64"),
        (client.post("/api/encode", json={"items": [{}], "relations": ["r"]}), 400, "neither text nor image"),
        (client.post("/api/encode", json={"items": [], "relations": ["r"]}), 422, "items"),
        (client.post("/api/encode", json={"items": [{"text": "a"}], "relations": [" "]}), 400, "relation"),
        (client.post("/api/encode", content=b"{", headers={"content-type": "application/json"}), 422, "JSON"),
        (client.delete("/api/relations"), 405, "Method Not Allowed"),
    ]
    for response, status, words in cases:
        _check_error(response, status, words)


def _check_error(response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"], body
    assert "\n" not in body["error"] and "Traceback" not in body["error"]
    assert words.lower() in body["error"].lower(), body["error"]


def test_api_key_guards_the_api_but_not_health_or_the_page(service):
    app = create_app(service, api_key="s3cret")
    with TestClient(app, raise_server_exceptions=False) as client:
        _check_error(client.get("/api/relations"), 401, "API key")
        _check_error(client.get("/api/relations", headers={"X-API-Key": "wrong"}), 401, "API key")
        assert client.get("/api/relations", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/api/relations", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/api/health").status_code == 200
        page = client.get("/")
        assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
        assert client.get("/static/app.js").status_code == 200
        assert client.get("/openapi.json").json()["info"]["title"] == "rcml-st serve"


def test_items_are_found_by_exact_id_or_a_piece_of_their_text(client, indexed):
    item = indexed.items[9]
    by_id = client.get("/api/items", params={"contains": item.id}).json()["items"]
    assert [found["id"] for found in by_id] == [item.id]
    assert by_id[0]["image"] == f"/api/image?id={item.id}"
    word = item.metadata["product_type"]
    by_text = client.get("/api/items", params={"contains": word, "limit": 100}).json()["items"]
    expected = {i.id for i in indexed.items if word in i.text}
    assert expected and {found["id"] for found in by_text} == expected
    first = client.get("/api/items", params={"limit": 3}).json()["items"]
    assert len(first) == 3


def test_a_collection_that_is_not_there_is_a_503_not_a_client_error(indexed):
    index = indexed.connect()
    index.collection = "no_such_collection"
    service = SearchService(indexed.model, index)
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            _check_error(client.get("/api/search", params={"id": "S0001"}), 503, "does not exist")
            _check_error(client.get("/api/relations"), 503, "does not exist")
            health = client.get("/api/health")
            assert health.status_code == 503 and health.json()["qdrant"] is True
    finally:
        service.close()

"""Qdrant going away and coming back: 503 with a one-line error while it is down, answers again after."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from rcml_st.index._testing import QdrantServer, qdrant_binary_or_unavailable
from rcml_st.serve import SearchService, create_app

from .conftest import build_indexed

pytestmark = pytest.mark.qdrant


def test_qdrant_down_is_a_503_that_recovers_when_it_is_back(tmp_path):
    server = QdrantServer(qdrant_binary_or_unavailable(), tmp_path / "qdrant").start()
    try:
        indexed = build_indexed(tmp_path / "served", server, n_items=20)
        service = SearchService(indexed.model, indexed.connect())
        item = indexed.items[0].id
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            before = client.get("/api/search", params={"id": item, "limit": 3})
            assert before.status_code == 200, before.text

            server.stop()
            for response in (
                client.get("/api/search", params={"id": item, "limit": 3}),
                client.get("/api/search", params={"text": "navy bib"}),
                client.get("/api/item", params={"id": item}),
                client.get("/api/health"),
            ):
                assert response.status_code == 503, response.text
                message = response.json()["error"]
                assert "\n" not in message and "Qdrant" in message

            server.start()
            deadline = time.monotonic() + 60  # a bound on the wait, not a timing assertion
            while client.get("/api/health").status_code != 200:
                assert time.monotonic() < deadline, "the service did not see Qdrant come back"
                time.sleep(0.2)
            after = client.get("/api/search", params={"id": item, "limit": 3})
            assert after.status_code == 200, after.text
            assert after.json()["results"] == before.json()["results"]
        service.close()
    finally:
        server.kill()

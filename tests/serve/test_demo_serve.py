"""`rcml-st demo` then the page it points to: the demo releases its store, serve opens it, and the
held-out item the demo names shows its neighbours under the three relations."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient
from rcml_st.cli.main import app
from typer.testing import CliRunner

import rcml_st
from rcml_st.index import RelationIndex
from rcml_st.serve import SearchService, create_app


@pytest.mark.slow
def test_demo_ends_with_how_to_open_the_page_and_the_page_serves_its_index(tmp_path):
    workdir = tmp_path / "demo"
    args = ["demo", "--workdir", str(workdir), "--items", "80", "--epochs", "1", "--pairs-per-epoch", "64"]
    result = CliRunner().invoke(app, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())  # the console wraps long lines
    command = f"rcml-st serve --model {workdir / 'model'} --qdrant-path {workdir / 'qdrant'}"
    assert command.replace("\n", " ") in out
    found = re.search(r"open http://127\.0\.0\.1:8000/\?id=(\S+)", out)
    assert found, out
    item_id = found.group(1)
    held_out = [json.loads(line)["id"] for line in (workdir / "data" / "test.jsonl").read_text().splitlines()]
    assert item_id in held_out

    # The demo closed its embedded store: it opens again (it is locked while anyone holds it).
    index = RelationIndex.connect(path=workdir / "qdrant")
    service = SearchService(rcml_st.load(workdir / "model", device="cpu"), index)
    try:
        with TestClient(create_app(service)) as client:
            assert client.get(f"/?id={item_id}").status_code == 200
            body = client.get("/api/search", params={"id": item_id, "limit": 5}).json()
    finally:
        service.close()
    assert [entry["relation"] for entry in body["results"]] and len(body["results"]) == 3
    assert all(
        len(entry["hits"]) == 5 and all(hit["image"] for hit in entry["hits"]) for entry in body["results"]
    )

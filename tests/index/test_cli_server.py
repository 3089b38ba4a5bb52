"""`rcml-st index` and `rcml-st search` against a real Qdrant server (here, next to the server fixtures)."""

from __future__ import annotations

import json

import pytest
from rcml_st.cli.main import app
from typer.testing import CliRunner

from rcml_st.index import RelationIndex

pytestmark = pytest.mark.qdrant

RELATIONS = ("made by the same brand", "matches in colour", "used together for the same activity")
runner = CliRunner()


def server_args(server, collection: str) -> list[str]:
    return ["--qdrant-url", server.url, "--grpc-port", str(server.grpc_port), "--collection", collection]


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


@pytest.fixture
def collection(qdrant_server):
    """A fresh collection name on the session server, deleted afterwards."""
    import uuid

    name = f"cli_{uuid.uuid4().hex[:10]}"
    yield name
    with RelationIndex.connect(url=qdrant_server.url, grpc_port=qdrant_server.grpc_port) as index:
        index.client.delete_collection(name)


def test_index_then_search_end_to_end_on_a_server(qdrant_server, collection, mixed_catalog, tiny_model_dir):
    conn = server_args(qdrant_server, collection)
    args = [
        "index",
        str(mixed_catalog),
        "-m",
        str(tiny_model_dir),
        *conn,
        "--batch-size",
        "8",
        "--no-progress",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"= 90 points into collection {collection!r} at {qdrant_server.url}; verified: " in result.stdout
    assert all(f"{r!r} 30" in result.stdout for r in RELATIONS)

    again = runner.invoke(app, args)  # re-run: overwrites, nothing doubled
    assert again.exit_code == 0, again.output
    with RelationIndex.connect(
        url=qdrant_server.url, grpc_port=qdrant_server.grpc_port, collection=collection
    ) as ix:
        assert ix.count() == 90 and ix.relations() == dict.fromkeys(RELATIONS, 30)

    found = runner.invoke(
        app,
        ["search", "-m", str(tiny_model_dir), *conn, "-r", "matches in colour", "--id", "S0000", "--json"],
    )
    assert found.exit_code == 0, found.output
    hits = json.loads(found.stdout)
    assert len(hits) == 10 and "S0000" not in {h["id"] for h in hits}
    assert {h["payload"]["relation"] for h in hits} == {"matches in colour"}

    by_text = runner.invoke(
        app,
        [
            "search",
            "-m",
            str(tiny_model_dir),
            *conn,
            "-r",
            "made by the same brand",
            "--text",
            "a bib",
            "-k",
            "3",
        ],
    )
    assert by_text.exit_code == 0, by_text.output
    assert "'a bib' under 'made by the same brand'" in by_text.stdout


def test_vector_size_mismatch_with_a_server_collection_is_exit_2(
    qdrant_server, collection, mixed_catalog, tiny_model_dir
):
    with RelationIndex.connect(
        url=qdrant_server.url, grpc_port=qdrant_server.grpc_port, collection=collection
    ) as ix:
        ix.ensure_collection({"text": 64, "image": 64, "item": 64})
    result = runner.invoke(
        app, ["index", str(mixed_catalog), "-m", str(tiny_model_dir), *server_args(qdrant_server, collection)]
    )
    assert result.exit_code == 2
    assert error_lines(result) == [
        f"Error: collection {collection!r} has text vectors of size 64 but the model makes 32; "
        "use --collection NAME or delete it"
    ]


@pytest.mark.parametrize("grpc", [True, False], ids=["grpc", "rest"])
def test_server_killed_mid_index_is_exit_1_then_a_rerun_completes(
    start_qdrant, mixed_catalog, tiny_model_dir, monkeypatch, grpc
):
    server = start_qdrant()
    # Without --grpc-port a URL on a non-standard port goes over REST.
    conn = ["--qdrant-url", server.url, *(["--grpc-port", str(server.grpc_port)] if grpc else [])]
    args = [
        "index",
        str(mixed_catalog),
        "-m",
        str(tiny_model_dir),
        *conn,
        "--batch-size",
        "10",
        "--no-progress",
    ]
    real_upsert = RelationIndex.upsert
    calls: list[int] = []

    def upsert_then_crash(self, records, on_batch=None):
        written = real_upsert(self, records, on_batch)
        calls.append(written)
        if len(calls) == 1:
            server.kill()  # after the first batch of items was accepted
        return written

    monkeypatch.setattr(RelationIndex, "upsert", upsert_then_crash)
    result = runner.invoke(app, [*args, "--retry-timeout", "1"])
    monkeypatch.undo()
    assert result.exit_code == 1, result.output
    errors = error_lines(result)
    assert len(errors) == 1 and errors[0].startswith(f"Error: Qdrant at {server.url} unreachable after ")
    assert errors[0].endswith("(10 of 30 items were written; re-run the same command to complete)")
    assert "Traceback" not in result.output
    assert "Warning: Qdrant upsert of 30 points failed" in result.stderr  # the retries were shown
    assert calls == [30]

    server.start()  # same storage, same ports
    rerun = runner.invoke(app, args)
    assert rerun.exit_code == 0, rerun.output
    assert all(f"{r!r} 30" in rerun.stdout for r in RELATIONS)
    with RelationIndex.connect(url=server.url, grpc_port=server.grpc_port) as ix:
        assert ix.count() == 90


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_api_key_from_option_or_environment(start_qdrant, mixed_catalog, tiny_model_dir, monkeypatch):
    server = start_qdrant(env={"QDRANT__SERVICE__API_KEY": "s3cret"})
    monkeypatch.delenv("QDRANT_API_KEY", raising=False)
    base = [
        "index",
        str(mixed_catalog),
        "-m",
        str(tiny_model_dir),
        "--qdrant-url",
        server.url,
        "--no-progress",
    ]
    base += ["--grpc-port", str(server.grpc_port), "-r", "matches in colour"]
    refused = runner.invoke(app, [*base, "--api-key", "wrong"])
    assert refused.exit_code == 2
    assert "refused the request" in error_lines(refused)[0] and "--api-key" in error_lines(refused)[0]

    assert runner.invoke(app, [*base, "--api-key", "s3cret"]).exit_code == 0
    from_env = runner.invoke(app, [*base, "--collection", "env"], env={"QDRANT_API_KEY": "s3cret"})
    assert from_env.exit_code == 0, from_env.output
    assert "verified: 'matches in colour' 30" in from_env.stdout

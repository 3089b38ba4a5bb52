"""`rcml-st index` on the embedded store (no server): counts, re-runs, options, one-line errors.

The same command against a real server, including a server killed mid-run, is in
tests/index/test_cli_server.py (next to the server fixtures).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest
import torch
from rcml_st.cli.main import app
from typer.testing import CliRunner

import rcml_st
from rcml_st.data import read_catalog
from rcml_st.index import RelationIndex, point_id
from rcml_st.index._testing import free_port

RELATIONS = ("made by the same brand", "matches in colour", "used together for the same activity")
runner = CliRunner()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_clip_config, mixed_catalog):
    """A mixed catalogue, a tiny model with the catalogue's relations, and one without a vocabulary."""
    root = tmp_path_factory.mktemp("cli-index")
    data = mixed_catalog
    torch.manual_seed(0)
    model = rcml_st.build_model(tiny_clip_config, device="cpu")
    rcml_st.set_relation_vocabulary(model, list(RELATIONS))
    model.save_pretrained(str(root / "model"))
    rcml_st.build_model(tiny_clip_config, device="cpu").save_pretrained(str(root / "no-vocab"))
    return root, data


def index(*args: str):
    return runner.invoke(app, ["index", *args, "--no-progress"])


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def test_index_then_rerun_writes_exact_counts_without_duplicates(workspace, tmp_path):
    root, data = workspace
    store = tmp_path / "store"
    args = [str(data), "--model", str(root / "model"), "--qdrant-path", str(store), "--batch-size", "8"]
    result = index(*args)
    assert result.exit_code == 0, result.output
    assert (
        "Indexed 30 items x 3 relations = 90 points into collection 'rcml' at embedded store "
        f"{store}; verified: 'made by the same brand' 30, 'matches in colour' 30, "
        "'used together for the same activity' 30"
    ) in result.stdout
    assert error_lines(result) == []

    again = index(*args)
    assert again.exit_code == 0, again.output
    assert "verified: 'made by the same brand' 30" in again.stdout
    with RelationIndex.connect(path=store) as opened:
        assert opened.count() == 90
        assert opened.relations() == dict.fromkeys(RELATIONS, 30)
        points, _ = opened.client.scroll("rcml", limit=200, with_payload=True, with_vectors=True)
    by_id = {str(p.id): p for p in points}
    items = read_catalog(data).items  # line 5 is text-only, line 7 image-only, line 1 has both

    def point(line: int):
        return by_id[point_id(items[line - 1].id, "matches in colour")]

    text_only, image_only, both = point(5), point(7), point(1)
    assert set(text_only.vector) == {"text", "item"} and "image" not in text_only.payload
    assert set(image_only.vector) == {"image", "item"} and "text" not in image_only.payload
    assert set(both.vector) == {"text", "image", "item"}
    assert {"item_id", "relation", "text", "image", "brand", "colour", "price"} <= set(both.payload)


def test_relation_subset_and_collection_name(workspace, tmp_path):
    root, data = workspace
    store = tmp_path / "store"
    result = index(
        str(data),
        "-m",
        str(root / "model"),
        "--qdrant-path",
        str(store),
        "--collection",
        "baby",
        "-r",
        "matches in colour",
        "-r",
        "goes in the same nursery",
    )
    assert result.exit_code == 0, result.output
    assert "30 items x 2 relations = 60 points into collection 'baby'" in result.stdout
    with RelationIndex.connect(path=store, collection="baby") as opened:
        assert opened.relations() == {"matches in colour": 30, "goes in the same nursery": 30}


def test_progress_bar_goes_to_stderr(workspace, tmp_path):
    root, data = workspace
    result = runner.invoke(
        app, ["index", str(data), "-m", str(root / "model"), "--qdrant-path", str(tmp_path / "s"), "-r", "x"]
    )
    assert result.exit_code == 0, result.output
    assert "30/30" in result.stderr and "30/30" not in result.stdout


def test_bad_data_file_is_exit_2_with_file_and_line(workspace, tmp_path):
    root, data = workspace
    bad = data.parent / "bad.jsonl"  # next to the images its records name
    lines = data.read_text().splitlines()
    lines[3] = '{"id": "broken", "text": '
    bad.write_text("\n".join(lines) + "\n")
    result = index(str(bad), "-m", str(root / "model"), "--qdrant-path", str(tmp_path / "s"))
    assert result.exit_code == 2
    assert error_lines(result) == [error_lines(result)[0]] and f"{bad}:4: " in error_lines(result)[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "s").exists()  # failed before touching the store

    skipped = index(
        str(bad), "-m", str(root / "model"), "--qdrant-path", str(tmp_path / "s"), "--skip-invalid"
    )
    assert skipped.exit_code == 0, skipped.output
    assert "skipped 1 record: 1 bad JSON" in skipped.stderr
    assert "Indexed 29 items x 3 relations" in skipped.stdout


def test_usage_errors_are_exit_2(workspace, tmp_path):
    root, data = workspace
    model = str(root / "model")
    cases = [
        (["-m", str(root / "no-vocab")], "no relation vocabulary"),
        (["-m", str(tmp_path / "nowhere")], "model directory not found"),
        (["-m", model, "--qdrant-url", "http://x:6333", "--qdrant-path", str(tmp_path)], "not both"),
        (["-m", model, "--qdrant-url", "localhost:6333"], "--qdrant-url must look like"),
        (["-m", model, "--grpc-port", "7000"], "--grpc-port needs --qdrant-url"),
    ]
    for extra, message in cases:
        result = index(str(data), *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert len(error_lines(result)) == 1 and message in error_lines(result)[0], result.stderr
    assert runner.invoke(app, ["index", str(data), "-m", model, "--batch-size", "0"]).exit_code == 2


def test_vector_size_mismatch_with_the_existing_collection_is_exit_2(workspace, tmp_path):
    root, data = workspace
    store = tmp_path / "store"
    with RelationIndex.connect(path=store) as opened:
        opened.ensure_collection({"text": 16, "image": 16, "item": 16})
    result = index(str(data), "-m", str(root / "model"), "--qdrant-path", str(store))
    assert result.exit_code == 2
    assert error_lines(result) == [
        "Error: collection 'rcml' has text vectors of size 16 but the model makes 32; "
        "use --collection NAME or delete it"
    ]


def test_unreachable_server_is_exit_1_with_one_error_line(workspace):
    root, data = workspace
    url = f"http://127.0.0.1:{free_port()}"
    result = index(str(data), "-m", str(root / "model"), "--qdrant-url", url, "--retry-timeout", "0.5")
    assert result.exit_code == 1
    errors = error_lines(result)
    assert len(errors) == 1 and errors[0].startswith(f"Error: Qdrant at {url} unreachable after ")
    assert "Traceback" not in result.output
    assert all(line.startswith(("Error:", "Warning:")) for line in result.stderr.splitlines() if line)


def test_help_lists_options_and_examples():
    result = runner.invoke(app, ["index", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in (
        "Examples:",
        "--qdrant-url",
        "--api-key",
        "QDRANT_API_KEY",
        "--qdrant-path",
        "--shards",
        "--replication-factor",
        "--retry-timeout",
        "--relation",
        "--skip-invalid",
    ):
        assert text in result.stdout, text


def test_slices_written_one_by_one_then_verify_only_checks_the_whole_catalogue(workspace, tmp_path):
    root, data = workspace
    base = [str(data), "-m", str(root / "model"), "--qdrant-path", str(tmp_path / "store"), "-r", "goes with"]
    first = index(*base, "--shard", "0/2")
    assert first.exit_code == 0, first.output
    assert (
        "Slice 0/2 of" in first.stderr
        and "all " in first.stdout
        and "points of this slice found" in first.stdout
    )
    early = index(*base, "--verify-only")
    assert early.exit_code == 1 and "missing); re-run the same command" in error_lines(early)[0]
    second = index(*base, "--shard", "1/2")
    assert second.exit_code == 0, second.output
    # Re-running a slice is safe; here through a launcher's RANK/WORLD_SIZE instead of --shard.
    launched = runner.invoke(app, ["index", *base, "--no-progress"], env={"RANK": "1", "WORLD_SIZE": "2"})
    assert launched.exit_code == 0 and "Slice 1/2 of" in launched.stderr
    verified = index(*base, "--verify-only")
    assert verified.exit_code == 0, verified.output
    assert "30 items, 'goes with' 30" in verified.stdout
    with RelationIndex.connect(path=tmp_path / "store") as opened:
        assert opened.count() == 30
    assert index(*base, "--shard", "2/2").exit_code == 2


def test_metadata_keys_named_like_index_fields_are_kept_under_meta(workspace, tmp_path):
    root, data = workspace
    lines = data.read_text().splitlines()
    record = json.loads(lines[0])
    record.update({"relation": "sister brand", "item_id": "legacy-42"})
    clashing = data.parent / "clashing.jsonl"
    clashing.write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n")
    store = tmp_path / "store"
    result = index(str(clashing), "-m", str(root / "model"), "--qdrant-path", str(store), "-r", "goes with")
    assert result.exit_code == 0, result.output
    assert (
        "Warning: 1 items have metadata keys named item_id or relation: kept in the payload under 'meta'"
        in (result.stderr)
    )
    with RelationIndex.connect(path=store) as opened:
        point = opened.client.retrieve("rcml", [point_id(record["id"], "goes with")], with_payload=True)[0]
    assert point.payload["item_id"] == record["id"] and point.payload["relation"] == "goes with"
    assert point.payload["meta"] == {"item_id": "legacy-42", "relation": "sister brand"}


def test_storage_options_reach_the_collection_and_bad_ones_are_exit_2(workspace, tmp_path):
    root, data = workspace
    store = tmp_path / "store"
    base = [str(data), "-m", str(root / "model"), "--qdrant-path", str(store), "-r", "goes with"]
    result = index(*base, "--vectors", "item", "--quantization", "int8", "--sequential")
    assert result.exit_code == 0, result.output
    assert (
        "Warning: the embedded store keeps vectors in RAM and searches exactly; --quantization"
        in result.stderr
    )
    with RelationIndex.connect(path=store) as opened:
        assert opened.dims() == {"item": 32}
    refused = index(*base)  # the collection holds only item vectors
    assert refused.exit_code == 2
    assert "has no text vectors but this run stores them" in error_lines(refused)[0]
    for extra, message in (
        (["--vectors", "audio"], "--vectors must name some of text, image, item, got audio"),
        (["--quantization", "pq"], "--quantization must be one of none, int8, binary"),
        (["--shard", "x"], "--shard must be I/N"),
    ):
        bad = index(*base, *extra)
        assert bad.exit_code == 2 and message in error_lines(bad)[0], bad.output


def test_bad_data_fails_fast_without_importing_torch(workspace, tmp_path):
    root, _ = workspace
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "A", "text": "bib"}\n{"id": "A", "text": "cup"}\n')
    probe = (
        "import atexit, sys; atexit.register(lambda: print('torch loaded:', 'torch' in sys.modules)); "
        "from rcml_st.cli.main import app; app()"
    )
    cases = [
        (
            ["index", str(bad), "-m", str(root / "model")],
            f"Error: {bad}:2: duplicate id 'A' (first seen on line 1)",
        ),
        (["index", str(bad).replace("bad", "gone"), "-m", str(root / "model")], "gone.jsonl: file not found"),
        (["search", "-m", str(tmp_path / "nowhere"), "-r", "x", "--id", "A"], "model directory not found"),
    ]
    for command, message in cases:
        # CPU time of the child, not wall time: the check must hold on a loaded machine too.
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [sys.executable, "-c", probe, *command], capture_output=True, text=True, timeout=60
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("Error: ") and message in done.stderr and "Traceback" not in done.stderr
        assert "torch loaded: False" in done.stdout
        assert cpu < 3.0, (command, cpu)

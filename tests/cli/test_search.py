"""`rcml-st search` on an embedded store written by `rcml-st index`: table, --json, queries, errors."""

from __future__ import annotations

import json

import pytest
import torch
from rcml_st.cli.main import app
from typer.testing import CliRunner

import rcml_st
from rcml_st.data import generate_catalog, read_catalog

RELATIONS = ("made by the same brand", "matches in colour", "used together for the same activity")
runner = CliRunner()


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_clip_config):
    """A tiny model, 30 generated items (every 5th without an image), indexed into an embedded store."""
    root = tmp_path_factory.mktemp("cli-search")
    synthetic = generate_catalog(root / "data", n_items=30, holdout=0, seed=4, image_size=32)
    records = [json.loads(line) for line in synthetic.train_path.read_text().splitlines()]
    for n, record in enumerate(records, start=1):
        if n % 5 == 0:
            del record["image"]
    data = root / "data" / "items.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    torch.manual_seed(0)
    model = rcml_st.build_model(tiny_clip_config, device="cpu")
    rcml_st.set_relation_vocabulary(model, list(RELATIONS))
    model.save_pretrained(str(root / "model"))
    store = root / "store"
    result = runner.invoke(
        app, ["index", str(data), "-m", str(root / "model"), "--qdrant-path", str(store), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    return root, read_catalog(data), store


def search(indexed, *args: str):
    root, _, store = indexed
    return runner.invoke(
        app, ["search", "-m", str(root / "model"), "--qdrant-path", str(store), *args], env={"COLUMNS": "200"}
    )


def test_search_by_id_prints_a_table_without_the_item_itself(indexed):
    _, catalog, _ = indexed
    query = catalog.items[0]
    result = search(indexed, "-r", "matches in colour", "--id", query.id, "--limit", "4")
    assert result.exit_code == 0, result.output
    assert f"--id '{query.id}' under 'matches in colour' (item vectors)" in result.stdout
    for column in ("rank", "score", "id", "text"):
        assert column in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 4
    assert [row.split("│")[1].strip() for row in rows] == ["1", "2", "3", "4"]
    ids = [row.split("│")[3].strip() for row in rows]
    assert query.id not in ids and all(i in catalog for i in ids)


def test_search_json_filters_on_the_relation_and_carries_the_payload(indexed):
    _, catalog, _ = indexed
    query = catalog.items[1].id
    out = {}
    for relation in ("matches in colour", "made by the same brand"):
        result = search(indexed, "--relation", relation, "--id", query, "--json", "-k", "29")
        assert result.exit_code == 0, result.output
        hits = json.loads(result.stdout)
        assert len(hits) == 29 and query not in {h["id"] for h in hits}
        assert [h["rank"] for h in hits] == list(range(1, 30))
        assert all(set(h) == {"rank", "score", "id", "text", "payload"} for h in hits)
        assert {h["payload"]["relation"] for h in hits} == {relation}
        first = catalog.items[catalog.index_of(hits[0]["id"])]
        assert hits[0]["text"] == first.text and hits[0]["payload"]["brand"] == first.metadata["brand"]
        out[relation] = [h["id"] for h in hits]
    assert out["matches in colour"] != out["made by the same brand"]  # conditioning changes the ranking


def test_search_by_text_and_by_image_with_a_modality(indexed):
    _, catalog, _ = indexed
    item = catalog.items[0]
    by_text = search(indexed, "-r", "matches in colour", "--text", item.text, "--modality", "text", "--json")
    assert by_text.exit_code == 0, by_text.output
    hits = json.loads(by_text.stdout)
    assert hits[0]["id"] == item.id and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)

    by_image = search(
        indexed, "-r", "matches in colour", "--image", item.image, "--modality", "image", "--json"
    )
    assert by_image.exit_code == 0, by_image.output
    hits = json.loads(by_image.stdout)
    assert hits[0]["id"] == item.id and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    # Only the 24 items with an image have image vectors to match.
    every = search(
        indexed, "-r", "matches in colour", "--image", item.image, "--modality", "image", "--json", "-k", "50"
    )
    assert len(json.loads(every.stdout)) == 24


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-r", "matches in colour"],
            "give exactly one query: --id ID, --text TEXT or --image PATH (got none)",
        ),
        (["-r", "matches in colour", "--id", "S0001", "--text", "bib"], "(got --id and --text)"),
        (
            ["-r", "matches in colour", "--id", "NOPE"],
            "item 'NOPE' is not indexed under relation 'matches in colour'",
        ),
        (
            ["-r", "in the same box", "--id", "S0001"],
            "relation 'in the same box' is not indexed in collection 'rcml'",
        ),
        (["-r", "matches in colour", "--image", "missing.png"], "missing.png: image not found"),
        (
            ["-r", "matches in colour", "--id", "S0001", "--collection", "other"],
            "collection 'other' does not exist",
        ),
        (["-r", "matches in colour", "--id", "S0001", "--modality", "audio"], None),
        (["-r", "matches in colour", "--id", "S0001", "--limit", "0"], None),
    ],
)
def test_bad_queries_are_exit_2_with_one_error_line(indexed, args, message):
    result = search(indexed, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    if message is not None:
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and message in errors[0], result.stderr


def test_missing_store_and_model_are_exit_2(indexed, tmp_path):
    root, _, store = indexed
    result = runner.invoke(
        app,
        [
            "search",
            "-m",
            str(root / "model"),
            "--qdrant-path",
            str(tmp_path / "none"),
            "-r",
            "x",
            "--id",
            "a",
        ],
    )
    assert result.exit_code == 2 and "no embedded Qdrant store at" in result.stderr
    result = runner.invoke(
        app, ["search", "-m", str(tmp_path / "nomodel"), "--qdrant-path", str(store), "-r", "x", "--id", "a"]
    )
    assert result.exit_code == 2 and "model directory not found" in result.stderr


def test_help_has_examples():
    result = runner.invoke(app, ["search", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("Examples:", "--id", "--text", "--image", "--modality", "--json", "--limit", "--qdrant-url"):
        assert text in result.stdout, text


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_device_cuda_without_a_gpu_is_one_line_exit_2(indexed):
    result = search(indexed, "-r", "matches in colour", "--text", "a red pram", "--device", "cuda")
    assert result.exit_code == 2
    assert "Error: --device cuda: no CUDA GPU is available" in result.stderr
    assert "Traceback" not in result.output

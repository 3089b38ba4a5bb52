"""A collection records the model that indexed it; another model of the same width cannot write or
search it without --force. Embedded store and real server (gRPC and REST) alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rcml_st.cli.main import app
from typer.testing import CliRunner

import rcml_st
from rcml_st.data import read_catalog
from rcml_st.errors import UsageError
from rcml_st.index import RelationIndex, index_catalog, search_index
from rcml_st.index.ownership import MODEL_KEY, model_fingerprint

from .conftest import RELATIONS, save_tiny_model

runner = CliRunner()


@pytest.fixture(scope="module")
def catalog(mixed_catalog):
    return read_catalog(mixed_catalog)


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory, tiny_model_dir):
    """A second tiny model, same architecture and width (32) as ``tiny_model``, other weights."""
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("other") / "tiny"
    model = rcml_st.build_model("rcml-tiny", device="cpu")
    rcml_st.set_relation_vocabulary(model, list(RELATIONS))
    model.save_pretrained(str(folder))
    return folder


def _stored(index: RelationIndex) -> dict[str, np.ndarray]:
    points, _ = index.client.scroll(index.collection, limit=10_000, with_vectors=True)
    return {str(p.id): np.asarray(p.vector["item"]) for p in points}


def check_ownership(index: RelationIndex, model, other, catalog) -> None:
    index_catalog(model, catalog, index)
    assert index.metadata()[MODEL_KEY] == model_fingerprint(model)
    assert {r: index.count(r) for r in RELATIONS} == dict.fromkeys(RELATIONS, 30)  # no extra point
    before = _stored(index)
    with pytest.raises(UsageError, match=r"indexed with another model .*--force"):
        index_catalog(other, catalog, index)
    assert _stored(index).keys() == before.keys()
    assert all(np.allclose(before[k], v) for k, v in _stored(index).items())  # nothing overwritten
    index_catalog(model, catalog, index)  # the same model may re-index (resume) freely
    with pytest.raises(UsageError, match=r"indexed with another model .*--force"):
        search_index(other, index, RELATIONS[1], text="navy bib")
    assert search_index(other, index, RELATIONS[1], text="navy bib", force=True)
    assert search_index(model, index, RELATIONS[1], text="navy bib")
    assert search_index(None, index, RELATIONS[1], item_id=catalog.items[0].id)  # stored vectors: no model
    report = index_catalog(other, catalog, index, force=True)
    assert report.counts == dict.fromkeys(RELATIONS, 30)
    assert index.metadata()[MODEL_KEY] == model_fingerprint(other)
    assert search_index(other, index, RELATIONS[1], text="navy bib")


def test_embedded_store(tmp_path, tiny_model, other_model_dir, catalog):
    other = rcml_st.load(other_model_dir, device="cpu")
    with RelationIndex.connect(path=tmp_path / "q") as index:
        check_ownership(index, tiny_model, other, catalog)
    with RelationIndex.connect(path=tmp_path / "q") as index:  # recorded on disk
        assert index.metadata()[MODEL_KEY] == model_fingerprint(other)


@pytest.mark.qdrant
@pytest.mark.parametrize("grpc", [True, False], ids=["grpc", "rest"])
def test_real_server(make_index, grpc, tiny_model, other_model_dir, catalog):
    check_ownership(make_index(grpc=grpc), tiny_model, rcml_st.load(other_model_dir, device="cpu"), catalog)


def test_a_saved_and_loaded_model_keeps_its_fingerprint(tmp_path, tiny_model, tiny_model_dir):
    again = save_tiny_model(tmp_path / "again")  # the same seed: the same weights
    assert model_fingerprint(rcml_st.load(again, device="cpu")) == model_fingerprint(tiny_model)
    assert model_fingerprint(rcml_st.load(tiny_model_dir, device="cpu")) == model_fingerprint(tiny_model)


def test_cli_index_and_search_refuse_another_model(tmp_path, mixed_catalog, tiny_model_dir, other_model_dir):
    store = ["--qdrant-path", str(tmp_path / "q")]
    first = runner.invoke(
        app, ["index", str(mixed_catalog), "-m", str(tiny_model_dir), *store, "--no-progress"]
    )
    assert first.exit_code == 0, first.output
    other = ["-m", str(other_model_dir), *store]
    refused = runner.invoke(app, ["index", str(mixed_catalog), *other, "--no-progress"])
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.startswith("Error: collection 'rcml'") and "--force" in refused.stderr
    search = ["search", *other, "-r", RELATIONS[1], "--text", "navy bib"]
    assert runner.invoke(app, search).exit_code == 2
    assert runner.invoke(app, [*search, "--force"]).exit_code == 0
    forced = runner.invoke(app, ["index", str(mixed_catalog), *other, "--no-progress", "--force"])
    assert forced.exit_code == 0, forced.output
    assert runner.invoke(app, search).exit_code == 0

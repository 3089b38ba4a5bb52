"""Storage settings asked of an existing collection are not ignored without a word: a warning names
what the collection keeps (server), or that the embedded store ignores them."""

from __future__ import annotations

import logging

import pytest
from rcml_st.cli.main import app
from typer.testing import CliRunner

from rcml_st.index import RelationIndex
from rcml_st.index.layout import Layout

runner = CliRunner()
DIMS = {"item": 8}


def _warnings(caplog) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "rcml_st.index"
    ]


@pytest.mark.qdrant
def test_the_server_names_the_settings_an_existing_collection_keeps(make_index, caplog):
    index = make_index()
    assert index.ensure_collection(DIMS, layout=Layout(vectors=("item",))) is True
    caplog.set_level(logging.WARNING, logger="rcml_st.index")
    index.ensure_collection(DIMS, layout=Layout(vectors=("item",), quantization="int8", hnsw_m=32))
    [message] = _warnings(caplog)
    assert "keeps its layout: int8 quantization (it has none), HNSW m 32 (it has 16) asked" in message
    caplog.clear()
    index.ensure_collection(DIMS, layout=Layout(vectors=("item",)))  # nothing asked: nothing to say
    assert _warnings(caplog) == []


@pytest.mark.qdrant
def test_the_same_options_again_say_nothing(make_index, caplog):
    index = make_index()
    layout = Layout(vectors=("item",), quantization="int8", hnsw_m=32)
    index.ensure_collection(DIMS, layout=layout)
    caplog.set_level(logging.WARNING, logger="rcml_st.index")
    index.ensure_collection(DIMS, layout=layout)  # an interrupted run, re-run: no warning
    assert _warnings(caplog) == []


def test_the_embedded_store_says_it_ignores_them_for_an_existing_collection_too(tmp_path, caplog):
    with RelationIndex.connect(path=tmp_path / "q") as index:
        index.ensure_collection(DIMS, layout=Layout(vectors=("item",)))
        caplog.set_level(logging.WARNING, logger="rcml_st.index")
        index.ensure_collection(DIMS, layout=Layout(vectors=("item",), quantization="int8"))
    assert any("--quantization" in message and "ignored" in message for message in _warnings(caplog))


@pytest.mark.qdrant
def test_the_index_command_prints_the_warning(qdrant_url, mixed_catalog, tmp_path):
    model = tmp_path / "m"
    from .conftest import save_tiny_model

    save_tiny_model(model)
    args = ["index", str(mixed_catalog), "-m", str(model), "--qdrant-url", qdrant_url, "--no-progress"]
    args += ["--collection", f"kept_{tmp_path.name[-12:]}", "-r", "matches in colour"]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, [*args, "--quantization", "int8"])
    assert again.exit_code == 0, again.output
    assert "Warning: collection" in again.stderr and "int8 quantization (it has none)" in again.stderr

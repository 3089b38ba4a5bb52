"""Storage layouts on a real server: only some vectors, int8/binary quantization, on-disk, HNSW."""

from __future__ import annotations

import numpy as np
import pytest

from rcml_st.data import read_catalog
from rcml_st.errors import UsageError
from rcml_st.index import Layout, index_catalog, search_index

pytestmark = pytest.mark.qdrant


@pytest.fixture(scope="module")
def catalog(mixed_catalog):
    return read_catalog(mixed_catalog)


def test_layout_options_are_validated():
    assert Layout(vectors=("item", "text")).vectors == ("text", "item")
    assert Layout(quantization="int8").vectors_on_disk and not Layout().vectors_on_disk
    for kwargs, message in (
        ({"vectors": ("audio",)}, "--vectors must name some of"),
        ({"vectors": ()}, "--vectors must name some of"),
        ({"quantization": "int4"}, "--quantization must be one of"),
        ({"hnsw_m": 1}, "--hnsw-m"),
    ):
        with pytest.raises(UsageError, match=message):
            Layout(**kwargs)


@pytest.mark.parametrize("quantization", ["int8", "binary"])
def test_item_only_quantized_layout_is_created_as_asked_and_searches_rescore(
    make_index, tiny_model, catalog, quantization
):
    index = make_index()
    layout = Layout(vectors=("item",), quantization=quantization, hnsw_m=8, hnsw_ef_construct=50)
    report = index_catalog(tiny_model, catalog, index, relations=["matches in colour"], layout=layout)
    assert report.counts == {"matches in colour": 30}

    info = index.client.get_collection(index.collection)
    params = info.config.params
    assert set(params.vectors) == {"item"} and params.vectors["item"].on_disk is True
    assert params.on_disk_payload is True
    assert info.config.hnsw_config.m == 8 and info.config.hnsw_config.ef_construct == 50
    quant = info.config.quantization_config
    assert (quant.scalar if quantization == "int8" else quant.binary).always_ram is True
    assert index.quantized

    points, _ = index.client.scroll(index.collection, limit=100, with_vectors=True)
    assert all(set(p.vector) == {"item"} for p in points) and len(points) == 30

    # Scores are the originals' cosines (rescored), not the quantized approximation.
    query = catalog.items[0].id
    hits = search_index(None, index, "matches in colour", item_id=query, limit=5)
    own = index.get_vectors(query, "matches in colour")["item"]
    for hit in hits:
        other = index.get_vectors(hit.item_id, "matches in colour")["item"]
        assert hit.score == pytest.approx(float(own @ other), abs=1e-4)
    text_hits = search_index(tiny_model, index, "matches in colour", text=catalog.items[0].text, limit=3)
    assert len(text_hits) == 3
    with pytest.raises(UsageError, match=r"has no 'text' vectors \(it has item\)"):
        search_index(None, index, "matches in colour", item_id=query, using="text")


def test_an_existing_collection_with_other_vectors_is_refused(make_index, tiny_model, catalog):
    index = make_index()
    index_catalog(tiny_model, catalog, index, relations=["matches in colour"])
    with pytest.raises(
        UsageError, match=r"stores image, item, text vectors but this run would write only item"
    ):
        index_catalog(tiny_model, catalog, index, relations=["r"], layout=Layout(vectors=("item",)))
    assert index.relations() == {"matches in colour": 30}


def test_text_only_layout_refuses_an_image_only_item(make_index, tiny_model, catalog):
    index = make_index()
    with pytest.raises(Exception, match=r"has none of the stored vectors \(text\)"):
        index_catalog(tiny_model, catalog, index, relations=["r"], layout=Layout(vectors=("text",)))


def test_full_layout_scores_match_exact_cosine(make_index, tiny_model, catalog):
    index = make_index()
    index_catalog(tiny_model, catalog, index, relations=["matches in colour"], layout=Layout(on_disk=True))
    assert index.client.get_collection(index.collection).config.params.vectors["text"].on_disk is True
    assert not index.quantized
    vector = index.get_vectors(catalog.items[1].id, "matches in colour")["item"]
    hits = index.search(vector, "matches in colour", limit=1)
    assert hits[0].item_id == catalog.items[1].id and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-4)

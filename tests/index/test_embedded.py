"""The same API on the embedded store (QdrantClient(path=...)), no server."""

from __future__ import annotations

import numpy as np
import pytest

from rcml_st.errors import InputDataError, UsageError
from rcml_st.index import PointRecord, RelationIndex

DIMS = {"text": 8, "image": 8, "item": 8}


def test_embedded_store_supports_the_whole_api(tmp_path, make_records):
    path = tmp_path / "store"
    with RelationIndex.connect(path=path, collection="rcml", batch_size=7) as index:
        assert index.embedded and index.target == f"embedded store {path}"
        assert index.ensure_collection(DIMS) is True
        recs = make_records(10, relations=("a", "b"))
        assert index.upsert(recs) == 20
        index.upsert(recs[:5])  # re-upsert: no duplicates
        assert index.finish({"a": 10, "b": 10}) == {"a": 10, "b": 10}
        assert index.relations() == {"a": 10, "b": 10}
        query = recs[12].vectors["item"]  # B0002 under "b"
        hits = index.search(query, "b", limit=3)
        assert hits[0].item_id == "B0002" and hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert all(h.payload["relation"] == "b" for h in hits)
        assert set(index.get_vectors("B0001", "a")) == {"text", "item"}
        with pytest.raises(InputDataError, match="non-finite"):
            index.upsert([PointRecord("X", "a", {"item": np.full(8, np.inf)})])
        assert index.count() == 20

    # persisted, and a reopened store checks the layout
    with RelationIndex.connect(path=path, collection="rcml") as index:
        assert index.count("a") == 10
        with pytest.raises(UsageError, match="has text vectors of size 8 but the model makes 16"):
            index.ensure_collection({"text": 16, "image": 8, "item": 8})


def test_locked_embedded_store_is_a_clear_usage_error(tmp_path):
    path = tmp_path / "store"
    with (
        RelationIndex.connect(path=path),
        pytest.raises(UsageError, match=r"in use by another process.*--qdrant-url"),
    ):
        RelationIndex.connect(path=path)

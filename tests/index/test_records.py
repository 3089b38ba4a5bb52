from __future__ import annotations

import numpy as np
import pytest

from rcml_st.errors import InputDataError
from rcml_st.index.records import Hit, PointRecord, check_records, check_vector

DIMS = {"text": 4, "image": 4, "item": 4}


def test_check_vector_returns_contiguous_float32():
    out = check_vector(np.arange(8, dtype=np.float64)[::2], 4, "v")
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert out.tolist() == [0.0, 2.0, 4.0, 6.0]


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        ([1.0, float("nan"), 0.0, 0.0], "non-finite"),
        ([1.0, float("inf"), 0.0, 0.0], "non-finite"),
        (np.array([1e300, 0, 0, 0]), "non-finite"),  # overflows float32
        ([1.0, 2.0, 3.0], "has size 3, but the collection expects 4"),
        (np.ones((2, 4)), "shape (2, 4)"),
        (["a", "b", "c", "d"], "not an array of numbers"),
        ([[1.0], [1.0, 2.0]], "not an array of numbers"),
    ],
)
def test_check_vector_rejects_bad_vectors(vector, message):
    with pytest.raises(InputDataError, match="my vector") as info:
        check_vector(vector, 4, "my vector")
    assert message in str(info.value)


def test_check_records_names_item_relation_and_vector():
    good = PointRecord("A", "r", {"text": np.ones(4), "item": np.ones(4)})
    bad = PointRecord("B7", "goes with", {"text": np.ones(4), "image": np.full(4, np.nan)})
    with pytest.raises(InputDataError) as info:
        check_records([good, bad], DIMS)
    assert "item 'B7' under relation 'goes with': image vector" in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (PointRecord("A", "r", {}), "has no vectors"),
        (PointRecord("A", "r", {"audio": np.ones(4)}), "'audio' that the collection does not define"),
        (PointRecord("", "r", {"item": np.ones(4)}), "item_id must be a non-empty string"),
        (PointRecord("A", "", {"item": np.ones(4)}), "relation must be a non-empty string"),
    ],
)
def test_check_records_rejects_malformed_records(record, message):
    with pytest.raises(InputDataError, match=message):
        check_records([record], DIMS)


def test_full_payload_adds_item_id_and_relation_and_keeps_colliding_metadata_under_meta():
    rec = PointRecord("A", "r", {"item": np.ones(4)}, {"text": "t", "item_id": "old-sku", "brand": "Acme"})
    assert rec.full_payload() == {
        "text": "t",
        "item_id": "A",
        "relation": "r",
        "brand": "Acme",
        "meta": {"item_id": "old-sku"},
    }
    merged = PointRecord("A", "r", {}, {"relation": "sister", "meta": {"source": "x"}}).full_payload()
    assert merged["meta"] == {"source": "x", "relation": "sister"} and merged["relation"] == "r"
    for meta in ("not an object", {"relation": "taken"}):
        with pytest.raises(InputDataError, match=r"item 'A': metadata key\(s\) 'relation' .* rename one"):
            PointRecord("A", "r", {}, {"relation": "sister", "meta": meta}).full_payload()


def test_hit_to_dict():
    hit = Hit(rank=1, score=0.5, item_id="A", text=None, payload={"item_id": "A"})
    assert hit.to_dict() == {"rank": 1, "score": 0.5, "id": "A", "text": None, "payload": {"item_id": "A"}}

from __future__ import annotations

import uuid

from rcml_st.index.ids import NAMESPACE, point_id


def test_point_id_is_uuid5_of_item_and_relation_in_the_fixed_namespace():
    expected = uuid.uuid5(NAMESPACE, "B0001\x1fused together for infant feeding")
    assert point_id("B0001", "used together for infant feeding") == str(expected)
    # Pinned: changing the namespace would silently duplicate every existing index on re-run.
    assert str(NAMESPACE) == "1cf65f01-9d49-5c0d-b679-ed41a12c632c"
    assert point_id("B0001", "used together for infant feeding") == "9d9731f8-bf2c-56ce-8aa5-968665255ba6"


def test_point_id_is_deterministic_and_distinct_per_item_and_relation():
    assert point_id("a", "r") == point_id("a", "r")
    ids = {point_id(item, rel) for item in ("a", "b") for rel in ("r", "s")}
    assert len(ids) == 4


def test_separator_keeps_split_points_apart():
    assert point_id("a", "b c") != point_id("a b", "c")
    assert point_id("ab", "c") != point_id("a", "bc")

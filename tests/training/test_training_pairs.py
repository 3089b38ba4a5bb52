"""Training pairs: intra-sample (own text and image), inter-sample (edges), the dataset and the graph."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers.base.data_collator import BaseDataCollator

import rcml_st
from rcml_st.data import Catalog, Item, read_catalog
from rcml_st.training import SAME_ITEM, build_pairs


def _catalog() -> Catalog:
    items = [
        Item("A", "red bib", "/img/a.png", {"matches in colour": ["B", "C"], "same brand": ["C"]}, {}, 1),
        Item("B", "red cup", None, {}, {}, 2),  # text only: no intra-sample pair
        Item("C", None, "/img/c.png", {"same brand": ["A"]}, {}, 3),  # image only
    ]
    return Catalog(None, items)


def test_intra_pairs_for_items_with_both_modalities_and_one_pair_per_edge():
    pairs = build_pairs(_catalog())
    assert pairs.data_relations == ["matches in colour", "same brand"]
    assert pairs.relations == ["matches in colour", "same brand", SAME_ITEM]
    assert pairs.pairs == [(0, 0, 2), (0, 1, 0), (0, 2, 0), (0, 2, 1), (2, 0, 1)]
    assert (pairs.n_intra, pairs.n_inter, len(pairs)) == (1, 4, 5)
    assert "5 pairs (1 intra-sample, 4 inter-sample)" in pairs.describe()


def test_no_inter_sample_and_a_custom_same_item_description():
    pairs = build_pairs(_catalog(), inter_sample=False, same_item="identical listing")
    assert pairs.pairs == [(0, 0, 2)]
    assert pairs.relations[-1] == "identical listing"
    assert pairs.data_relations == ["matches in colour", "same brand"]  # still saved with the model


def test_nothing_to_train_on_is_an_error():
    lonely = Catalog(None, [Item("A", "bib", None, {}, {}, 1)])
    with pytest.raises(ValueError, match="nothing to train on"):
        build_pairs(lonely)
    with pytest.raises(ValueError, match="must not be empty"):
        build_pairs(_catalog(), same_item=" ")


def test_dataset_columns_keep_missing_modalities_as_none():
    dataset = build_pairs(_catalog()).to_dataset()
    assert dataset.column_names == ["anchor", "positive", "label"]
    assert not any(name.endswith("_id") for name in dataset.column_names)
    intra, edge = dataset[0], dataset[1]
    assert intra["anchor"] == {"text": "red bib", "image": None, "relation": SAME_ITEM}
    assert intra["positive"] == {"text": None, "image": "/img/a.png", "relation": SAME_ITEM}
    assert edge["anchor"] == {"text": "red bib", "image": "/img/a.png", "relation": "matches in colour"}
    assert edge["positive"] == {"text": "red cup", "image": None, "relation": "matches in colour"}
    assert edge["label"] == [0, 1, 0]


def test_the_graph_links_every_edge_under_its_relation_index():
    pairs = build_pairs(_catalog())
    graph = pairs.graph()
    rel, a, b = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([1, 2, 0, 2, 0]), torch.tensor([0, 0, 2, 1, 0])
    assert graph.contains(rel, a, b).tolist() == [True, True, True, False, False]


def test_dataset_rows_go_through_the_model_preprocess(synthetic, tiny_clip_config):
    pairs = build_pairs(read_catalog(synthetic.train_path))
    dataset = pairs.to_dataset()
    model = rcml_st.build_model(tiny_clip_config, device="cpu")
    batch = BaseDataCollator(model.preprocess)([dataset[0], dataset[len(dataset) - 1]])
    assert batch["label"].shape == (2, 3)
    assert batch["anchor_input_ids"].shape[0] == 2  # both anchors have text
    assert batch["anchor_pixel_values"].shape[0] == 1  # the intra-sample anchor has no image
    assert batch["positive_input_ids"].shape[0] == 1  # ... and its positive no text
    assert batch["anchor_relation_tokens"].shape[0] == 2  # two distinct relations

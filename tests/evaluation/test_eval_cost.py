"""Indexing cost: time and backbone passes to encode N items under R relations, measured."""

from __future__ import annotations

import itertools

import pytest

from rcml_st.evaluation import IndexingCost, PromptedModel, indexing_cost
from rcml_st.evaluation.cost import count_backbone_inputs


class FakeClock:
    """Each call is one second later than the previous one."""

    def __init__(self) -> None:
        self.ticks = itertools.count()

    def __call__(self) -> float:
        return float(next(self.ticks))


def test_rcml_runs_its_backbone_once_per_item_whatever_r(model, test_catalog):
    items = test_catalog.subset(range(10))
    n_text = sum(item.text is not None for item in items.items)
    n_image = sum(item.image is not None for item in items.items)
    for relations in (test_catalog.relations[:1], test_catalog.relations):
        cost = indexing_cost(model, items, relations, batch_size=4, clock=FakeClock())
        assert cost == IndexingCost("rcml", 10, len(relations), 1.0, n_text, n_image, len(relations))
        assert cost.passes == n_text + n_image
    assert cost.to_dict()["passes"] == cost.passes


def test_a_prompted_model_runs_once_per_item_and_relation(minilm, test_catalog):
    items = [{"text": item.text} for item in test_catalog.items[:6]]
    relations = test_catalog.relations
    prompted = indexing_cost(PromptedModel(minilm, "{relation}: {text}"), items, relations, clock=FakeClock())
    assert (prompted.method, prompted.text_passes, prompted.image_passes) == (
        "prompted",
        6 * len(relations),
        0,
    )
    assert prompted.seconds == 1.0 and prompted.relation_texts == 0
    # Without the relation in the template (or without a template), once per item.
    assert indexing_cost(PromptedModel(minilm, "item: {text}"), items, relations).text_passes == 6
    assert indexing_cost(minilm, [item["text"] for item in items], relations).text_passes == 6


def test_the_clip_baseline_of_an_rcml_model_is_a_prompted_backbone(model, test_catalog):
    items = test_catalog.subset(range(5))
    relations = test_catalog.relations
    cost = indexing_cost(PromptedModel(model, "{text} {relation}"), items, relations)
    assert (cost.method, cost.text_passes, cost.image_passes) == ("prompted", 5 * len(relations), 5)


def test_the_clock_measures_only_the_encoding(model, test_catalog):
    calls: list[float] = []

    def clock() -> float:
        calls.append(0.0)
        return 2.5 * len(calls)

    cost = indexing_cost(model, test_catalog.subset(range(3)), test_catalog.relations, clock=clock)
    assert len(calls) == 2 and cost.seconds == 2.5  # the warm-up is not timed


def test_counting_stops_when_the_block_ends(model):
    with count_backbone_inputs(model) as counts:
        model.encode(["a pram", "a cot"], relation="same colour")
    model.encode(["a bib"], relation="same colour")
    assert counts == {"text": 2, "image": 0}


def test_bad_items_are_a_clear_error(model):
    with pytest.raises(ValueError, match="item 1: expected a text or a dict"):
        indexing_cost(model, ["a pram", 3], ["same colour"])

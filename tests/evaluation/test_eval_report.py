"""The full evaluation report (JSON shape of docs/contract/report-json.md) and the plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import rcml_st
from rcml_st.errors import UsageError
from rcml_st.evaluation import evaluate_catalog
from rcml_st.evaluation.plot import UNLINKED, pca_2d, pick_relations, plot_report, relation_groups

DIRECTIONS = ("tt", "ii", "ti", "it", "avg")
METRICS = ("hit@1", "hit@5", "hit@10", "mrr")


@pytest.fixture(scope="module")
def other_model(tiny_clip_config):
    torch.manual_seed(1)
    return rcml_st.build_model(tiny_clip_config, beta=1.0, device="cpu")


@pytest.fixture(scope="module")
def report(model, other_model, test_catalog):
    return evaluate_catalog(model, test_catalog, compare={"no-cond": other_model}, negatives=6, seed=0)


def test_report_json_has_exactly_the_documented_shape(report, test_catalog):
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert list(data) == ["settings", "retrieval", "retrieval_hard", "relation_type", "validity"]
    methods = ["rcml", "clip", "product", "no-cond"]
    assert list(data["retrieval"]) == list(data["relation_type"]) == list(data["validity"]) == methods
    assert list(data["retrieval_hard"]) == methods
    for method in methods:
        for task in ("retrieval", "retrieval_hard"):
            assert list(data[task][method]) == list(DIRECTIONS)
            for direction in DIRECTIONS:
                values = data[task][method][direction]
                assert list(values) == list(METRICS)
                assert all(0.0 <= v <= 1.0 for v in values.values())
                assert values["hit@1"] <= values["hit@5"] <= values["hit@10"]
        assert list(data["relation_type"][method]) == ["top1", "top3"]
        assert list(data["validity"][method]) == ["accuracy"]
    settings = data["settings"]
    assert settings["negatives"] == 6 and settings["seed"] == 0
    assert settings["queries"] == len(test_catalog.edges)
    assert settings["queries_per_direction"] == dict.fromkeys(
        ("tt", "ii", "ti", "it"), len(test_catalog.edges)
    )
    assert settings["relations"] == test_catalog.relations
    # beta = 1 is relation-agnostic: every relation gives the same score, so ties rank it last.
    assert data["relation_type"]["no-cond"]["top1"] == 0.0


def test_same_seed_same_numbers(model, test_catalog, report):
    again = evaluate_catalog(model, test_catalog, baselines=(), negatives=6, seed=0, keep_embeddings=False)
    assert again.to_dict()["retrieval"]["rcml"] == report.to_dict()["retrieval"]["rcml"]
    assert again.to_dict()["validity"]["rcml"] == report.to_dict()["validity"]["rcml"]
    assert list(again.methods) == ["rcml"] and again.conditioned is None


def test_name_clashes_and_unknown_baselines_are_usage_errors(model, test_catalog):
    with pytest.raises(UsageError, match="taken"):
        evaluate_catalog(model, test_catalog, compare={"clip": model}, negatives=3)
    with pytest.raises(UsageError, match="unknown baseline"):
        evaluate_catalog(model, test_catalog, baselines=("siglip",), negatives=3)


def test_too_few_items_for_the_negatives_is_a_usage_error(model, test_catalog):
    with pytest.raises(UsageError, match="lower --negatives"):
        evaluate_catalog(model, test_catalog.subset(range(8)), negatives=20)


def test_groups_from_metadata_and_from_the_graph(test_catalog, make_catalog):
    colour = "matches in colour"
    labels = relation_groups(test_catalog, colour)
    assert labels == [item.metadata["colour"] for item in test_catalog.items]
    catalog = make_catalog(6, {"r": [(0, 1), (1, 2), (3, 4)]})
    assert relation_groups(catalog, "r") == ["group 1", "group 1", "group 1", "group 2", "group 2", UNLINKED]
    assert pick_relations(test_catalog, 2) == sorted(
        sorted(test_catalog.edge_counts, key=lambda r: -test_catalog.edge_counts[r])[:2]
    )


def test_pca_keeps_the_main_spread():
    rng = np.random.default_rng(0)
    points = np.zeros((50, 5))
    points[:, 3] = rng.normal(size=50) * 10
    points[:, 1] = rng.normal(size=50)
    projected = pca_2d(points)
    assert projected.shape == (50, 2)

    # The points lie in a plane: the projection keeps every distance, and the wide axis comes first.
    def distances(x):
        return np.linalg.norm(x[:, None] - x[None], axis=-1)

    assert np.allclose(distances(projected), distances(points), atol=1e-8)
    assert projected[:, 0].var() > 50 * projected[:, 1].var()


def test_plot_is_written(report, test_catalog, tmp_path):
    path = tmp_path / "sub" / "eval.png"
    plot_report(report, test_catalog, path)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width > 600 and image.height > 600

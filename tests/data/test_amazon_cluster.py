"""Unit tests of the relation-type clustering of co-purchase edges (``--cluster``)."""

from __future__ import annotations

import numpy as np
import pytest

from rcml_st.data.amazon.clustering import cluster_edges, item_document
from rcml_st.data.amazon.formats import AmazonRecord

GROUPS = {
    "Feeding": ["bottle", "nipple", "bib", "warmer", "sterilizer"],
    "Bathing": ["tub", "towel", "shampoo", "washcloth", "thermometer"],
    "Nursery": ["crib", "sheet", "mattress", "monitor", "mobile"],
}


def catalogue(per_group: int = 12, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Documents of three groups of products and edges inside each group; returns the edge groups too."""
    rng = np.random.default_rng(seed)
    documents: list[str] = []
    group_of: list[int] = []
    for g, (category, words) in enumerate(GROUPS.items()):
        for i in range(per_group):
            title = (
                f"{rng.choice(['Acme', 'Tiny', 'Bubba'])} {rng.choice(words)} {rng.choice(words)} model {i}"
            )
            documents.append(
                item_document(AmazonRecord(f"{g}-{i}", title=title, categories=["Baby", category]))
            )
            group_of.append(g)
    sources, targets = [], []
    members = {g: [i for i, x in enumerate(group_of) if x == g] for g in range(len(GROUPS))}
    for i, g in enumerate(group_of):
        for j in rng.choice(members[g], size=4, replace=False):
            if j != i:
                sources.append(i)
                targets.append(int(j))
    sources_a, targets_a = np.array(sources), np.array(targets)
    return documents, sources_a, targets_a, np.array(group_of)[sources_a]


def test_types_follow_the_groups_and_are_named_from_them():
    documents, sources, targets, groups = catalogue()
    types = cluster_edges(documents, sources, targets, 3, seed=0)
    assert len(types.names) == 3 and len(set(types.names)) == 3
    assert sum(types.sizes) == len(sources)
    assert types.sizes == sorted(types.sizes, reverse=True)
    for g, category in enumerate(GROUPS):
        labels = set(types.labels[groups == g].tolist())
        assert len(labels) == 1, f"the {category} edges were split over {labels}"
        name = types.names[labels.pop()]
        assert name.startswith("bought together: ") and category.lower() in name


def test_same_seed_same_types_and_sampling_assigns_every_edge():
    documents, sources, targets, groups = catalogue(per_group=20)
    first = cluster_edges(documents, sources, targets, 3, seed=7, sample_size=40)
    second = cluster_edges(documents, sources, targets, 3, seed=7, sample_size=40)
    assert first.names == second.names and first.sizes == second.sizes
    assert np.array_equal(first.labels, second.labels)
    assert len(first.labels) == len(sources) > 40  # fitted on 40 edges, all edges labelled
    agreement = max(
        np.mean(first.labels[groups == g] == np.bincount(first.labels[groups == g]).argmax())
        for g in range(3)
    )
    assert agreement > 0.9


def test_more_types_than_distinct_pairs_gives_no_empty_type():
    docs = [item_document(AmazonRecord(str(i), title="bottle", categories=["Feeding"])) for i in range(4)]
    types = cluster_edges(docs, np.array([0, 1, 2]), np.array([1, 2, 3]), 5, seed=0)
    assert 1 <= len(types.names) <= 3
    assert all(size > 0 for size in types.sizes) and sum(types.sizes) == 3
    assert set(types.labels.tolist()) == set(range(len(types.names)))


def test_one_type_is_named_from_the_most_shared_terms():
    documents, sources, targets, _ = catalogue()
    types = cluster_edges(documents, sources, targets, 1, seed=0)
    assert types.sizes == [len(sources)] and set(types.labels.tolist()) == {0}
    # Every pair shares the category "Baby" and the title word "model"; ties go to the category.
    assert types.names == ["bought together: baby, model"]


def test_no_edges_and_bad_k():
    docs = [item_document(AmazonRecord("a", title="bib"))]
    empty = cluster_edges(docs, np.array([], dtype=int), np.array([], dtype=int), 3)
    assert empty.names == [] and len(empty.labels) == 0
    with pytest.raises(ValueError, match="at least 1"):
        cluster_edges(docs, np.array([0]), np.array([0]), 0)


def test_item_document_is_short():
    record = AmazonRecord("B1", title="x" * 5000, categories=["Baby", "Feeding"])
    document = item_document(record)
    assert document.startswith("baby\x1ffeeding\x1e") and len(document) < 250

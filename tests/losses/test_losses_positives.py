"""RelationGraph: which (relation, item, item) triples are true positives."""

from __future__ import annotations

import pytest
import torch

from rcml_st.losses import RelationGraph


def test_edges_hold_in_both_directions_and_only_under_their_relation():
    graph = RelationGraph([(0, 1, 2), (1, 3, 4)], n_items=5, n_relations=2)
    relation = torch.tensor([0, 0, 1, 1, 0, 1])
    a = torch.tensor([1, 2, 3, 4, 3, 1])
    b = torch.tensor([2, 1, 4, 3, 4, 2])
    assert graph.contains(relation, a, b).tolist() == [True, True, True, True, False, False]
    assert len(graph) == 2


def test_contains_broadcasts_a_query_by_candidate_matrix():
    graph = RelationGraph([(0, 0, 1), (0, 0, 2)], n_items=3, n_relations=1)
    out = graph.contains(
        torch.zeros(3, 1, dtype=torch.long), torch.arange(3)[:, None], torch.arange(3)[None, :]
    )
    assert out.tolist() == [[False, True, True], [True, False, False], [True, False, False]]


def test_empty_graph_contains_nothing():
    graph = RelationGraph([], n_items=3, n_relations=1)
    assert not graph.contains(torch.tensor([0]), torch.tensor([0]), torch.tensor([1])).any()


def test_out_of_range_edges_are_rejected():
    with pytest.raises(ValueError, match="out of range"):
        RelationGraph([(0, 0, 5)], n_items=3, n_relations=1)
    with pytest.raises(ValueError, match="out of range"):
        RelationGraph([(2, 0, 1)], n_items=3, n_relations=1)


def test_keys_move_with_the_module():
    graph = RelationGraph([(0, 0, 1)], n_items=2, n_relations=1)
    assert "keys" in dict(graph.named_buffers())

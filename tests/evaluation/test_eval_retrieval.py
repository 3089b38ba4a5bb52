"""Relation-guided retrieval: negatives, directions, ranks, metrics, determinism, the evaluator."""

from __future__ import annotations

import csv
from unittest import mock

import numpy as np
import pytest

import rcml_st.encoding
from rcml_st.encoding import RelationEmbeddings
from rcml_st.errors import UsageError
from rcml_st.evaluation import RelationRetrievalEvaluator, build_queries, evaluate_retrieval, score_retrieval
from rcml_st.evaluation.retrieval import metrics_from_ranks, sample_negatives, target_ranks


def test_negatives_are_unrelated_distinct_and_never_the_source(test_catalog):
    queries = build_queries(test_catalog, negatives=8, seed=0)
    assert len(queries) == len(test_catalog.edges)
    for modality in ("text", "image"):
        candidates = queries.candidates[modality]
        assert candidates.shape == (len(queries), 9)
        assert (candidates[:, 0] == queries.target).all()
        for row in range(len(queries)):
            relation = queries.relations[queries.relation[row]]
            related = test_catalog.neighbours(relation).get(int(queries.source[row]), set())
            negatives = set(candidates[row, 1:].tolist())
            assert len(negatives) == 8
            assert not negatives & related
            assert int(queries.source[row]) not in negatives


def test_related_in_the_other_direction_is_not_a_negative(make_catalog):
    # Only 1 -> 0 is stated; a query from 0 under another edge must still not get 1 as a negative.
    catalog = make_catalog(6, {"r": [(1, 0), (0, 2)]})
    negatives, ok = sample_negatives(
        catalog, np.array([0] * 50), np.array([0] * 50), 3, np.random.default_rng(0)
    )
    assert ok.all()
    assert set(np.unique(negatives).tolist()) == {3, 4, 5}


def test_negatives_are_uniform_over_the_eligible_items(make_catalog):
    catalog = make_catalog(12, {"r": [(0, 1)]})
    negatives, ok = sample_negatives(
        catalog, np.zeros(20000, dtype=int), np.zeros(20000, dtype=int), 2, np.random.default_rng(1)
    )
    assert ok.all()
    counts = np.bincount(negatives.ravel(), minlength=12)
    assert counts[0] == counts[1] == 0
    share = counts[2:] / counts.sum()
    assert np.allclose(share, 0.1, atol=0.01)


def test_rows_without_enough_eligible_items_are_incomplete(make_catalog):
    # Item 0 is related to everything but 4 under r: only one eligible negative.
    catalog = make_catalog(5, {"r": [(0, 1), (0, 2), (0, 3)], "s": [(4, 3)]})
    queries = build_queries(catalog, negatives=2, seed=0)
    rows = {int(q): bool(queries.complete["text"][q]) for q in range(len(queries)) if queries.source[q] == 0}
    assert rows and not any(rows.values())
    assert queries.incomplete == 3
    assert queries.counts()["tt"] == len(queries) - 3


def test_same_seed_same_candidates_other_seed_other_candidates(test_catalog):
    a = build_queries(test_catalog, negatives=5, seed=7)
    b = build_queries(test_catalog, negatives=5, seed=7)
    c = build_queries(test_catalog, negatives=5, seed=8)
    assert np.array_equal(a.candidates["text"], b.candidates["text"])
    assert not np.array_equal(a.candidates["text"], c.candidates["text"])
    # Every item has both modalities: all four directions share one draw.
    assert np.array_equal(a.candidates["text"], a.candidates["image"])


def test_items_lacking_a_modality_skip_its_directions(make_catalog):
    links = {"r": [(0, 1), (2, 3), (4, 5), (1, 6)]}
    catalog = make_catalog(12, links, no_image=(0, 3), no_text=(5,))
    queries = build_queries(catalog, negatives=3, seed=0)
    counts = queries.counts()
    # 0->1: source text only (tt, ti); 2->3: target text only (tt, it); 4->5: target image only
    # (ii, ti); 1->6: both sides have both (all four).
    assert counts == {"tt": 3, "ii": 2, "ti": 3, "it": 2}
    for direction, candidate_modality in (("tt", "text"), ("ii", "image"), ("ti", "image"), ("it", "text")):
        rows = queries.rows(direction)
        candidates = queries.candidates[candidate_modality][rows]
        assert queries.has(candidate_modality)[candidates].all()


def test_no_edges_is_a_usage_error(make_catalog):
    with pytest.raises(UsageError, match="no relation edges"):
        build_queries(make_catalog(4, {}), negatives=2)


def test_target_ranks_count_ties_against_the_target():
    vectors = np.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]]])
    candidates = np.array([[1, 2, 3, 4], [2, 1, 3, 4], [4, 1, 2, 3]])
    ranks = target_ranks(vectors, vectors, np.zeros(3, int), np.zeros(3, int), candidates, chunk=2)
    # Query item 0 = (1, 0): scores 1 (item 1), 0 (item 2), 0.6 (item 3), -1 (item 4).
    assert ranks.tolist() == [1, 3, 4]
    constant = np.ones((1, 5, 2))
    assert target_ranks(constant, constant, np.zeros(1, int), np.zeros(1, int), candidates[:1]).tolist() == [
        4
    ]


def test_metrics_from_ranks():
    metrics = metrics_from_ranks(np.array([1, 3, 7, 21]))
    assert metrics == pytest.approx(
        {"hit@1": 0.25, "hit@5": 0.5, "hit@10": 0.75, "mrr": (1 + 1 / 3 + 1 / 7 + 1 / 21) / 4}
    )
    assert metrics_from_ranks(np.zeros(0, int)) == dict.fromkeys(("hit@1", "hit@5", "hit@10", "mrr"))


def test_oracle_conditioned_embeddings_are_perfect_and_agnostic_ones_are_not(test_catalog, oracle):
    queries = build_queries(test_catalog, negatives=10, seed=0)
    perfect = score_retrieval(oracle(test_catalog, queries.relations), queries)
    for direction in ("tt", "ii", "ti", "it", "avg"):
        assert perfect.metrics[direction] == pytest.approx(
            {"hit@1": 1.0, "hit@5": 1.0, "hit@10": 1.0, "mrr": 1.0}
        )
    agnostic = score_retrieval(oracle(test_catalog, queries.relations, conditioned=False), queries)
    assert agnostic.metrics["avg"]["hit@1"] < 0.9
    assert perfect.counts == queries.counts()


def test_avg_is_the_mean_over_directions_with_queries(make_catalog, oracle):
    catalog = make_catalog(12, {"r": [(0, 1), (2, 3), (1, 6)]}, no_image=tuple(range(12)))
    queries = build_queries(catalog, negatives=3, seed=0)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(1, 12, 4)).astype(np.float32)
    embeddings = RelationEmbeddings(["r"], vectors, vectors, vectors, np.ones(12, bool), np.zeros(12, bool))
    result = score_retrieval(embeddings, queries)
    assert result.counts == {"tt": 3, "ii": 0, "ti": 0, "it": 0}
    assert result.metrics["ii"]["hit@5"] is None
    assert result.metrics["avg"] == result.metrics["tt"]


def test_scores_match_per_query_encode(model, test_catalog):
    """The gathered scores equal scoring each query with model.encode under its relation."""
    queries = build_queries(test_catalog, negatives=4, seed=0)
    result = evaluate_retrieval(model, test_catalog, queries=queries)
    inputs = [item.to_input() for item in test_catalog.items]
    for row in (0, len(queries) // 2, len(queries) - 1):
        relation = queries.relations[queries.relation[row]]
        candidates = queries.candidates["text"][row]
        query = model.encode([{"text": inputs[queries.source[row]]["text"]}], relation=relation)
        cands = model.encode([{"text": inputs[c]["text"]} for c in candidates], relation=relation)
        scores = (cands @ query[0]).astype(np.float64)
        expected_rank = 1 + int((scores[1:] >= scores[0] - 1e-6).sum())
        got = result.ranks["tt"][np.searchsorted(queries.rows("tt"), row)]
        assert got == expected_rank


def test_each_item_is_encoded_once_not_once_per_query(model, test_catalog):
    calls = []
    real = rcml_st.encoding.encode_relations

    def spy(model_, items, relations, **kwargs):
        calls.append((len(items), list(relations)))
        return real(model_, items, relations, **kwargs)

    with mock.patch.object(rcml_st.encoding, "encode_relations", spy):
        evaluate_retrieval(model, test_catalog, negatives=4)
    assert calls == [(len(test_catalog), test_catalog.relations)]


def test_evaluator_metrics_csv_and_determinism(model, test_catalog, tmp_path):
    evaluator = RelationRetrievalEvaluator(test_catalog, negatives=5, seed=0, name="held-out")
    first = evaluator(model, output_path=str(tmp_path), epoch=1, steps=10)
    second = evaluator(model, output_path=str(tmp_path), epoch=2, steps=20)
    assert evaluator.primary_metric == "held-out_avg_hit@5"
    assert evaluator.greater_is_better is True
    assert first == second  # same queries, same model: same numbers
    expected = {
        f"held-out_{d}_{m}"
        for d in ("tt", "ii", "ti", "it", "avg")
        for m in ("hit@1", "hit@5", "hit@10", "mrr")
    }
    assert set(first) == expected
    assert all(0.0 <= v <= 1.0 for v in first.values())
    with open(tmp_path / evaluator.csv_file, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:3] == ["epoch", "steps", "tt_hit@1"]
    assert [r[:2] for r in rows[1:]] == [["1", "10"], ["2", "20"]]
    assert float(rows[1][rows[0].index("avg_hit@5")]) == pytest.approx(first["held-out_avg_hit@5"])


def test_evaluator_reads_a_path(model, synthetic):
    evaluator = RelationRetrievalEvaluator(synthetic.test_path, negatives=3)
    metrics = evaluator(model)
    assert evaluator.primary_metric == "avg_hit@5"
    assert evaluator.primary_metric in metrics

"""Hard negatives: the source's partners under the other relations (``retrieval_hard``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rcml_st.encoding import RelationEmbeddings
from rcml_st.evaluation import build_hard_queries, build_queries, evaluate_catalog, score_retrieval
from rcml_st.evaluation.retrieval import chance_metrics, target_ranks

COLOUR, SHAPE = "same colour", "same shape"
SIDE = 6  # 6 colours x 6 shapes, one item each


def _grid_links() -> dict[str, list[tuple[int, int]]]:
    """Item ``c * SIDE + s`` has colour c and shape s; each relation links the items sharing one."""
    links: dict[str, list[tuple[int, int]]] = {COLOUR: [], SHAPE: []}
    for a in range(SIDE * SIDE):
        for b in range(SIDE * SIDE):
            if a != b and a // SIDE == b // SIDE:
                links[COLOUR].append((a, b))
            if a != b and a % SIDE == b % SIDE:
                links[SHAPE].append((a, b))
    return links


def _grid_embeddings(relations: list[str], conditioned: bool, seed: int = 0) -> RelationEmbeddings:
    """Under a relation: the one-hot of the item's group under it (conditioned), or of both (agnostic).

    The agnostic vectors carry a little seeded noise, so equal similarities are broken at random
    instead of all counting against the target.
    """
    n = SIDE * SIDE
    colour = np.eye(2 * SIDE, dtype=np.float32)[[i // SIDE for i in range(n)]]
    shape = np.eye(2 * SIDE, dtype=np.float32)[[SIDE + i % SIDE for i in range(n)]]
    one_hot = {COLOUR: colour, SHAPE: shape}
    if conditioned:
        vectors = np.stack([one_hot[r] for r in relations])
    else:
        noise = np.random.default_rng(seed).normal(scale=0.01, size=(n, 2 * SIDE)).astype(np.float32)
        joint = (colour + shape) / np.sqrt(2) + noise
        vectors = np.stack([joint for _ in relations])
    ones = np.ones(n, dtype=bool)
    return RelationEmbeddings(list(relations), vectors, vectors.copy(), vectors.copy(), ones, ones.copy())


def test_hard_negatives_are_partners_under_other_relations_only(test_catalog):
    hard = build_hard_queries(test_catalog, negatives=6, seed=0)
    plain = build_queries(test_catalog, negatives=6, seed=0)
    # The same queries as the random-negative protocol, in the same order.
    assert np.array_equal(hard.source, plain.source) and np.array_equal(hard.target, plain.target)
    assert np.array_equal(hard.relation, plain.relation)
    for row in range(len(hard)):
        source, relation = int(hard.source[row]), hard.relations[hard.relation[row]]
        own = test_catalog.neighbours(relation).get(source, set())
        others = set().union(
            *(test_catalog.neighbours(r).get(source, set()) for r in hard.relations if r != relation)
        )
        pool = others - own - {source}
        row_candidates = hard.candidates["text"][row]
        count = int(hard.negative_counts["text"][row])
        negatives = row_candidates[1 : 1 + count].tolist()
        assert row_candidates[0] == hard.target[row]
        assert (row_candidates[1 + count :] == -1).all()
        assert count == min(6, len(pool))
        assert len(set(negatives)) == count and set(negatives) <= pool


def test_rows_without_hard_negatives_take_part_in_no_direction(make_catalog):
    # 0 -r-> 1 and 0 -s-> 2: each query of source 0 has one hard negative (the other partner);
    # 3 -r-> 4: 3 has no partner under s, so that query cannot measure discrimination.
    catalog = make_catalog(8, {"r": [(0, 1), (3, 4)], "s": [(0, 2)]})
    hard = build_hard_queries(catalog, negatives=5, seed=0)
    by_edge = {
        (int(s), hard.relations[r], int(t)): int(c)
        for s, r, t, c in zip(
            hard.source, hard.relation, hard.target, hard.negative_counts["text"], strict=True
        )
    }
    assert by_edge == {(0, "r", 1): 1, (0, "s", 2): 1, (3, "r", 4): 0}
    usable = {(int(hard.source[q]), int(hard.target[q])) for q in hard.rows("tt")}
    assert usable == {(0, 1), (0, 2)}
    assert hard.incomplete == 1


def test_one_relation_has_no_hard_queries(make_catalog):
    hard = build_hard_queries(make_catalog(6, {"r": [(0, 1), (2, 3)]}), negatives=3, seed=0)
    assert hard.counts() == {"tt": 0, "ii": 0, "ti": 0, "it": 0}
    assert chance_metrics(hard)["avg"] == dict.fromkeys(("hit@1", "hit@5", "hit@10", "mrr"))


def test_same_seed_same_draw_other_seed_other_draw(make_catalog):
    catalog = make_catalog(SIDE * SIDE, _grid_links())
    a, b = (build_hard_queries(catalog, negatives=2, seed=4) for _ in range(2))
    c = build_hard_queries(catalog, negatives=2, seed=5)
    assert np.array_equal(a.candidates["text"], b.candidates["text"])
    assert not np.array_equal(a.candidates["text"], c.candidates["text"])
    assert (a.negative_counts["text"] == 2).all()  # 5 partners under the other relation, 2 drawn


def test_short_rows_are_padded_and_padding_is_never_a_candidate():
    vectors = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])  # item 2 scores like the query itself
    candidates = np.array([[1, -1, -1], [1, 2, -1]])
    ranks = target_ranks(vectors, vectors, np.zeros(2, int), np.zeros(2, int), candidates)
    # -1 would gather the last item (2), which beats the target: it must not count.
    assert ranks.tolist() == [1, 2]


def test_a_model_that_ignores_the_relation_is_at_chance_on_hard_negatives(make_catalog):
    """Under "same colour" the hard negatives share the source's shape: as similar as the target to
    a relation-agnostic model, so it ranks them at random, while random negatives (mostly sharing
    nothing) it beats easily. A model that follows the relation is perfect on both."""
    catalog = make_catalog(SIDE * SIDE, _grid_links())
    queries = build_queries(catalog, negatives=5, seed=0)
    hard = build_hard_queries(catalog, negatives=5, seed=0)
    assert (hard.negative_counts["text"] == 5).all()  # every item has 5 partners under the other relation
    chance = chance_metrics(hard)["avg"]["hit@1"]
    assert chance == pytest.approx(1 / 6)

    following = _grid_embeddings(hard.relations, conditioned=True)
    assert score_retrieval(following, hard).metrics["avg"]["hit@1"] == 1.0
    assert score_retrieval(following, queries).metrics["avg"]["hit@1"] == 1.0

    ignoring = _grid_embeddings(hard.relations, conditioned=False)
    random_negatives = score_retrieval(ignoring, queries).metrics["avg"]["hit@1"]
    hard_negatives = score_retrieval(ignoring, hard).metrics["avg"]["hit@1"]
    assert random_negatives > 0.4
    assert abs(hard_negatives - chance) < 0.08, (hard_negatives, chance)


def test_report_has_retrieval_hard_and_says_how_many_queries_had_any(model, test_catalog):
    report = evaluate_catalog(model, test_catalog, baselines=("product",), negatives=4, seed=0)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert list(data) == ["settings", "retrieval", "retrieval_hard", "relation_type", "validity"]
    assert list(data["retrieval_hard"]) == list(data["retrieval"]) == ["rcml", "product"]
    for method, per_direction in data["retrieval_hard"].items():
        assert list(per_direction) == list(data["retrieval"][method])
        for values in per_direction.values():
            assert list(values) == ["hit@1", "hit@5", "hit@10", "mrr"]
    hard = build_hard_queries(test_catalog, negatives=4, seed=0)
    settings = data["settings"]
    assert settings["hard_queries"] == len(hard) - hard.incomplete > 0
    assert settings["hard_queries_per_direction"] == hard.counts()
    assert 0 < settings["hard_negatives_mean"] <= 4
    assert list(settings["hard_chance"]) == ["tt", "ii", "ti", "it", "avg"]
    expected = score_retrieval(report.conditioned, hard).metrics
    assert data["retrieval_hard"]["rcml"] == expected
    again = evaluate_catalog(model, test_catalog, baselines=("product",), negatives=4, seed=0)
    assert again.to_dict()["retrieval_hard"] == report.to_dict()["retrieval_hard"]
    off = evaluate_catalog(model, test_catalog, baselines=(), negatives=4, hard_negatives=False)
    assert "retrieval_hard" not in off.to_dict() and "hard_queries" not in off.settings


def test_evaluator_reports_hard_metrics_from_the_same_embeddings(model, test_catalog, tmp_path):
    from rcml_st.evaluation import RelationRetrievalEvaluator

    evaluator = RelationRetrievalEvaluator(test_catalog, negatives=4, seed=0, name="dev", hard_negatives=True)
    metrics = evaluator(model, output_path=str(tmp_path), epoch=1, steps=5)
    report = evaluate_catalog(model, test_catalog, baselines=(), negatives=4, seed=0)
    hard = report.to_dict()["retrieval_hard"]["rcml"]
    assert metrics["dev_hard_avg_hit@1"] == pytest.approx(hard["avg"]["hit@1"])
    assert metrics["dev_hard_tt_mrr"] == pytest.approx(hard["tt"]["mrr"])
    assert metrics["dev_avg_hit@5"] == pytest.approx(report.to_dict()["retrieval"]["rcml"]["avg"]["hit@5"])
    header = (tmp_path / evaluator.csv_file).read_text().splitlines()[0].split(",")
    assert header[-1] == "hard_avg_mrr" and len(header) == 2 + 2 * 20
    assert "dev_hard_avg_hit@1" not in RelationRetrievalEvaluator(test_catalog, negatives=4, name="dev")(
        model
    )

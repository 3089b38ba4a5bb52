"""Relation-type prediction, the validity probe, and the baselines' embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from rcml_st.encoding import RelationEmbeddings, encode_relations
from rcml_st.evaluation.methods import clip_baseline, encode_with_plain, product_baseline
from rcml_st.evaluation.relation_type import relation_type_accuracy, relation_type_ranks
from rcml_st.evaluation.validity import TRAIN_FRACTION, validity_accuracy, validity_split


def _embeddings(vectors: np.ndarray, relations: list[str]) -> RelationEmbeddings:
    n = vectors.shape[1]
    return RelationEmbeddings(relations, vectors, vectors, vectors, np.ones(n, bool), np.ones(n, bool))


# ------------------------------------------------------------------ relation type


def test_relation_type_oracle_is_perfect_and_agnostic_ties_lose(test_catalog, oracle):
    relations = test_catalog.relations
    assert relation_type_accuracy(oracle(test_catalog, relations), test_catalog, relations) == {
        "top1": 1.0,
        "top3": 1.0,
    }
    # Same vector under every relation: all scores tie, and ties count against the edge.
    agnostic = relation_type_ranks(
        oracle(test_catalog, relations, conditioned=False), test_catalog, relations
    )
    assert (agnostic > 1).all()


def test_relation_type_ranking_is_filtered(make_catalog):
    # Pair (0, 1) holds under "a" and "b"; pair (2, 3) only under "c".
    catalog = make_catalog(4, {"a": [(0, 1)], "b": [(1, 0)], "c": [(2, 3)]})
    relations = ["a", "b", "c"]
    vectors = np.zeros((3, 4, 3), dtype=np.float32)
    vectors[:, :, 2] = 1.0  # the baseline similarity 1 for every pair under every relation ...
    vectors[1, 0] = vectors[1, 1] = [1.0, 0.0, 0.0]  # ... except under "b" items 0, 1 are close
    vectors[1, 0, 2] = vectors[1, 1, 2] = 1.0  # similarity 2 under "b"
    vectors[2, 2] = vectors[2, 3] = [0.0, 1.0, 1.0]  # similarity 2 under "c" for the pair (2, 3)
    ranks = relation_type_ranks(_embeddings(vectors, relations), catalog, relations)
    # Edge (0, a, 1): "b" scores higher but is also true, so it is filtered; "c" ties -> rank 2.
    # Edge (1, b, 0): "b" is first. Edge (2, c, 3): "c" is first.
    assert ranks.tolist() == [2, 1, 1]


def test_relation_type_needs_two_relations(make_catalog):
    catalog = make_catalog(3, {"a": [(0, 1)]})
    vectors = np.ones((1, 3, 2), dtype=np.float32)
    assert relation_type_accuracy(_embeddings(vectors, ["a"]), catalog, ["a"]) == {"top1": None, "top3": None}


# ------------------------------------------------------------------ validity


def test_validity_split_is_balanced_by_pair_and_seeded(test_catalog):
    relations = test_catalog.relations
    split = validity_split(test_catalog, relations, seed=0)
    again = validity_split(test_catalog, relations, seed=0)
    other = validity_split(test_catalog, relations, seed=1)
    assert np.array_equal(split.train, again.train) and np.array_equal(split.target, again.target)
    assert not np.array_equal(split.train, other.train)
    n_edges = len(test_catalog.edges)
    assert split.label.sum() == (~split.label).sum() == n_edges
    assert split.train[split.label].mean() == pytest.approx(TRAIN_FRACTION, abs=0.02)
    # Negatives are unrelated under their relation; both directions of a pair share a side.
    for k in np.flatnonzero(~split.label):
        related = test_catalog.neighbours(relations[split.relation[k]]).get(int(split.source[k]), set())
        assert int(split.target[k]) not in related and split.target[k] != split.source[k]
    side = {}
    for k in np.flatnonzero(split.label):
        key = (int(split.relation[k]), *sorted((int(split.source[k]), int(split.target[k]))))
        assert side.setdefault(key, bool(split.train[k])) == bool(split.train[k])
    assert split.sizes == {"train": int(split.train.sum()), "test": int((~split.train).sum())}


def test_validity_probe_separates_oracle_and_not_noise(test_catalog, oracle):
    relations = test_catalog.relations
    split = validity_split(test_catalog, relations, seed=0)
    assert validity_accuracy(oracle(test_catalog, relations), split, relations) == {"accuracy": 1.0}
    noise = np.random.default_rng(0).normal(size=(len(relations), len(test_catalog), 8)).astype(np.float32)
    accuracy = validity_accuracy(_embeddings(noise, relations), split, relations)["accuracy"]
    assert 0.3 < accuracy < 0.75


def test_validity_caps_edges_and_handles_tiny_data(test_catalog, make_catalog):
    relations = test_catalog.relations
    capped = validity_split(test_catalog, relations, seed=0, max_edges=40)
    assert capped.label.sum() == 40
    tiny = make_catalog(4, {"a": [(0, 1)]})
    assert validity_split(tiny, ["a"]) is None
    assert validity_accuracy(_embeddings(np.ones((1, 4, 2), np.float32), ["a"]), None, ["a"]) == {
        "accuracy": None
    }


# ------------------------------------------------------------------ methods


@pytest.fixture(scope="module")
def small(test_catalog):
    return test_catalog.subset(range(6))


def test_encode_with_plain_splits_one_pass(model, small):
    relations = small.relations
    conditioned, plain = encode_with_plain(model, small, relations)
    direct = encode_relations(model, [i.to_input() for i in small.items], relations)
    assert conditioned.relations == relations and plain.relations == [None]
    assert np.allclose(conditioned.item, direct.item, atol=1e-5)
    expected_plain = model.encode([i.to_input() for i in small.items])
    assert np.allclose(plain.item[0], expected_plain, atol=1e-5)


def test_clip_baseline_appends_the_relation_to_the_text(model, small):
    relations = small.relations
    _, plain = encode_with_plain(model, small, relations)
    clip = clip_baseline(model, small, relations, plain)
    r = 1
    texts = [f"{item.text} {relations[r]}" for item in small.items]
    expected_text = model.encode(texts)
    assert np.allclose(clip.text[r], expected_text, atol=1e-5)
    assert np.allclose(clip.image[r], plain.image[0], atol=1e-6)  # the image side stays plain
    fused = expected_text + plain.image[0]
    assert np.allclose(clip.item[r], fused / np.linalg.norm(fused, axis=1, keepdims=True), atol=1e-5)


def test_product_baseline_is_the_product_of_projections(model, small):
    relations = small.relations
    _, plain = encode_with_plain(model, small, relations)
    product = product_baseline(model, relations, plain)
    assert product.item.shape == (len(relations), len(small), 1)
    zr = model.encode(relations)  # plain text embeddings of the descriptions (unit length)
    items = model.encode([i.to_input() for i in small.items])
    r, a, b = 2, 0, 3
    expected = float(items[a] @ zr[r]) * float(items[b] @ zr[r])
    assert float(product.item[r, a] @ product.item[r, b]) == pytest.approx(expected, abs=1e-5)


def test_clip_baseline_never_lets_the_relation_be_truncated(model):
    from rcml_st.evaluation.methods import append_relation

    clip = model[0]
    relation = "used together for the same activity"
    long_text = " ".join(f"word{i}" for i in range(40))
    text = append_relation(clip, long_text, relation)
    assert text.endswith(" " + relation) and text.startswith("word0 word1")
    assert int((clip.tokenizer([text])[0] != 0).sum()) < clip.max_seq_length  # nothing cut off
    # As much of the item text as fits: one more word would overflow the context.
    kept = len(text.split()) - len(relation.split())
    one_more = " ".join([*long_text.split()[: kept + 1], relation])
    assert int((clip.tokenizer([one_more])[0] != 0).sum()) >= clip.max_seq_length
    assert append_relation(clip, "bottle warmer", relation) == f"bottle warmer {relation}"

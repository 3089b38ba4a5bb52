"""Relation validity: does the triple (A, relation, B) hold? A linear probe on pair features.

Positives are the catalogue's edges; each gets one negative with the same source and relation
and a target drawn (with the seed) from the items not linked to the source under that relation.
A pair is described by ``[zA * zB, |zA - zB|]`` with ``zA``, ``zB`` the items' fused vectors under
the relation (for the ``product`` baseline, its 1-d factors, so the probe learns a threshold on
the product score). The features are symmetric in A and B, so a pair stated in both directions
would appear twice with identical features: the split is therefore by unordered pair. Pairs are
shuffled with the seed; 70 % train the probe (standardised features, scikit-learn's
``LogisticRegression``), the rest, with their negatives, measure its accuracy.

Large catalogues: at most ``max_edges`` positive edges (a seeded sample) take part, so the probe
stays a few seconds even at 100,000 edges and 512 dimensions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rcml_st.evaluation.retrieval import sample_negatives

if TYPE_CHECKING:
    from rcml_st.data.catalog import Catalog
    from rcml_st.encoding import RelationEmbeddings

TRAIN_FRACTION = 0.7
DEFAULT_MAX_EDGES = 10_000


@dataclass
class ValiditySplit:
    """The probe's pairs: ``source``, ``relation`` (index), ``target``, ``label`` and ``train`` mask."""

    source: np.ndarray
    relation: np.ndarray
    target: np.ndarray
    label: np.ndarray
    train: np.ndarray

    @property
    def sizes(self) -> dict[str, int]:
        """Number of train and test pairs (positives and negatives together)."""
        return {"train": int(self.train.sum()), "test": int((~self.train).sum())}


def validity_split(
    catalog: Catalog, relations: Sequence[str], seed: int = 0, max_edges: int = DEFAULT_MAX_EDGES
) -> ValiditySplit | None:
    """Draws the probe's positives, negatives and train/test split (``None`` if too few pairs).

    The split depends only on the catalogue and the seed, so every method is probed on the
    same pairs.
    """
    relations = list(relations)
    relation_of = {r: i for i, r in enumerate(relations)}
    edges = [e for e in catalog.edges if e.relation in relation_of]
    source = np.array([e.source for e in edges], dtype=np.int64)
    target = np.array([e.target for e in edges], dtype=np.int64)
    relation = np.array([relation_of[e.relation] for e in edges], dtype=np.int64)
    rng = np.random.default_rng((seed, 1))
    if source.size > max_edges:
        keep = np.sort(rng.choice(source.size, size=max_edges, replace=False))
        source, target, relation = source[keep], target[keep], relation[keep]
    negative, ok = sample_negatives(catalog, source, relation, 1, rng, relations=relations)
    source, target, relation, negative = source[ok], target[ok], relation[ok], negative[ok, 0]

    # Split by unordered pair (A, B, relation): a pair's two directions share features.
    n = len(catalog)
    pair = (relation * n + np.minimum(source, target)) * n + np.maximum(source, target)
    groups, group_of = np.unique(pair, return_inverse=True)
    if groups.size < 4:
        return None
    order = rng.permutation(groups.size)
    train_groups = np.zeros(groups.size, dtype=bool)
    train_groups[order[: round(TRAIN_FRACTION * groups.size)]] = True
    train = train_groups[group_of]
    if train.all() or not train.any():
        return None
    return ValiditySplit(
        source=np.concatenate([source, source]),
        relation=np.concatenate([relation, relation]),
        target=np.concatenate([target, negative]),
        label=np.concatenate([np.ones(source.size, bool), np.zeros(source.size, bool)]),
        train=np.concatenate([train, train]),
    )


def pair_features(
    embeddings: RelationEmbeddings, split: ValiditySplit, relations: Sequence[str]
) -> np.ndarray:
    """``[zA * zB, |zA - zB|]`` for every pair of the split, under its relation."""
    positions = np.array([embeddings.relation_position(r) for r in relations], dtype=np.int64)
    vectors = embeddings.get("item")
    rel = positions[split.relation]
    a, b = vectors[rel, split.source], vectors[rel, split.target]
    return np.concatenate([a * b, np.abs(a - b)], axis=1)


def validity_accuracy(
    embeddings: RelationEmbeddings, split: ValiditySplit | None, relations: Sequence[str]
) -> dict[str, float | None]:
    """Test accuracy of a linear probe deciding whether each pair holds under its relation.

    Example:
        >>> split = validity_split(catalog, catalog.relations, seed=0)  # doctest: +SKIP
        >>> validity_accuracy(rcml_embeddings, split, catalog.relations)  # doctest: +SKIP
        {'accuracy': 0.97}
    """
    if split is None:
        return {"accuracy": None}
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = pair_features(embeddings, split, relations)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(features[split.train], split.label[split.train])
    predicted = probe.predict(features[~split.train])
    return {"accuracy": float((predicted == split.label[~split.train]).mean())}

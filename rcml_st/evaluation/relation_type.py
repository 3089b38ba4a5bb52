"""Relation-type prediction: which relation brings a linked pair together?

For an edge ``(A, r, B)``, every relation ``q`` of the vocabulary is scored by the similarity of
``A`` and ``B`` embedded under ``q`` (the fused item vectors; for the ``product`` baseline its
factorised score), and the relations are ranked. Top-1 / top-3 accuracy is the share of edges
whose relation ``r`` ranks first / in the first three.

Ranking is *filtered*, as in link prediction: when the pair is also linked under other relations
of the vocabulary (in either direction), those relations are left out of the ranking for this
edge, so a pair that holds under two relations is not penalised for ranking the other one first,
and neither true relation makes the task easier. Ties count against the edge. With three or fewer
relations top-3 is 1 by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from rcml_st.evaluation.retrieval import _is_related, _pair_keys, _related_keys

if TYPE_CHECKING:
    from rcml_st.data.catalog import Catalog
    from rcml_st.encoding import RelationEmbeddings

_CHUNK = 4096


def relation_type_ranks(
    embeddings: RelationEmbeddings, catalog: Catalog, relations: Sequence[str]
) -> np.ndarray:
    """The filtered rank (1-based) of each edge's relation among ``relations``.

    Args:
        embeddings: ``item`` vectors under (at least) ``relations``.
        catalog: the catalogue whose edges are ranked (edges under other relations are left out).
        relations: the candidate relations (the vocabulary).

    Returns:
        (E,) int ranks, one per edge under one of ``relations``.
    """
    relations = list(relations)
    relation_of = {r: i for i, r in enumerate(relations)}
    edges = [e for e in catalog.edges if e.relation in relation_of]
    if not edges:
        return np.zeros(0, dtype=np.int64)
    n = len(catalog)
    source = np.array([e.source for e in edges], dtype=np.int64)
    target = np.array([e.target for e in edges], dtype=np.int64)
    relation = np.array([relation_of[e.relation] for e in edges], dtype=np.int64)
    related = _related_keys(catalog, relation_of)
    positions = np.array([embeddings.relation_position(r) for r in relations], dtype=np.int64)
    vectors = embeddings.get("item")[positions]  # (R, N, D)
    every = np.arange(len(relations))[None, :]
    ranks = np.empty(len(edges), dtype=np.int64)
    for start in range(0, len(edges), _CHUNK):
        s, t, r = (
            source[start : start + _CHUNK],
            target[start : start + _CHUNK],
            relation[start : start + _CHUNK],
        )
        scores = np.einsum("rqd,rqd->qr", vectors[:, s], vectors[:, t])  # (q, R)
        # Other relations the pair holds under are filtered out of its ranking.
        also_true = _is_related(related, _pair_keys(every, s[:, None], t[:, None], n))
        also_true[np.arange(r.size), r] = False
        own = scores[np.arange(r.size), r][:, None]
        above = (scores >= own) & ~also_true
        above[np.arange(r.size), r] = False
        ranks[start : start + _CHUNK] = 1 + above.sum(axis=1)
    return ranks


def relation_type_accuracy(
    embeddings: RelationEmbeddings, catalog: Catalog, relations: Sequence[str]
) -> dict[str, float | None]:
    """Top-1 and top-3 accuracy of relation-type prediction (``None`` with fewer than 2 relations).

    Example:
        >>> relation_type_accuracy(rcml_embeddings, catalog, catalog.relations)  # doctest: +SKIP
        {'top1': 0.81, 'top3': 1.0}
    """
    if len(relations) < 2:
        return {"top1": None, "top3": None}
    ranks = relation_type_ranks(embeddings, catalog, relations)
    if ranks.size == 0:
        return {"top1": None, "top3": None}
    return {"top1": float((ranks <= 1).mean()), "top3": float((ranks <= 3).mean())}

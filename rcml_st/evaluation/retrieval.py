"""Relation-guided retrieval: the RCML paper's main task, and an evaluator for training.

Protocol (``docs/contract/report-json.md``): every ``(source, relation, target)`` edge of a catalogue is
a query. Its candidates are the target plus ``negatives`` items drawn, with ``seed``, uniformly
without replacement from the items that are *not* related to the source under that relation
(the undirected view, :meth:`~rcml_st.data.Catalog.neighbours`) and are not the source itself.
Query and candidates are embedded under the query's relation and ranked by similarity.

Four directions: ``tt`` text query -> text candidates, ``ii`` image -> image, ``ti`` text ->
image, ``it`` image -> text. A query takes part in a direction when its source has the query
modality and its target the candidate modality; negatives are drawn from the items that have the
candidate modality (so ``tt`` and ``it`` share one draw, ``ii`` and ``ti`` another, and when every
item has both modalities all four directions use the same candidates). ``avg`` is the mean over
the directions that have queries.

Ranks are pessimistic: a negative scoring *equal* to the target counts as ranked above it, so a
model that gives every item the same vector scores 0, never 1.

Hard negatives (:func:`build_hard_queries`, the report's ``retrieval_hard``): the same queries,
but the negatives are drawn from the source's *partners under the other relations* of the
vocabulary (items linked to the source under some relation other than the query's, and not under
the query's). They are the items a model that ignores the relation would confuse with the target.
A query with fewer such partners than asked uses those it has; a query with *none* cannot measure
discrimination (its target would rank first for free) and is left out of ``retrieval_hard``.

Scale: each item is encoded once per relation (:func:`rcml_st.encode_relations`, one backbone
pass per item), then queries are scored with vectorised gathers over a (queries x candidates)
array in chunks; the cost is linear in the number of queries.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sentence_transformers.base.evaluation import SentenceEvaluator

from rcml_st.data.catalog import Catalog, read_catalog
from rcml_st.errors import UsageError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from rcml_st.encoding import RelationEmbeddings

logger = logging.getLogger("rcml_st")

#: Direction -> (query modality, candidate modality).
DIRECTIONS: dict[str, tuple[str, str]] = {
    "tt": ("text", "text"),
    "ii": ("image", "image"),
    "ti": ("text", "image"),
    "it": ("image", "text"),
}
#: The metrics of each direction, in report order.
METRICS: tuple[str, ...] = ("hit@1", "hit@5", "hit@10", "mrr")
DEFAULT_NEGATIVES = 20

# Queries scored per chunk: (chunk x (1 + negatives) x dim) floats stay around 100 MB at dim 512.
_SCORE_CHUNK = 2048


@dataclass
class RetrievalQueries:
    """The queries of a catalogue and their candidates, drawn once and reused for every method.

    Attributes:
        relations: the catalogue's relation vocabulary; ``relation`` indexes into it.
        source: (E,) item index of each query's source (one query per edge).
        relation: (E,) relation index of each query.
        target: (E,) item index of each query's target.
        candidates: candidate modality (``"text"``/``"image"``) -> (E, 1 + negatives) item indices;
            column 0 is the target. Rows that could not get enough negatives hold -1.
        complete: candidate modality -> (E,) bool, the rows with a full set of negatives.
        has_text: (N,) which items have text.
        has_image: (N,) which items have an image.
        negatives: negatives per query (asked; hard queries may have fewer, see ``negative_counts``).
        seed: the seed the negatives were drawn with.
        negative_counts: candidate modality -> (E,) negatives each row really has, when rows may
            have fewer than ``negatives`` (hard negatives; their missing columns hold -1);
            ``None`` when every complete row has them all.
    """

    relations: list[str]
    source: np.ndarray
    relation: np.ndarray
    target: np.ndarray
    candidates: dict[str, np.ndarray]
    complete: dict[str, np.ndarray]
    has_text: np.ndarray
    has_image: np.ndarray
    negatives: int
    seed: int
    negative_counts: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.source.shape[0])

    def has(self, modality: str) -> np.ndarray:
        """(N,) bool: which items have ``"text"`` or ``"image"``."""
        return self.has_text if modality == "text" else self.has_image

    def rows(self, direction: str) -> np.ndarray:
        """Indices of the queries that take part in a direction (``"tt"``, ``"ii"``, ``"ti"``, ``"it"``)."""
        query_modality, candidate_modality = DIRECTIONS[direction]
        keep = (
            self.has(query_modality)[self.source]
            & self.has(candidate_modality)[self.target]
            & self.complete[candidate_modality]
        )
        return np.flatnonzero(keep)

    def counts(self) -> dict[str, int]:
        """Direction -> number of queries in it."""
        return {direction: int(self.rows(direction).size) for direction in DIRECTIONS}

    @property
    def incomplete(self) -> int:
        """Queries left out of every direction for lack of eligible negatives."""
        usable = np.zeros(len(self), dtype=bool)
        for direction in DIRECTIONS:
            usable[self.rows(direction)] = True
        return int(len(self) - usable.sum())


def _pair_keys(relation: np.ndarray, a: np.ndarray, b: np.ndarray, n_items: int) -> np.ndarray:
    return (relation.astype(np.int64) * n_items + a.astype(np.int64)) * n_items + b.astype(np.int64)


def _related_keys(catalog: Catalog, relation_of: dict[str, int]) -> np.ndarray:
    """Sorted keys of every (relation, a, b) pair linked in either direction (the undirected view)."""
    if not catalog.edges:
        return np.zeros(0, dtype=np.int64)
    source = np.fromiter((e.source for e in catalog.edges), dtype=np.int64, count=len(catalog.edges))
    target = np.fromiter((e.target for e in catalog.edges), dtype=np.int64, count=len(catalog.edges))
    relation = np.fromiter(
        (relation_of[e.relation] for e in catalog.edges), dtype=np.int64, count=len(catalog.edges)
    )
    n = len(catalog)
    keys = np.concatenate([_pair_keys(relation, source, target, n), _pair_keys(relation, target, source, n)])
    return np.unique(keys)


def _is_related(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if sorted_keys.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    pos = np.searchsorted(sorted_keys, keys).clip(max=sorted_keys.size - 1)
    return sorted_keys[pos] == keys


def sample_negatives(
    catalog: Catalog,
    source: np.ndarray,
    relation: np.ndarray,
    k: int,
    rng: np.random.Generator,
    pool: np.ndarray | None = None,
    relations: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``k`` distinct items per row that are not related to the row's source under its relation.

    Vectorised rejection sampling: draw a block of candidates per row, reject the source, items
    linked to it under the relation (either direction) and repeats, keep the first ``k`` survivors
    in draw order (a uniform sample without replacement). Rows still short after a few rounds
    (dense relations, small catalogues) fall back to an exact draw from their eligible items.

    Args:
        catalog: the catalogue whose relation graph defines "related".
        source: (E,) source item indices.
        relation: (E,) relation indices into ``relations``.
        k: negatives per row.
        rng: the random generator (the result is a function of its state and the inputs).
        pool: item indices negatives may come from (default: every item).
        relations: the relation vocabulary ``relation`` indexes (default: ``catalog.relations``).

    Returns:
        ``(negatives (E, k), complete (E,))``; rows with fewer than ``k`` eligible items are
        ``complete == False`` and hold -1.

    Example:
        >>> import numpy as np
        >>> from rcml_st.data import Catalog, Item
        >>> items = [Item(str(i), f"item {i}", None, {"r": ["0"]} if i == 1 else {}, {}, i) for i in range(5)]
        >>> negatives, ok = sample_negatives(Catalog(None, items), np.array([0]), np.array([0]), 3,
        ...                                  np.random.default_rng(0))
        >>> sorted(negatives[0].tolist()), bool(ok[0])
        ([2, 3, 4], True)
    """
    relations = list(relations if relations is not None else catalog.relations)
    n = len(catalog)
    pool = np.arange(n) if pool is None else np.asarray(pool, dtype=np.int64)
    source = np.asarray(source, dtype=np.int64)
    relation = np.asarray(relation, dtype=np.int64)
    rows = source.shape[0]
    out = np.full((rows, k), -1, dtype=np.int64)
    complete = np.zeros(rows, dtype=bool)
    if k == 0:
        return out, np.ones(rows, dtype=bool)
    if pool.size < k or rows == 0:
        return out, complete
    related = _related_keys(catalog, {r: i for i, r in enumerate(relations)})

    pending = np.arange(rows)
    width = 2 * k + 8
    for _ in range(4):
        if pending.size == 0 or width > 4 * pool.size + 64:
            break
        draws = pool[rng.integers(0, pool.size, size=(pending.size, width))]
        src = source[pending][:, None]
        bad = (draws == src) | _is_related(related, _pair_keys(relation[pending][:, None], src, draws, n))
        # Repeats within a row: a stable sort keeps equal values in draw order, so every
        # occurrence after the first is marked.
        order = np.argsort(draws, axis=1, kind="stable")
        ordered = np.take_along_axis(draws, order, axis=1)
        repeat = np.zeros_like(bad)
        np.put_along_axis(repeat, order[:, 1:], ordered[:, 1:] == ordered[:, :-1], axis=1)
        good = ~(bad | repeat)
        done = good.sum(axis=1) >= k
        first_good = np.argsort(~good, axis=1, kind="stable")[:, :k]
        out[pending[done]] = np.take_along_axis(draws, first_good, axis=1)[done]
        complete[pending[done]] = True
        pending = pending[~done]
        width *= 4

    # Exact fallback for the few rows rejection sampling could not fill.
    for row in pending:
        excluded = catalog.neighbours(relations[relation[row]]).get(int(source[row]), set())
        excluded = np.fromiter((*excluded, int(source[row])), dtype=np.int64)
        eligible = np.setdiff1d(pool, excluded)
        if eligible.size >= k:
            out[row] = rng.choice(eligible, size=k, replace=False)
            complete[row] = True
    return out, complete


def _edge_arrays(
    catalog: Catalog, negatives: int, relations: Sequence[str] | None
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The vocabulary, the queries' (source, relation, target) arrays and the modality masks."""
    if negatives < 0:
        raise UsageError(f"negatives must be >= 0, got {negatives}")
    relations = list(relations if relations is not None else catalog.relations)
    relation_of = {r: i for i, r in enumerate(relations)}
    edges = [e for e in catalog.edges if e.relation in relation_of]
    if not edges:
        where = f" in {catalog.path}" if catalog.path is not None else ""
        raise UsageError(f"no relation edges{where}: nothing to evaluate (items need 'relations')")
    source = np.array([e.source for e in edges], dtype=np.int64)
    relation = np.array([relation_of[e.relation] for e in edges], dtype=np.int64)
    target = np.array([e.target for e in edges], dtype=np.int64)
    has_text = np.array([item.text is not None for item in catalog.items], dtype=bool)
    has_image = np.array([item.image is not None for item in catalog.items], dtype=bool)
    return relations, source, relation, target, has_text, has_image


def build_queries(
    catalog: Catalog,
    negatives: int = DEFAULT_NEGATIVES,
    seed: int = 0,
    relations: Sequence[str] | None = None,
) -> RetrievalQueries:
    """Turns every edge of a catalogue into a query with its candidates.

    Negatives are drawn separately for each candidate modality from the items that have it, each
    time with a fresh ``numpy.random.Generator(seed)``: when every item has both modalities the
    two draws are identical, and the same seed always gives the same candidates.

    Args:
        catalog: the evaluation catalogue.
        negatives: negatives per query (the paper uses 20, so 21 candidates).
        seed: random seed for the negatives.
        relations: the relation vocabulary (default: the catalogue's); edges under other
            relations are left out.

    Returns:
        The :class:`RetrievalQueries`.

    Raises:
        UsageError: when the catalogue has no edges or ``negatives`` is negative.

    Example:
        >>> import tempfile
        >>> from rcml_st.data import generate_catalog, read_catalog
        >>> test_file = generate_catalog(tempfile.mkdtemp(), n_items=80).test_path
        >>> queries = build_queries(read_catalog(test_file), negatives=5, seed=0)
        >>> queries.counts() == {d: len(queries) for d in ("tt", "ii", "ti", "it")}
        True
    """
    relations, source, relation, target, has_text, has_image = _edge_arrays(catalog, negatives, relations)

    candidates: dict[str, np.ndarray] = {}
    complete: dict[str, np.ndarray] = {}
    for modality, has in (("text", has_text), ("image", has_image)):
        drawn, ok = sample_negatives(
            catalog,
            source,
            relation,
            negatives,
            np.random.default_rng(seed),
            pool=np.flatnonzero(has),
            relations=relations,
        )
        candidates[modality] = np.concatenate([target[:, None], drawn], axis=1)
        complete[modality] = ok
    return RetrievalQueries(
        relations=relations,
        source=source,
        relation=relation,
        target=target,
        candidates=candidates,
        complete=complete,
        has_text=has_text,
        has_image=has_image,
        negatives=negatives,
        seed=seed,
    )


def hard_negative_pools(catalog: Catalog, relations: Sequence[str], source: int, relation: int) -> np.ndarray:
    """The source's partners under the other relations, minus its partners under this one.

    Args:
        catalog: the catalogue whose (undirected) relation graph is used.
        relations: the relation vocabulary; ``relation`` indexes it, and only its relations count.
        source: the query's source item.
        relation: the query's relation (index into ``relations``).

    Returns:
        Sorted item indices: linked to ``source`` under some relation of ``relations`` other than
        ``relations[relation]``, not linked to it under that one, and not ``source`` itself.

    Example:
        >>> from rcml_st.data import Catalog, Item
        >>> links = [{"colour": ["1"], "shape": ["2", "3"]}, {"shape": ["0"]}, {}, {}]
        >>> items = [Item(str(i), "an item", None, rel, {}, i + 1) for i, rel in enumerate(links)]
        >>> hard_negative_pools(Catalog(None, items), ["colour", "shape"], 0, 0).tolist()
        [2, 3]
    """
    own = catalog.neighbours(relations[relation]).get(source, set())
    others: set[int] = set()
    for k, name in enumerate(relations):
        if k != relation:
            others |= catalog.neighbours(name).get(source, set())
    pool = others - own - {source}
    return np.array(sorted(pool), dtype=np.int64)


def build_hard_queries(
    catalog: Catalog,
    negatives: int = DEFAULT_NEGATIVES,
    seed: int = 0,
    relations: Sequence[str] | None = None,
) -> RetrievalQueries:
    """The queries of :func:`build_queries` with hard negatives: partners under the other relations.

    Each ``(source, relation, target)`` edge is a query, in the same order as
    :func:`build_queries`. Its negatives are drawn, with ``seed`` (a fresh generator per candidate
    modality, rows in order), uniformly without replacement from :func:`hard_negative_pools`
    restricted to the items that have the candidate modality. A row with fewer eligible items than
    ``negatives`` takes them all (``negative_counts`` says how many; the rest of the row is -1). A
    row with none is not ``complete`` and takes part in no direction: with no negative its target
    would rank first whatever the model does, so it cannot measure discrimination.

    Args:
        catalog: the evaluation catalogue.
        negatives: hard negatives per query at most.
        seed: random seed for the draw.
        relations: the relation vocabulary (default: the catalogue's); edges under other
            relations are left out, and only partners under its relations are hard negatives.

    Returns:
        The :class:`RetrievalQueries`, with ``negative_counts`` set.

    Raises:
        UsageError: when the catalogue has no edges or ``negatives`` is negative.

    Example:
        >>> import tempfile
        >>> from rcml_st.data import generate_catalog, read_catalog
        >>> catalog = read_catalog(generate_catalog(tempfile.mkdtemp(), n_items=80).test_path)
        >>> hard = build_hard_queries(catalog, negatives=5, seed=0)
        >>> len(hard) == len(build_queries(catalog, negatives=5, seed=0))
        True
        >>> int(hard.negative_counts["text"].max()) <= 5
        True
    """
    relations, source, relation, target, has_text, has_image = _edge_arrays(catalog, negatives, relations)
    rows = source.shape[0]
    pools: dict[tuple[int, int], np.ndarray] = {}
    candidates: dict[str, np.ndarray] = {}
    complete: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for modality, has in (("text", has_text), ("image", has_image)):
        rng = np.random.default_rng(seed)
        drawn = np.full((rows, negatives), -1, dtype=np.int64)
        count = np.zeros(rows, dtype=np.int64)
        for row in range(rows):
            key = (int(source[row]), int(relation[row]))
            pool = pools.get(key)
            if pool is None:
                pool = pools[key] = hard_negative_pools(catalog, relations, *key)
            pool = pool[has[pool]]
            if pool.size > negatives:
                pool = rng.choice(pool, size=negatives, replace=False)
            drawn[row, : pool.size] = pool
            count[row] = pool.size
        candidates[modality] = np.concatenate([target[:, None], drawn], axis=1)
        complete[modality] = count > 0
        counts[modality] = count
    return RetrievalQueries(
        relations=relations,
        source=source,
        relation=relation,
        target=target,
        candidates=candidates,
        complete=complete,
        has_text=has_text,
        has_image=has_image,
        negatives=negatives,
        seed=seed,
        negative_counts=counts,
    )


def target_ranks(
    query_vectors: np.ndarray,
    candidate_vectors: np.ndarray,
    relation: np.ndarray,
    source: np.ndarray,
    candidates: np.ndarray,
    chunk: int = _SCORE_CHUNK,
) -> np.ndarray:
    """1-based rank of the target (column 0 of ``candidates``) among each query's candidates.

    Scores are dot products (cosine for unit vectors) of ``query_vectors[relation, source]`` with
    ``candidate_vectors[relation, candidate]``; ties count against the target. Candidates -1 (a
    row with fewer negatives than columns) are not candidates.

    Args:
        query_vectors: (R, N, D) query-side embeddings per relation.
        candidate_vectors: (R, N, D) candidate-side embeddings per relation.
        relation: (Q,) relation index per query.
        source: (Q,) source item per query.
        candidates: (Q, C) candidate items per query, the target first; -1 pads short rows.
        chunk: queries scored at once (bounds memory).

    Returns:
        (Q,) int ranks in [1, C].
    """
    ranks = np.empty(source.shape[0], dtype=np.int64)
    for start in range(0, source.shape[0], chunk):
        stop = start + chunk
        rel = relation[start:stop]
        query = query_vectors[rel, source[start:stop]]  # (c, D)
        rows = candidates[start:stop]
        cands = candidate_vectors[rel[:, None], np.maximum(rows, 0)]  # (c, C, D)
        scores = np.einsum("cd,ckd->ck", query, cands)
        ranks[start:stop] = 1 + ((scores[:, 1:] >= scores[:, :1]) & (rows[:, 1:] >= 0)).sum(axis=1)
    return ranks


def metrics_from_ranks(ranks: np.ndarray) -> dict[str, float | None]:
    """Hit@1, Hit@5, Hit@10 and MRR of a set of target ranks (``None`` when there are none).

    Example:
        >>> import numpy as np
        >>> metrics = metrics_from_ranks(np.array([1, 2, 12]))
        >>> {name: round(value, 3) for name, value in metrics.items()}
        {'hit@1': 0.333, 'hit@5': 0.667, 'hit@10': 0.667, 'mrr': 0.528}
    """
    if ranks.size == 0:
        return dict.fromkeys(METRICS)
    return {
        "hit@1": float((ranks <= 1).mean()),
        "hit@5": float((ranks <= 5).mean()),
        "hit@10": float((ranks <= 10).mean()),
        "mrr": float((1.0 / ranks).mean()),
    }


def average_metrics(per_direction: dict[str, dict[str, float | None]]) -> dict[str, float | None]:
    """The mean of each metric over the directions that have queries (``None`` if none do)."""
    out: dict[str, float | None] = {}
    for metric in METRICS:
        values = [m[metric] for m in per_direction.values() if m.get(metric) is not None]
        out[metric] = float(np.mean(values)) if values else None
    return out


def chance_metrics(queries: RetrievalQueries) -> dict[str, dict[str, float | None]]:
    """What a random ranking scores on these queries: per direction and ``avg``, like a method.

    With ``C`` candidates a random ranking puts the target at each rank with probability ``1/C``:
    Hit@k is ``min(k, C) / C`` and MRR ``H_C / C`` (``H_C`` the harmonic number), averaged over the
    direction's queries. With hard negatives ``C`` varies by query, so this is the level to read
    ``retrieval_hard`` against.

    Example:
        >>> import tempfile
        >>> from rcml_st.data import generate_catalog, read_catalog
        >>> catalog = read_catalog(generate_catalog(tempfile.mkdtemp(), n_items=80).test_path)
        >>> round(chance_metrics(build_queries(catalog, negatives=4))["tt"]["hit@1"], 3)
        0.2
    """
    metrics: dict[str, dict[str, float | None]] = {}
    for direction, (_, candidate_modality) in DIRECTIONS.items():
        rows = queries.rows(direction)
        if rows.size == 0:
            metrics[direction] = dict.fromkeys(METRICS)
            continue
        if queries.negative_counts is not None:
            sizes = 1 + queries.negative_counts[candidate_modality][rows]
        else:
            sizes = np.full(rows.size, 1 + queries.negatives)
        harmonic = np.cumsum(1.0 / np.arange(1, int(sizes.max()) + 1))
        metrics[direction] = {
            "hit@1": float(np.mean(1.0 / sizes)),
            "hit@5": float(np.mean(np.minimum(5, sizes) / sizes)),
            "hit@10": float(np.mean(np.minimum(10, sizes) / sizes)),
            "mrr": float(np.mean(harmonic[sizes - 1] / sizes)),
        }
    metrics["avg"] = average_metrics(metrics)
    return metrics


@dataclass
class RetrievalResult:
    """Retrieval metrics of one method.

    Attributes:
        metrics: direction (``tt``, ``ii``, ``ti``, ``it``, ``avg``) -> metric -> value
            (``None`` for a direction without queries).
        counts: direction -> number of queries.
        ranks: direction -> (queries,) target ranks, for further analysis.
    """

    metrics: dict[str, dict[str, float | None]]
    counts: dict[str, int]
    ranks: dict[str, np.ndarray] = field(repr=False, default_factory=dict)


def score_retrieval(
    embeddings: RelationEmbeddings,
    queries: RetrievalQueries,
    served: Collection[str] | None = None,
) -> RetrievalResult:
    """Scores every direction's queries with precomputed per-relation embeddings.

    Args:
        embeddings: ``text`` and ``image`` arrays (R', N, D) for at least the queries' relations
            (matched by name through ``embeddings.relations``); any vectors whose dot product is
            the method's similarity (unit vectors for cosine).
        queries: from :func:`build_queries` (or :func:`build_hard_queries`) on the same catalogue.
        served: the directions the method can serve (default: all). The others are ``None``
            (not applicable, never 0), and so is ``avg`` when a direction that has queries is
            not served: an average over fewer directions would not compare with the others'.

    Returns:
        The :class:`RetrievalResult`.
    """
    served = set(DIRECTIONS if served is None else served)
    positions = np.array([embeddings.relation_position(r) for r in queries.relations], dtype=np.int64)
    metrics: dict[str, dict[str, float | None]] = {}
    ranks: dict[str, np.ndarray] = {}
    missing = False
    for direction, (query_modality, candidate_modality) in DIRECTIONS.items():
        rows = queries.rows(direction)
        if direction not in served:
            missing = missing or rows.size > 0
            ranks[direction] = np.zeros(0, dtype=np.int64)
            metrics[direction] = dict.fromkeys(METRICS)
            continue
        ranks[direction] = target_ranks(
            embeddings.get(query_modality),
            embeddings.get(candidate_modality),
            positions[queries.relation[rows]],
            queries.source[rows],
            queries.candidates[candidate_modality][rows],
        )
        metrics[direction] = metrics_from_ranks(ranks[direction])
    metrics["avg"] = dict.fromkeys(METRICS) if missing else average_metrics(metrics)
    return RetrievalResult(metrics=metrics, counts={d: int(r.size) for d, r in ranks.items()}, ranks=ranks)


def catalog_inputs(catalog: Catalog) -> list[dict[str, str]]:
    """The model inputs of a catalogue's items (``{"text": ..., "image": path}``)."""
    return [item.to_input() for item in catalog.items]


def evaluate_retrieval(
    model: SentenceTransformer,
    catalog: Catalog,
    negatives: int = DEFAULT_NEGATIVES,
    seed: int = 0,
    *,
    queries: RetrievalQueries | None = None,
    batch_size: int = 32,
    show_progress_bar: bool = False,
) -> RetrievalResult:
    """Relation-guided retrieval of an RCML model on a catalogue.

    Encodes each item once under every relation of the catalogue (one backbone pass per item),
    then scores all queries.

    Args:
        model: an RCML ``SentenceTransformer``.
        catalog: the evaluation catalogue (its edges are the queries).
        negatives: negatives per query.
        seed: random seed for the negatives.
        queries: precomputed queries (then ``negatives`` and ``seed`` are not used).
        batch_size: items per encoding batch.
        show_progress_bar: show a progress bar while encoding.

    Returns:
        The :class:`RetrievalResult`.

    Example:
        >>> import tempfile
        >>> import rcml_st
        >>> from rcml_st.data import generate_catalog, read_catalog
        >>> test_file = generate_catalog(tempfile.mkdtemp(), n_items=80).test_path
        >>> model = rcml_st.build_model("rcml-tiny", device="cpu")  # or rcml_st.load("rcml-baby")
        >>> result = evaluate_retrieval(model, read_catalog(test_file), negatives=5)
        >>> sorted(result.metrics["avg"])
        ['hit@1', 'hit@10', 'hit@5', 'mrr']
    """
    from rcml_st.encoding import encode_relations

    queries = queries if queries is not None else build_queries(catalog, negatives, seed)
    embeddings = encode_relations(
        model,
        catalog_inputs(catalog),
        queries.relations,
        batch_size=batch_size,
        modalities=("text", "image"),
        show_progress_bar=show_progress_bar,
        progress_description="Encoding items under each relation",
    )
    return score_retrieval(embeddings, queries)


def flat_metrics(result: RetrievalResult) -> dict[str, float]:
    """``{"tt_hit@1": ..., ..., "avg_mrr": ...}`` for the directions that have queries."""
    return {
        f"{direction}_{metric}": value
        for direction, values in result.metrics.items()
        for metric, value in values.items()
        if value is not None
    }


class RelationRetrievalEvaluator(SentenceEvaluator):
    """Relation-guided retrieval as a sentence-transformers evaluator.

    Queries and negatives are drawn once, at construction, so every evaluation during training
    ranks the same candidates. Returns ``{direction}_{metric}`` for the directions that have
    queries (``tt_hit@1`` ... ``avg_mrr``), prefixed with ``name`` when given; the primary metric
    is ``avg_hit@5``. With ``hard_negatives=True`` the same queries are also scored against hard
    negatives (:func:`build_hard_queries`, from the same embeddings: no extra encoding), as
    ``hard_{direction}_{metric}`` (``hard_avg_hit@1`` ...).

    Args:
        catalog: a :class:`~rcml_st.data.Catalog` or the path of a catalogue file.
        negatives: negatives per query (default 20).
        seed: random seed for the negatives.
        name: a prefix for the metric names (e.g. ``"test"`` gives ``test_avg_hit@5``).
        batch_size: items per encoding batch.
        show_progress_bar: show a progress bar while encoding.
        write_csv: append the metrics to ``<output_path>/<csv_file>`` when an output path is given.
        hard_negatives: also report the metrics with hard negatives (``hard_`` prefix).

    Example:
        >>> from rcml_st.evaluation import RelationRetrievalEvaluator
        >>> evaluator = RelationRetrievalEvaluator("test.jsonl", name="test")  # doctest: +SKIP
        >>> evaluator(model)["test_avg_hit@5"]  # doctest: +SKIP
        0.93
        >>> # or: SentenceTransformerTrainer(..., evaluator=evaluator)
    """

    def __init__(
        self,
        catalog: Catalog | str | os.PathLike[str],
        negatives: int = DEFAULT_NEGATIVES,
        seed: int = 0,
        name: str = "",
        batch_size: int = 32,
        show_progress_bar: bool = False,
        write_csv: bool = True,
        hard_negatives: bool = False,
    ) -> None:
        super().__init__()
        self.catalog = catalog if isinstance(catalog, Catalog) else read_catalog(Path(catalog))
        self.negatives = int(negatives)
        self.seed = int(seed)
        self.name = name
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.write_csv = write_csv
        self.queries = build_queries(self.catalog, self.negatives, self.seed)
        self.hard_queries = (
            build_hard_queries(self.catalog, self.negatives, self.seed) if hard_negatives else None
        )
        self.greater_is_better = True
        self.primary_metric = "avg_hit@5"
        self.csv_file = "relation_retrieval_evaluation" + (f"_{name}" if name else "") + "_results.csv"
        self._columns = [f"{d}_{m}" for d in (*DIRECTIONS, "avg") for m in METRICS]
        if self.hard_queries is not None:
            self._columns += [f"hard_{column}" for column in self._columns]
        self.csv_headers = ["epoch", "steps", *self._columns]

    def __call__(
        self, model: SentenceTransformer, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """Evaluates ``model``; returns the metrics dict (see the class docstring)."""
        where = f" after epoch {epoch}" if epoch != -1 else ""
        where += f", step {steps}" if steps != -1 else ""
        logger.info("Relation-guided retrieval on %d queries%s", len(self.queries), where)
        from rcml_st.encoding import encode_relations

        embeddings = encode_relations(
            model,
            catalog_inputs(self.catalog),
            self.queries.relations,
            batch_size=self.batch_size,
            modalities=("text", "image"),
            show_progress_bar=self.show_progress_bar,
            progress_description="Encoding items under each relation",
        )
        result = score_retrieval(embeddings, self.queries)
        metrics = flat_metrics(result)
        for direction, values in result.metrics.items():
            if values["hit@5"] is not None:
                logger.info("  %-3s hit@5 %.4f  mrr %.4f", direction, values["hit@5"], values["mrr"])
        hard = score_retrieval(embeddings, self.hard_queries) if self.hard_queries is not None else None
        if hard is not None:
            metrics.update({f"hard_{key}": value for key, value in flat_metrics(hard).items()})
            if hard.metrics["avg"]["hit@1"] is not None:
                logger.info("  hard negatives: avg hit@1 %.4f", hard.metrics["avg"]["hit@1"])
        if output_path is not None and self.write_csv:
            self._write_csv(output_path, epoch, steps, result, hard)
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def _write_csv(
        self, output_path: str, epoch: int, steps: int, result: RetrievalResult, hard: RetrievalResult | None
    ) -> None:
        os.makedirs(output_path, exist_ok=True)
        path = os.path.join(output_path, self.csv_file)
        new = not os.path.isfile(path)
        row: list[Any] = [epoch, steps]
        for scored in (result, hard):
            if scored is not None:
                row += [scored.metrics[d][m] for d in (*DIRECTIONS, "avg") for m in METRICS]
        with open(path, "a", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(self.csv_headers)
            writer.writerow(["" if v is None else v for v in row])

    def get_config_dict(self) -> dict[str, Any]:
        """Settings shown in the model card."""
        config: dict[str, Any] = {"negatives": self.negatives, "seed": self.seed}
        if self.hard_queries is not None:
            config["hard_negatives"] = True
        return config

"""The whole evaluation of ``rcml-st evaluate``: three tasks, baselines, one JSON-ready report.

The report's JSON (:meth:`EvaluationReport.to_dict`) is fixed by ``docs/contract/report-json.md``::

    {"settings": {"negatives": 20, "seed": 0, "queries": 1374,
                  "queries_per_direction": {"tt": 1374, "ii": 1374, "ti": 1374, "it": 1374}, ...},
     "retrieval": {"rcml": {"tt": {"hit@1": ..., "hit@5": ..., "hit@10": ..., "mrr": ...},
                            "ii": {...}, "ti": {...}, "it": {...}, "avg": {...}},
                   "clip": {...}, "product": {...}, "<compare dir name>": {...}},
     "relation_type": {"rcml": {"top1": ..., "top3": ...}, ...},
     "validity": {"rcml": {"accuracy": ...}, ...}}

Additions that keep that shape: ``settings`` also carries ``queries_per_direction`` (queries in
each direction; ``queries`` is the number of edges used as queries), ``incomplete_queries``
(edges left out for lack of eligible negatives), ``items``, ``relations``, ``methods``, ``data``,
``model`` and ``validity_pairs`` (train/test sizes of the probe). A direction without queries
keeps its four keys with ``null`` values, as do tasks that cannot be computed (relation type with
one relation, validity with too few pairs).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rcml_st.errors import UsageError
from rcml_st.evaluation.methods import (
    BASELINES,
    CLIP,
    PRODUCT,
    RCML,
    clip_baseline,
    encode_with_plain,
    product_baseline,
)
from rcml_st.evaluation.relation_type import relation_type_accuracy
from rcml_st.evaluation.retrieval import (
    DEFAULT_NEGATIVES,
    DIRECTIONS,
    RetrievalQueries,
    RetrievalResult,
    build_queries,
    score_retrieval,
)
from rcml_st.evaluation.validity import (
    DEFAULT_MAX_EDGES,
    ValiditySplit,
    validity_accuracy,
    validity_split,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from rcml_st.data.catalog import Catalog
    from rcml_st.encoding import RelationEmbeddings

logger = logging.getLogger("rcml_st")


@dataclass
class MethodResult:
    """One method's results on the three tasks."""

    retrieval: RetrievalResult
    relation_type: dict[str, float | None]
    validity: dict[str, float | None]


@dataclass
class EvaluationReport:
    """Results of every method, plus what the plot needs.

    Attributes:
        settings: the ``settings`` object of the JSON report.
        methods: method key -> :class:`MethodResult`, in report order (``rcml`` first).
        conditioned: the RCML model's item embeddings under each relation (for plots).
        plain: its plain backbone embeddings (for plots).
    """

    settings: dict[str, Any]
    methods: dict[str, MethodResult]
    conditioned: RelationEmbeddings | None = field(default=None, repr=False)
    plain: RelationEmbeddings | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (``docs/contract/report-json.md``)."""
        return {
            "settings": self.settings,
            "retrieval": {name: result.retrieval.metrics for name, result in self.methods.items()},
            "relation_type": {name: result.relation_type for name, result in self.methods.items()},
            "validity": {name: result.validity for name, result in self.methods.items()},
        }


def _score(
    embeddings: RelationEmbeddings,
    catalog: Catalog,
    relations: list[str],
    queries: RetrievalQueries,
    split: ValiditySplit | None,
) -> MethodResult:
    return MethodResult(
        retrieval=score_retrieval(embeddings, queries),
        relation_type=relation_type_accuracy(embeddings, catalog, relations),
        validity=validity_accuracy(embeddings, split, relations),
    )


def evaluate_catalog(
    model: SentenceTransformer,
    catalog: Catalog,
    *,
    compare: Mapping[str, SentenceTransformer] | None = None,
    baselines: Sequence[str] = BASELINES,
    negatives: int = DEFAULT_NEGATIVES,
    seed: int = 0,
    batch_size: int = 32,
    show_progress_bar: bool = False,
    probe_max_edges: int = DEFAULT_MAX_EDGES,
    keep_embeddings: bool = True,
) -> EvaluationReport:
    """Runs retrieval, relation-type prediction and validity for the model, baselines and others.

    Every method sees the same queries, candidates and probe split. The model is encoded once
    (each item under every relation of the catalogue plus its plain embedding, one backbone pass);
    the ``product`` baseline reuses that pass, the ``clip`` baseline re-encodes texts with the
    relation appended (once per item and relation), each ``compare`` model is encoded once.

    Args:
        model: the RCML model under test (reported as ``rcml``).
        catalog: the evaluation catalogue; its edges are the queries, its relations the vocabulary.
        compare: other RCML models, by report name (e.g. a ``--no-conditioning`` run).
        baselines: which of ``"clip"`` and ``"product"`` to run.
        negatives: negatives per retrieval query.
        seed: seed for negatives and the probe's split.
        batch_size: items per encoding batch.
        show_progress_bar: progress bars while encoding.
        probe_max_edges: positives used by the validity probe at most (a seeded sample).
        keep_embeddings: keep the model's embeddings on the report (for plots).

    Returns:
        The :class:`EvaluationReport`.

    Raises:
        UsageError: on an unknown baseline, a name clash, or a catalogue without edges.

    Example:
        >>> import rcml_st
        >>> from rcml_st.data import read_catalog
        >>> report = evaluate_catalog(rcml_st.load("rcml-baby"), read_catalog("test.jsonl"))  # doctest: +SKIP
        >>> report.to_dict()["retrieval"]["rcml"]["avg"]["hit@5"]  # doctest: +SKIP
        0.93
    """
    compare = dict(compare or {})
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise UsageError(f"unknown baseline(s) {unknown}; choose from {list(BASELINES)}")
    clash = sorted(set(compare) & {RCML, *BASELINES})
    if clash:
        raise UsageError(f"a compared model cannot be named {clash[0]!r}: that name is taken by a method")
    relations = catalog.relations
    queries = build_queries(catalog, negatives, seed, relations)
    split = validity_split(catalog, relations, seed, probe_max_edges)
    counts = queries.counts()
    if not any(counts.values()):
        raise UsageError(
            f"no retrieval query has {negatives} eligible negatives: the catalogue has {len(catalog)} items; "
            "lower --negatives"
        )
    if queries.incomplete:
        logger.warning(
            "%d of %d queries left out: fewer than %d items unrelated to their source",
            queries.incomplete,
            len(queries),
            negatives,
        )

    methods: dict[str, MethodResult] = {}
    conditioned, plain = encode_with_plain(
        model, catalog, relations, batch_size=batch_size, show_progress_bar=show_progress_bar
    )
    methods[RCML] = _score(conditioned, catalog, relations, queries, split)
    if CLIP in baselines:
        clip = clip_baseline(
            model, catalog, relations, plain, batch_size=batch_size, show_progress_bar=show_progress_bar
        )
        methods[CLIP] = _score(clip, catalog, relations, queries, split)
        del clip
    if PRODUCT in baselines:
        methods[PRODUCT] = _score(
            product_baseline(model, relations, plain), catalog, relations, queries, split
        )
    for name, other in compare.items():
        embeddings, _ = encode_with_plain(
            other, catalog, relations, batch_size=batch_size, show_progress_bar=show_progress_bar, label=name
        )
        methods[name] = _score(embeddings, catalog, relations, queries, split)
        del embeddings

    settings: dict[str, Any] = {
        "negatives": negatives,
        "seed": seed,
        "queries": len(queries) - queries.incomplete,
        "queries_per_direction": {d: counts[d] for d in DIRECTIONS},
        "incomplete_queries": queries.incomplete,
        "items": len(catalog),
        "relations": relations,
        "methods": list(methods),
        "validity_pairs": split.sizes if split is not None else {"train": 0, "test": 0},
    }
    return EvaluationReport(
        settings=settings,
        methods=methods,
        conditioned=conditioned if keep_embeddings else None,
        plain=plain if keep_embeddings else None,
    )

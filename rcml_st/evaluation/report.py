"""The whole evaluation of ``rcml-st evaluate``: three tasks, baselines, one JSON-ready report.

The report's JSON (:meth:`EvaluationReport.to_dict`) is fixed by ``docs/contract/report-json.md``::

    {"settings": {"negatives": 20, "seed": 0, "queries": 1374,
                  "queries_per_direction": {"tt": 1374, "ii": 1374, "ti": 1374, "it": 1374}, ...},
     "retrieval": {"rcml": {"tt": {"hit@1": ..., "hit@5": ..., "hit@10": ..., "mrr": ...},
                            "ii": {...}, "ti": {...}, "it": {...}, "avg": {...}},
                   "clip": {...}, "product": {...}, "<compare dir name>": {...}},
     "relation_type": {"rcml": {"top1": ..., "top3": ...}, ...},
     "validity": {"rcml": {"accuracy": ...}, ...}}

``retrieval_hard`` (between ``retrieval`` and ``relation_type``, same shape as ``retrieval``): the
same queries with hard negatives, the source's partners under the other relations
(:func:`~rcml_st.evaluation.retrieval.build_hard_queries`). A query with fewer such partners than
``negatives`` uses those it has; a query with none is left out (it cannot tell a model that follows
the relation from one that ignores it). ``settings`` says how many took part: ``hard_queries`` (in
at least one direction), ``hard_queries_per_direction``, ``hard_negatives_mean`` (negatives per
query, averaged over the directions' queries) and ``hard_chance`` (what a random ranking scores on
them, per direction and ``avg``: the level to read ``retrieval_hard`` against, since the number
of candidates varies by query). With a single relation there are no hard negatives: every value of
``retrieval_hard`` is ``null`` and ``hard_queries`` is 0.

A ``--compare`` model that is not RCML (:class:`~rcml_st.evaluation.prompted.PromptedModel`) has
``null`` for the directions it cannot serve, and for ``avg`` then (an average over fewer
directions would not compare), and for relation type and validity when the catalogue has a
modality it cannot read; ``settings.prompt_templates`` records each such model's template.

``zero_shot`` (the untrained backbone, evaluated like ``clip``) appears when the model's backbone can be
rebuilt untrained offline; ``settings.zero_shot`` names it (``backbone``, ``pretrained``) or says
why it was left out (``left_out``).

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

import numpy as np

from rcml_st.errors import RCMLError, UsageError
from rcml_st.evaluation.methods import (
    BASELINES,
    CLIP,
    PRODUCT,
    RCML,
    ZERO_SHOT,
    build_zero_shot,
    clip_baseline,
    encode_with_plain,
    is_rcml,
    product_baseline,
    zero_shot_spec,
)
from rcml_st.evaluation.prompted import PromptedModel, encode_prompted, served_directions
from rcml_st.evaluation.relation_type import relation_type_accuracy
from rcml_st.evaluation.retrieval import (
    DEFAULT_NEGATIVES,
    DIRECTIONS,
    RetrievalQueries,
    RetrievalResult,
    build_hard_queries,
    build_queries,
    chance_metrics,
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
    """One method's results on the three tasks (and retrieval with hard negatives)."""

    retrieval: RetrievalResult
    relation_type: dict[str, float | None]
    validity: dict[str, float | None]
    retrieval_hard: RetrievalResult | None = None


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
        out: dict[str, Any] = {
            "settings": self.settings,
            "retrieval": {name: result.retrieval.metrics for name, result in self.methods.items()},
        }
        if any(result.retrieval_hard is not None for result in self.methods.values()):
            out["retrieval_hard"] = {
                name: result.retrieval_hard.metrics
                for name, result in self.methods.items()
                if result.retrieval_hard is not None
            }
        out["relation_type"] = {name: result.relation_type for name, result in self.methods.items()}
        out["validity"] = {name: result.validity for name, result in self.methods.items()}
        return out


def _score(
    embeddings: RelationEmbeddings,
    catalog: Catalog,
    relations: list[str],
    queries: RetrievalQueries,
    split: ValiditySplit | None,
    hard: RetrievalQueries | None,
    modalities: Sequence[str] = ("text", "image"),
) -> MethodResult:
    served = served_directions(modalities)
    # Relation type and validity compare fused item vectors: only meaningful when the method
    # reads every modality the catalogue's items have.
    reads_all = all(
        m in modalities for m, has in (("text", queries.has_text), ("image", queries.has_image)) if has.any()
    )
    return MethodResult(
        retrieval=score_retrieval(embeddings, queries, served),
        relation_type=relation_type_accuracy(embeddings, catalog, relations)
        if reads_all
        else {"top1": None, "top3": None},
        validity=validity_accuracy(embeddings, split, relations) if reads_all else {"accuracy": None},
        retrieval_hard=score_retrieval(embeddings, hard, served) if hard is not None else None,
    )


def evaluate_catalog(
    model: SentenceTransformer,
    catalog: Catalog,
    *,
    compare: Mapping[str, SentenceTransformer | PromptedModel] | None = None,
    baselines: Sequence[str] = BASELINES,
    negatives: int = DEFAULT_NEGATIVES,
    seed: int = 0,
    batch_size: int = 32,
    show_progress_bar: bool = False,
    probe_max_edges: int = DEFAULT_MAX_EDGES,
    keep_embeddings: bool = True,
    hard_negatives: bool = True,
) -> EvaluationReport:
    """Runs retrieval, relation-type prediction and validity for the model, baselines and others.

    Every method sees the same queries, candidates and probe split. The model is encoded once
    (each item under every relation of the catalogue plus its plain embedding, one backbone pass);
    the ``product`` baseline reuses that pass, the ``clip`` baseline re-encodes texts with the
    relation appended (once per item and relation), ``zero_shot`` rebuilds the untrained backbone
    and does the same, each ``compare`` model is encoded once (a prompted one once per
    item and relation).

    Args:
        model: the RCML model under test (reported as ``rcml``).
        catalog: the evaluation catalogue; its edges are the queries, its relations the vocabulary.
        compare: other models, by report name: RCML models (e.g. a ``--no-conditioning`` run), any
            other sentence-transformers model (its texts as they are), or a
            :class:`~rcml_st.evaluation.prompted.PromptedModel` (such a model with a prompt
            template that writes the relation into its texts). Directions a model cannot serve
            (images for a text-only model) are ``None``.
        baselines: which of ``"clip"``, ``"zero_shot"`` and ``"product"`` to run (see
            :mod:`rcml_st.evaluation.methods`; ``zero_shot`` is left out, with the reason in
            ``settings["zero_shot"]["left_out"]``, when the untrained backbone cannot be rebuilt).
        negatives: negatives per retrieval query.
        seed: seed for negatives and the probe's split.
        batch_size: items per encoding batch.
        show_progress_bar: progress bars while encoding.
        probe_max_edges: positives used by the validity probe at most (a seeded sample).
        keep_embeddings: keep the model's embeddings on the report (for plots).
        hard_negatives: also score the queries with hard negatives (``retrieval_hard``: up to
            ``negatives`` of the source's partners under the other relations, drawn with ``seed``).

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
    hard = build_hard_queries(catalog, negatives, seed, relations) if hard_negatives else None
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
    if hard is not None and not any(hard.counts().values()):
        logger.warning(
            "no query has a hard negative (a partner of its source under another relation): "
            "retrieval_hard is empty"
        )

    methods: dict[str, MethodResult] = {}
    conditioned, plain = encode_with_plain(
        model, catalog, relations, batch_size=batch_size, show_progress_bar=show_progress_bar
    )
    methods[RCML] = _score(conditioned, catalog, relations, queries, split, hard)
    if CLIP in baselines:
        clip = clip_baseline(
            model, catalog, relations, plain, batch_size=batch_size, show_progress_bar=show_progress_bar
        )
        methods[CLIP] = _score(clip, catalog, relations, queries, split, hard)
        del clip
    zero_shot: dict[str, Any] = {}
    if ZERO_SHOT in baselines:
        try:
            untrained = build_zero_shot(model, seed=seed)
        except RCMLError as exc:  # cannot be rebuilt (offline, custom, random): say why, go on
            logger.warning("zero_shot baseline left out: %s", exc)
            zero_shot = {"left_out": str(exc)}
        else:
            backbone, pretrained = zero_shot_spec(model)
            zero_shot = {"backbone": backbone, "pretrained": pretrained}
            # The clip protocol on the untrained backbone: beside ``clip``, the row shows what
            # training the backbone did.
            _, untrained_plain = encode_with_plain(
                untrained,
                catalog,
                [],
                batch_size=batch_size,
                show_progress_bar=show_progress_bar,
                label=ZERO_SHOT,
            )
            untrained_clip = clip_baseline(
                untrained,
                catalog,
                relations,
                untrained_plain,
                batch_size=batch_size,
                show_progress_bar=show_progress_bar,
            )
            del untrained, untrained_plain
            methods[ZERO_SHOT] = _score(untrained_clip, catalog, relations, queries, split, hard)
            del untrained_clip
    if PRODUCT in baselines:
        methods[PRODUCT] = _score(
            product_baseline(model, relations, plain), catalog, relations, queries, split, hard
        )
    templates: dict[str, str | None] = {}
    for name, other in compare.items():
        if isinstance(other, PromptedModel) or not is_rcml(other):
            prompted = other if isinstance(other, PromptedModel) else PromptedModel(other)
            templates[name] = prompted.template
            embeddings = encode_prompted(
                prompted, catalog, relations, batch_size=batch_size, show_progress_bar=show_progress_bar
            )
            methods[name] = _score(embeddings, catalog, relations, queries, split, hard, prompted.modalities)
        else:
            embeddings, _ = encode_with_plain(
                other,
                catalog,
                relations,
                batch_size=batch_size,
                show_progress_bar=show_progress_bar,
                label=name,
            )
            methods[name] = _score(embeddings, catalog, relations, queries, split, hard)
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
    if zero_shot:
        settings["zero_shot"] = zero_shot
    if templates:
        settings["prompt_templates"] = templates
    if hard is not None:
        settings.update(hard_settings(hard))
    return EvaluationReport(
        settings=settings,
        methods=methods,
        conditioned=conditioned if keep_embeddings else None,
        plain=plain if keep_embeddings else None,
    )


def hard_settings(hard: RetrievalQueries) -> dict[str, Any]:
    """The ``settings`` entries that describe the hard-negative queries (see the module docstring).

    Example:
        >>> import tempfile
        >>> from rcml_st.data import generate_catalog, read_catalog
        >>> from rcml_st.evaluation import build_hard_queries
        >>> catalog = read_catalog(generate_catalog(tempfile.mkdtemp(), n_items=80).test_path)
        >>> sorted(hard_settings(build_hard_queries(catalog, negatives=5)))
        ['hard_chance', 'hard_negatives_mean', 'hard_queries', 'hard_queries_per_direction']
    """
    counts = hard.counts()
    per_row = [
        hard.negative_counts[DIRECTIONS[d][1]][hard.rows(d)]
        for d in DIRECTIONS
        if hard.negative_counts is not None
    ]
    negatives = np.concatenate(per_row) if per_row else np.zeros(0)
    return {
        "hard_queries": len(hard) - hard.incomplete,
        "hard_queries_per_direction": {d: counts[d] for d in DIRECTIONS},
        "hard_negatives_mean": float(negatives.mean()) if negatives.size else None,
        "hard_chance": chance_metrics(hard),
    }

"""Evaluation: relation-guided retrieval, relation-type prediction, relation validity, baselines.

The protocol follows the RCML paper (see ``docs/contract/report-json.md``). The retrieval task also
exists as a sentence-transformers evaluator for training runs::

    from rcml_st.evaluation import RelationRetrievalEvaluator

    evaluator = RelationRetrievalEvaluator("test.jsonl", negatives=20, seed=0, name="test")
    metrics = evaluator(model)          # {"test_tt_hit@1": ..., "test_avg_hit@5": ..., ...}

The whole evaluation (retrieval with random and with hard negatives, relation type, validity;
``clip`` and ``product`` baselines; other models) is :func:`evaluate_catalog`; ``rcml-st evaluate``
prints its report (:func:`report_tables`, rich tables) and saves it. :func:`build_hard_queries`
draws the hard negatives (the source's partners under the other relations). Any
sentence-transformers model can be compared, the relation written into its texts by a template
(:class:`PromptedModel`), and :func:`indexing_cost` measures what encoding N items under R
relations costs each method::

    from rcml_st.evaluation import PromptedModel, indexing_cost

    rcml = indexing_cost(rcml_model, catalog, catalog.relations)           # one pass per item
    minilm = PromptedModel(SentenceTransformer("all-MiniLM-L6-v2"), "{relation}: {text}")
    prompted = indexing_cost(minilm, catalog, catalog.relations)            # one per (item, relation)
    print(rcml.seconds, rcml.passes, prompted.seconds, prompted.passes)
"""

from __future__ import annotations

from rcml_st.evaluation.cost import IndexingCost, indexing_cost
from rcml_st.evaluation.prompted import PromptedModel, check_prompt_template
from rcml_st.evaluation.report import EvaluationReport, MethodResult, evaluate_catalog
from rcml_st.evaluation.retrieval import (
    DIRECTIONS,
    METRICS,
    RelationRetrievalEvaluator,
    RetrievalQueries,
    RetrievalResult,
    build_hard_queries,
    build_queries,
    chance_metrics,
    evaluate_retrieval,
    sample_negatives,
    score_retrieval,
)
from rcml_st.evaluation.tables import report_tables

__all__ = [
    "DIRECTIONS",
    "METRICS",
    "EvaluationReport",
    "IndexingCost",
    "MethodResult",
    "PromptedModel",
    "RelationRetrievalEvaluator",
    "RetrievalQueries",
    "RetrievalResult",
    "build_hard_queries",
    "build_queries",
    "chance_metrics",
    "check_prompt_template",
    "evaluate_catalog",
    "evaluate_retrieval",
    "indexing_cost",
    "report_tables",
    "sample_negatives",
    "score_retrieval",
]

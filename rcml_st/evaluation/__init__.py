"""Evaluation: relation-guided retrieval, relation-type prediction, relation validity, baselines.

The protocol follows the RCML paper (see ``docs/contract/report-json.md``). The retrieval task also
exists as a sentence-transformers evaluator for training runs::

    from rcml_st.evaluation import RelationRetrievalEvaluator

    evaluator = RelationRetrievalEvaluator("test.jsonl", negatives=20, seed=0, name="test")
    metrics = evaluator(model)          # {"test_tt_hit@1": ..., "test_avg_hit@5": ..., ...}

The whole evaluation (retrieval, relation type, validity; ``clip`` and ``product`` baselines;
other models) is :func:`evaluate_catalog`; ``rcml-st evaluate`` prints and saves its report.
"""

from __future__ import annotations

from rcml_st.evaluation.report import EvaluationReport, MethodResult, evaluate_catalog
from rcml_st.evaluation.retrieval import (
    DIRECTIONS,
    METRICS,
    RelationRetrievalEvaluator,
    RetrievalQueries,
    RetrievalResult,
    build_queries,
    evaluate_retrieval,
    sample_negatives,
    score_retrieval,
)

__all__ = [
    "DIRECTIONS",
    "METRICS",
    "EvaluationReport",
    "MethodResult",
    "RelationRetrievalEvaluator",
    "RetrievalQueries",
    "RetrievalResult",
    "build_queries",
    "evaluate_catalog",
    "evaluate_retrieval",
    "sample_negatives",
    "score_retrieval",
]

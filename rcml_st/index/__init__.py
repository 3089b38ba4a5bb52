"""Qdrant storage for relation-conditioned vectors: layout, ids, safe batched writes, search.

:class:`RelationIndex` is the collection (vector level); :func:`index_catalog` and
:func:`search_index` are the catalogue-level pipeline that ``rcml-st index`` / ``rcml-st search`` run.

Example:
    >>> from rcml_st.index import RelationIndex, PointRecord, point_id
    >>> point_id("B0001", "used together for infant feeding")
    '9d9731f8-bf2c-56ce-8aa5-968665255ba6'
"""

from __future__ import annotations

from rcml_st.index.ids import NAMESPACE, point_id
from rcml_st.index.layout import QUANTIZATIONS, VECTOR_NAMES, Layout
from rcml_st.index.pipeline import (
    IndexReport,
    index_catalog,
    item_query_vector,
    query_vector,
    query_vectors,
    search_index,
    verify_index,
)
from rcml_st.index.records import Hit, PointRecord
from rcml_st.index.retry import RetryPolicy
from rcml_st.index.store import RelationIndex
from rcml_st.index.writer import BatchWriter

__all__ = [
    "NAMESPACE",
    "QUANTIZATIONS",
    "VECTOR_NAMES",
    "BatchWriter",
    "Hit",
    "IndexReport",
    "Layout",
    "PointRecord",
    "RelationIndex",
    "RetryPolicy",
    "index_catalog",
    "item_query_vector",
    "point_id",
    "query_vector",
    "query_vectors",
    "search_index",
    "verify_index",
]

"""Relations from interaction logs: items that the same customer, order or session touched.

Most catalogues come with an orders or sessions table, not ready-made "also bought" lists. This
package turns a log of (who, item, when) rows into relation edges of an rcml-st data file::

    from rcml_st.data.interactions import LogColumns, add_log_relations

    summary = add_log_relations(
        "items.jsonl", "orders.csv.gz", "items_related.jsonl",
        columns=LogColumns(user="customer_id", item="sku", time="ordered_at"),
        relation="bought by the same customers", top_k=10, score="jaccard",
    )

Modules: :mod:`~.reader` (CSV/TSV/JSONL rows), :mod:`~.cooccurrence` (out-of-core pair counting,
top k per item), :mod:`~.catalog` (adding the edges to a catalogue file).
"""

from __future__ import annotations

from rcml_st.data.interactions.catalog import LogRelationsSummary, add_log_relations
from rcml_st.data.interactions.cooccurrence import (
    SCORES,
    CooccurrenceEdges,
    CooccurrenceStats,
    cooccurrence_edges,
    describe_memory_bound,
)
from rcml_st.data.interactions.reader import (
    LOG_FORMATS,
    Interaction,
    LogColumns,
    LogStats,
    iter_log,
    parse_duration,
    parse_time,
)

__all__ = [
    "LOG_FORMATS",
    "SCORES",
    "CooccurrenceEdges",
    "CooccurrenceStats",
    "Interaction",
    "LogColumns",
    "LogRelationsSummary",
    "LogStats",
    "add_log_relations",
    "cooccurrence_edges",
    "describe_memory_bound",
    "iter_log",
    "parse_duration",
    "parse_time",
]

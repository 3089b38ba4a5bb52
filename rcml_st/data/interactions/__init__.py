"""Relations from interaction logs: items that the same customer, order or session touched.

Most catalogues come with an orders or sessions table, not ready-made "also bought" lists. This
package turns a log of (who, item, when) rows into relation edges of an rcml-st data file, with
DuckDB doing the reading (CSV, TSV, JSON Lines, gzip or not, Parquet), the per-user caps, the top
k and the writing in parallel, within a memory limit, and SciPy the pair counts (a sparse product)::

    from rcml_st.data.interactions import LogColumns, add_log_relations

    summary = add_log_relations(
        "items.jsonl", "orders/*.parquet", "items_related.jsonl",
        columns=LogColumns(user="customer_id", item="sku", time="ordered_at"),
        relation="bought by the same customers", top_k=10, score="jaccard", memory_mb=2048,
    )

Modules: :mod:`~.source` (reading a log into DuckDB), :mod:`~.cooccurrence` (pair counting,
top k per item), :mod:`~.catalog` (adding the edges to a catalogue file).
"""

from __future__ import annotations

from rcml_st.data.interactions.catalog import LogRelationsSummary, add_log_relations, describe_memory_bound
from rcml_st.data.interactions.cooccurrence import SCORES, CooccurrenceStats, count_pairs
from rcml_st.data.interactions.source import LOG_FORMATS, LogColumns, LogStats, parse_duration, read_log

__all__ = [
    "LOG_FORMATS",
    "SCORES",
    "CooccurrenceStats",
    "LogColumns",
    "LogRelationsSummary",
    "LogStats",
    "add_log_relations",
    "count_pairs",
    "describe_memory_bound",
    "parse_duration",
    "read_log",
]

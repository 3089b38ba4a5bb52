"""Relations from interaction logs: items that the same customer, order or session touched.

DuckDB reads the catalogue and the log (CSV, TSV, JSON Lines, gzip or not, Parquet), keeps each
user's recent items and each item's top k partners, and writes the result; SciPy counts the pairs::

    from rcml_st.data.interactions import LogColumns, add_log_relations

    summary = add_log_relations(
        "items.jsonl", "orders/*.parquet", "items_related.jsonl",
        columns=LogColumns(user="customer_id", item="sku", time="ordered_at"), top_k=10, score="jaccard",
    )
"""

from __future__ import annotations

from rcml_st.data.interactions.catalog import LogRelationsSummary, add_log_relations
from rcml_st.data.interactions.cooccurrence import SCORES, CooccurrenceStats, count_pairs
from rcml_st.data.interactions.source import LogColumns, LogStats, parse_duration, read_log

__all__ = ["SCORES", "CooccurrenceStats", "LogColumns", "LogRelationsSummary", "LogStats"]
__all__ += ["add_log_relations", "count_pairs", "parse_duration", "read_log"]

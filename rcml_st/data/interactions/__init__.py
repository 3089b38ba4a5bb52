"""Relations from interaction logs: items that the same customer, order or session touched.

:func:`add_log_relations` (``rcml-st prepare log``): DuckDB reads the catalogue and the log, keeps
each user's recent items and each item's top partners and writes the result; SciPy counts the pairs.
"""

from __future__ import annotations

from rcml_st.data.interactions.catalog import LogRelationsSummary, add_log_relations
from rcml_st.data.interactions.cooccurrence import SCORES, CooccurrenceStats, count_pairs
from rcml_st.data.interactions.source import LogColumns, LogStats, parse_duration, read_log

__all__ = ["SCORES", "CooccurrenceStats", "LogColumns", "LogRelationsSummary", "LogStats"]
__all__ += ["add_log_relations", "count_pairs", "parse_duration", "read_log"]

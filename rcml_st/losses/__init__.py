"""Losses for training RCML models with the sentence-transformers trainer.

Example:
    >>> from rcml_st.losses import RCMLLoss, RelationGraph
    >>> graph = RelationGraph([(0, 0, 1)], n_items=2, n_relations=1)
    >>> len(graph)
    1
"""

from __future__ import annotations

from rcml_st.losses.positives import RelationGraph
from rcml_st.losses.rcml import DEFAULT_TEMPERATURE, DIRECTIONS, RCMLLoss

__all__ = ["DEFAULT_TEMPERATURE", "DIRECTIONS", "RCMLLoss", "RelationGraph"]

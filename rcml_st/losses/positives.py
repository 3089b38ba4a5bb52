"""Which item pairs are true positives under which relation: the relation graph the loss masks with.

RCML's data is many-to-many: an item has many partners under a relation, and a batch often holds
several of them. A partner of the query that is not the pair's own positive must not serve as an
in-batch negative (it would teach the model to push true matches apart), so the loss masks every
candidate that the graph links to the query under the query's relation.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class RelationGraph(nn.Module):
    """An undirected edge set over (relation, item, item), queried in bulk on any device.

    Edges are stored as sorted int64 keys ``(relation * n + a) * n + b`` (both directions), so a
    membership test for a whole query x candidate matrix is one ``torch.isin``. It is an
    ``nn.Module`` only so that ``.to(device)`` moves the keys with the loss.

    Args:
        edges: ``(relation index, item index, item index)`` triples; direction is ignored.
        n_items: the number of items (item indices are in ``[0, n_items)``).
        n_relations: the number of relations (relation indices are in ``[0, n_relations)``).

    Example:
        >>> graph = RelationGraph([(0, 1, 2)], n_items=3, n_relations=1)
        >>> graph.contains(torch.tensor([0, 0, 0]), torch.tensor([2, 1, 0]), torch.tensor([1, 2, 2])).tolist()
        [True, True, False]
    """

    def __init__(self, edges: Iterable[tuple[int, int, int]], n_items: int, n_relations: int) -> None:
        super().__init__()
        self.n_items = int(n_items)
        self.n_relations = int(n_relations)
        if self.n_items > 0 and self.n_relations * self.n_items * self.n_items >= 2**62:
            raise ValueError(f"too many items ({n_items}) x relations ({n_relations}) for int64 edge keys")
        keys = set()
        for relation, a, b in edges:
            if not (0 <= relation < self.n_relations and 0 <= a < self.n_items and 0 <= b < self.n_items):
                raise ValueError(f"edge {(relation, a, b)} out of range")
            keys.add(self._key(relation, a, b))
            keys.add(self._key(relation, b, a))
        self.register_buffer("keys", torch.tensor(sorted(keys), dtype=torch.long), persistent=False)

    def _key(self, relation: int, a: int, b: int) -> int:
        return (relation * self.n_items + a) * self.n_items + b

    def __len__(self) -> int:
        """Number of undirected edges."""
        return int(self.keys.numel()) // 2

    def contains(self, relation: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Whether ``a`` and ``b`` are linked under ``relation``, element-wise (broadcasting).

        Args:
            relation: relation indices (long tensor).
            a: item indices.
            b: item indices.

        Returns:
            A bool tensor of the broadcast shape.
        """
        relation, a, b = torch.broadcast_tensors(relation, a, b)
        query = (relation.long() * self.n_items + a.long()) * self.n_items + b.long()
        return torch.isin(query, self.keys.to(relation.device))

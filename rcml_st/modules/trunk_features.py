"""Precomputed trunk outputs in a batch's features, and a memo of frozen relation trunks.

With frozen tower trunks, a batch can carry each item's trunk output instead of its token ids or
pixels (a trunk cache puts them there): :func:`precomputed_trunk` reads them back, and
:meth:`~rcml_st.modules.OpenCLIPInput.forward` then runs only the projections. The keys never end
in a suffix the sentence-transformers trainer groups a column's features by (``input_ids``,
``pixel_values``, ...), so one dataset column stays one group. :class:`TrunkMemo` keeps the trunk
outputs of relation descriptions (a handful, seen at every step) while the trunks are frozen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from rcml_st.modules.towers import TrunkOutput

#: Feature keys of precomputed trunk outputs, per modality: ``(pooled, tokens, mask)``.
TRUNK_KEYS: dict[str, tuple[str, str, str]] = {
    m: (f"{m}_trunk_pooled", f"{m}_trunk_tokens", f"{m}_trunk_mask") for m in ("text", "image")
}
#: Feature key, per modality, of each precomputed row's identity (its row in the trunk cache):
#: rows with the same identity are the same item's, so a merged batch computes them once.
TRUNK_ROW_KEYS: dict[str, str] = {m: f"{m}_trunk_row" for m in ("text", "image")}
#: Feature key, per modality, of where each of a batch's rows is among its distinct precomputed
#: rows, when repeats were dropped (:func:`distinct_rows`): the trunk keys then hold those only.
TRUNK_INVERSE_KEYS: dict[str, str] = {m: f"{m}_trunk_inverse" for m in ("text", "image")}


def precomputed_trunk(
    features: dict[str, Any], modality: str, dtype: torch.dtype | None = None
) -> TrunkOutput | None:
    """The precomputed trunk output of a modality's items in ``features``, or ``None``.

    Args:
        features: a batch's features.
        modality: ``"text"`` or ``"image"``.
        dtype: cast the features to this precision (e.g. half precision storage to float32).

    Example:
        >>> f = {"text_trunk_pooled": torch.ones(2, 4), "text_trunk_tokens": torch.ones(2, 3, 4),
        ...      "text_trunk_mask": torch.ones(2, 3, dtype=torch.bool)}
        >>> precomputed_trunk(f, "text").tokens.shape, precomputed_trunk(f, "image")
        (torch.Size([2, 3, 4]), None)
    """
    pooled_key, tokens_key, mask_key = TRUNK_KEYS[modality]
    if pooled_key not in features:
        return None
    pooled, tokens = features[pooled_key], features[tokens_key]
    if dtype is not None:
        pooled, tokens = pooled.to(dtype), tokens.to(dtype)
    return TrunkOutput(pooled, tokens, features[mask_key].bool())


def concat_trunks(
    parts: Sequence[TrunkOutput], rows: Sequence[torch.Tensor | None] | None = None
) -> TrunkOutput:
    """Stacks trunk outputs of several batches, padding tokens to the longest (mask ``False``).

    Args:
        parts: the trunk outputs, stacked in order.
        rows: per part, the rows to keep (a long tensor, in the order given), ``None`` for all.

    Each row is copied once, straight into the result (no per-part selection copy first).

    Example:
        >>> a = TrunkOutput(torch.ones(1, 4), torch.ones(1, 2, 4), torch.ones(1, 2, dtype=torch.bool))
        >>> b = TrunkOutput(torch.ones(2, 4), torch.ones(2, 5, 4), torch.ones(2, 5, dtype=torch.bool))
        >>> both = concat_trunks([a, b])
        >>> both.tokens.shape, both.mask.sum(dim=1).tolist()
        (torch.Size([3, 5, 4]), [2, 5, 5])
        >>> concat_trunks([a, b], [None, torch.tensor([1])]).tokens.shape
        torch.Size([2, 5, 4])
    """
    chosen = list(rows) if rows is not None else [None] * len(parts)
    if len(parts) == 1 and chosen[0] is None:
        return parts[0]
    sizes = [p.pooled.shape[0] if r is None else r.numel() for p, r in zip(parts, chosen, strict=True)]
    # Pad to the longest part that keeps a row (a part whose rows all go adds no padding).
    longest = max((p.tokens.shape[1] for p, size in zip(parts, sizes, strict=True) if size), default=0)
    dtype = parts[0].tokens.dtype
    for p in parts[1:]:
        dtype = torch.promote_types(dtype, p.tokens.dtype)
    # `index_select(out=...)` skips a temporary but is not differentiable: parts on the autograd
    # graph (trunks that train) are assigned into the result instead, which autograd tracks.
    into_place = not any(p.pooled.requires_grad or p.tokens.requires_grad for p in parts)
    first = parts[0]
    count, width = sum(sizes), first.tokens.shape[2]
    pooled = first.pooled.new_empty((count, first.pooled.shape[1]), dtype=dtype)
    tokens = first.tokens.new_empty((count, longest, width), dtype=dtype)
    mask = first.mask.new_zeros((count, longest))
    start = 0
    for p, r, size in zip(parts, chosen, sizes, strict=True):
        if size == 0:
            continue
        stop, length = start + size, p.tokens.shape[1]
        if r is None:
            pooled[start:stop] = p.pooled
            tokens[start:stop, :length] = p.tokens
            mask[start:stop, :length] = p.mask
        else:
            if into_place and p.pooled.dtype == dtype:
                torch.index_select(p.pooled, 0, r, out=pooled[start:stop])
            else:
                pooled[start:stop] = p.pooled[r]
            if into_place and length == longest and p.tokens.dtype == dtype:
                torch.index_select(p.tokens, 0, r, out=tokens[start:stop])
            else:
                tokens[start:stop, :length] = p.tokens[r]
            mask[start:stop, :length] = p.mask[r]
        if length < longest:
            tokens[start:stop, length:] = 0
        start = stop
    return TrunkOutput(pooled, tokens, mask)


def distinct_rows(
    parts: Sequence[TrunkOutput], identities: Sequence[torch.Tensor] | None
) -> tuple[TrunkOutput, torch.Tensor | None]:
    """Stacks trunk outputs (:func:`concat_trunks`) keeping each distinct row once.

    Args:
        parts: the trunk outputs of several batches.
        identities: each part's row identities (:data:`TRUNK_ROW_KEYS`); equal ones are repeats.
            ``None``: unknown, every row is kept.

    Returns:
        The distinct rows in order of first appearance, and for every row of ``parts`` (in order)
        its position among them; ``None`` instead when no row repeats (the rows are all kept).

    Example:
        >>> t = lambda *v: TrunkOutput(torch.tensor(v)[:, None], torch.tensor(v)[:, None, None],
        ...                            torch.ones(len(v), 1, dtype=torch.bool))
        >>> ids = [torch.tensor([5, 6]), torch.tensor([6, 7])]
        >>> rows, where = distinct_rows([t(5.0, 6.0), t(6.0, 7.0)], ids)
        >>> rows.pooled[:, 0].tolist(), where.tolist()
        ([5.0, 6.0, 7.0], [0, 1, 1, 2])
    """
    if identities is None:
        return concat_trunks(parts), None
    ids = torch.cat(list(identities))
    unique, inverse = torch.unique(ids, return_inverse=True)
    if unique.numel() == ids.numel():
        return concat_trunks(parts), None
    positions = torch.arange(ids.numel(), device=ids.device)
    first = torch.full_like(unique, ids.numel()).scatter_reduce_(0, inverse, positions, reduce="amin")
    firsts, order = first.sort()  # distinct rows in order of first appearance
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    kept, start = [], 0
    for part in parts:  # each part's first appearances
        size = part.pooled.shape[0]
        kept.append(firsts[(firsts >= start) & (firsts < start + size)] - start)
        start += size
    return concat_trunks(parts, kept), rank[inverse]


def expand_rows(trunk: TrunkOutput, inverse: torch.Tensor) -> TrunkOutput:
    """Every row of a batch again from its distinct rows (the inverse of :func:`distinct_rows`)."""
    return TrunkOutput(trunk.pooled[inverse], trunk.tokens[inverse], trunk.mask[inverse])


class TrunkMemo:
    """Frozen-trunk outputs of token-id rows seen before (relation descriptions), on their device.

    Args:
        limit: the most rows kept; beyond it, new rows are computed each time (not kept).

    Example:
        >>> memo = TrunkMemo()
        >>> calls = []
        >>> def trunk(ids):
        ...     calls.append(len(ids))
        ...     return TrunkOutput(ids.float(), ids.float()[:, :, None], ids != 0)
        >>> ids = torch.tensor([[5, 6, 0], [7, 0, 0]])
        >>> first, again = memo(ids, trunk), memo(ids[[1, 0]], trunk)
        >>> calls, torch.equal(again.pooled, first.pooled[[1, 0]])
        ([2], True)
    """

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._rows: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def clear(self) -> None:
        """Forgets everything (the trunk weights changed)."""
        self._rows.clear()

    def __call__(self, ids: torch.Tensor, trunk: Callable[[torch.Tensor], TrunkOutput]) -> TrunkOutput:
        """The trunk output of ``ids`` (N, L): remembered rows, and one ``trunk`` pass for the rest."""
        cpu = ids.detach().to("cpu")
        keys = [(str(ids.device), tuple(row)) for row in cpu.tolist()]
        unique = list(dict.fromkeys(key for key in keys if key not in self._rows))
        computed: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        if unique:
            rows = [keys.index(key) for key in unique]
            out = trunk(ids[rows])
            for j, key in enumerate(unique):
                length = int(out.mask[j].nonzero().max()) + 1 if bool(out.mask[j].any()) else 1
                computed[key] = (out.pooled[j], out.tokens[j, :length], out.mask[j, :length])
            # Tensors made under inference mode (encode) cannot enter a training graph later.
            if not torch.is_inference_mode_enabled() and len(self._rows) + len(computed) <= self.limit:
                self._rows.update(computed)
        parts = [computed.get(key) or self._rows[key] for key in keys]
        return concat_trunks(
            [TrunkOutput(pooled[None], tokens[None], mask[None]) for pooled, tokens, mask in parts]
        )

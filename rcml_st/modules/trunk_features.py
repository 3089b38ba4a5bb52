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


def concat_trunks(parts: Sequence[TrunkOutput]) -> TrunkOutput:
    """Stacks trunk outputs of several batches, padding tokens to the longest (mask ``False``).

    Example:
        >>> a = TrunkOutput(torch.ones(1, 4), torch.ones(1, 2, 4), torch.ones(1, 2, dtype=torch.bool))
        >>> b = TrunkOutput(torch.ones(2, 4), torch.ones(2, 5, 4), torch.ones(2, 5, dtype=torch.bool))
        >>> both = concat_trunks([a, b])
        >>> both.tokens.shape, both.mask.sum(dim=1).tolist()
        (torch.Size([3, 5, 4]), [2, 5, 5])
    """
    if len(parts) == 1:
        return parts[0]
    longest = max(p.tokens.shape[1] for p in parts)
    dtype = parts[0].tokens.dtype
    for p in parts[1:]:
        dtype = torch.promote_types(dtype, p.tokens.dtype)
    tokens, masks = [], []
    for p in parts:
        pad = longest - p.tokens.shape[1]
        if pad == 0:  # no padding copy: torch.cat below makes the only one
            tokens.append(p.tokens.to(dtype))
            masks.append(p.mask)
            continue
        tokens.append(torch.nn.functional.pad(p.tokens.to(dtype), (0, 0, 0, pad)))
        masks.append(torch.nn.functional.pad(p.mask, (0, pad), value=False))
    pooled = torch.cat([p.pooled.to(dtype) for p in parts])
    return TrunkOutput(pooled, torch.cat(tokens), torch.cat(masks))


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

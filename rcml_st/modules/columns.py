"""Several dataset columns' features as one batch, so that a loss runs the model once per step.

A pair loss gets one feature dict per column (anchors, positives) from the collator. Encoding them
in one forward pass gives the same embeddings (frozen or eval-mode towers; batch norm in training
mode sees the whole batch instead of each column), and one pass over 2B items costs less than two
over B: fewer, larger operations, and weight products of the folded attention
(:mod:`rcml_st.modules.folded_attention`) computed once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rcml_st.modules.trunk_features import (
    TRUNK_INVERSE_KEYS,
    TRUNK_KEYS,
    TRUNK_ROW_KEYS,
    distinct_rows,
    precomputed_trunk,
)

_INDEX_KEYS = ("text_index", "image_index")
_STACKED_KEYS = ("input_ids", "pixel_values")
_KNOWN = {
    *_INDEX_KEYS,
    *_STACKED_KEYS,
    "relation_tokens",
    "relation_index",
    *(key for keys in TRUNK_KEYS.values() for key in keys),
    *TRUNK_ROW_KEYS.values(),
}


def concat_columns(columns: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor] | None:
    """The features of ``columns`` as one batch (their items in order), or ``None`` if they can't be.

    Precomputed trunk rows that carry their cache identity (a trunk cache's collator adds it) and
    repeat are kept once: see :func:`~rcml_st.modules.trunk_features.distinct_rows`.

    Columns merge when they carry the same kinds of features (all token ids, or all cached trunk
    outputs, ...) of the same shapes past the batch dimension (trunk tokens are padded to the
    longest). Otherwise (one column served by a trunk cache and one not, an unknown key, different
    image sizes) the result is ``None`` and the caller encodes them one by one.

    Args:
        columns: feature dicts as :meth:`~rcml_st.modules.OpenCLIPInput.preprocess` (or a trunk
            cache's collator) makes them.

    Returns:
        One feature dict: item ``i`` of column ``c`` is item ``sum(sizes[:c]) + i``, where a
        column's size is ``len(features["relation_index"])``.

    Example:
        >>> import rcml_st
        >>> clip = rcml_st.build_model("rcml-tiny", device="cpu")[0]
        >>> a = clip.preprocess([{"text": "a pram", "relation": "r"}])
        >>> b = clip.preprocess([{"text": "a cot"}, {"text": "a mat", "relation": "s"}])
        >>> both = concat_columns([a, b])
        >>> both["text_index"].tolist(), both["relation_index"].tolist()
        ([0, 1, 2], [0, -1, 1])
    """
    if not columns or any(set(c) - _KNOWN for c in columns):
        return None
    kinds = {modality: {_kind(c, modality) for c in columns} - {None} for modality in TRUNK_KEYS}
    if any(len(found) > 1 for found in kinds.values()):
        return None  # one column from a trunk cache and one not: encode them one by one
    for key in (*_STACKED_KEYS, "relation_tokens"):
        if len({tuple(c[key].shape[1:]) for c in columns if key in c}) > 1:
            return None
    merged: dict[str, torch.Tensor] = {}
    for key in (*_STACKED_KEYS, "relation_tokens"):
        parts = [c[key] for c in columns if key in c]
        if parts:
            merged[key] = torch.cat(parts)
    index_parts: dict[str, list[torch.Tensor]] = {key: [] for key in (*_INDEX_KEYS, "relation_index")}
    items = relations = 0
    for c in columns:
        for key in _INDEX_KEYS:
            if key in c:
                index_parts[key].append(c[key] + items)
        rel = c["relation_index"]
        index_parts["relation_index"].append(torch.where(rel >= 0, rel + relations, rel))
        items += rel.shape[0]
        relations += c["relation_tokens"].shape[0]
    merged.update({key: torch.cat(parts) for key, parts in index_parts.items() if parts})
    for modality, names in TRUNK_KEYS.items():
        given = [c for c in columns if names[0] in c]
        if not given:
            continue
        trunks = [precomputed_trunk(c, modality) for c in given]
        # Rows with a cache identity that repeat (an item in both columns, or twice in one) are
        # kept once; the pooling computes them once and hands each row its copy.
        rows = [c.get(TRUNK_ROW_KEYS[modality]) for c in given]
        trunk, inverse = distinct_rows(trunks, rows if all(r is not None for r in rows) else None)  # type: ignore[arg-type]
        merged.update(zip(names, (trunk.pooled, trunk.tokens, trunk.mask), strict=True))
        if inverse is not None:
            merged[TRUNK_INVERSE_KEYS[modality]] = inverse
    return merged


def _kind(features: dict[str, torch.Tensor], modality: str) -> str | None:
    """Where a column's items of ``modality`` come from: ``"trunk"`` (a cache), ``"raw"``, or none."""
    if TRUNK_KEYS[modality][0] in features:
        return "trunk"
    raw = "input_ids" if modality == "text" else "pixel_values"
    return "raw" if raw in features and features[raw].shape[0] > 0 else None


def column_sizes(columns: Sequence[dict[str, torch.Tensor]]) -> list[int]:
    """How many items each column holds (its ``relation_index`` length).

    Example:
        >>> column_sizes([{"relation_index": torch.tensor([0, -1])}, {"relation_index": torch.tensor([0])}])
        [2, 1]
    """
    return [int(c["relation_index"].shape[0]) for c in columns]

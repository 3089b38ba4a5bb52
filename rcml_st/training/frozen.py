"""Frozen-trunk training (LiT-style): freeze the towers' trunks, cache their outputs, train the rest.

``--freeze-backbone`` freezes the trunks of both towers and trains the projections into the joint
space and the relation pooling; ``--freeze-projections`` also freezes the projections (only the
relation pooling trains). With frozen trunks every item's trunk output is computed once
(:class:`~rcml_st.training.trunk_cache.TrunkCache`) and served by the data collator, so a step
costs the projections, the pooling and the loss only.

With a ``SentenceTransformerTrainer`` you set up yourself::

    freeze_backbone(model)
    collator = cache_frozen_trunks(model, train_dataset, "runs/mine/trunk-cache")
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_dataset,
                                         loss=loss, data_collator=collator)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rcml_st.modules import rcml_modules
from rcml_st.training.trunk_cache import DEFAULT_MEMORY_GB, TrunkCache, dataset_items
from rcml_st.training.trunk_collator import TrunkCacheCollator


def freeze_backbone(model: Any, *, projections: bool = False) -> None:
    """Freezes the towers' trunks of an RCML model (and, with ``projections``, the projections too).

    Args:
        model: an RCML ``SentenceTransformer``.
        projections: also freeze the projections into the joint space: only the relation pooling
            trains (what ``--freeze-backbone`` did before 0.2).

    Example:
        >>> import rcml_st
        >>> model = rcml_st.build_model("rcml-tiny", device="cpu")
        >>> freeze_backbone(model)
        >>> sorted({n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad})
        ['0', '1']
        >>> freeze_backbone(model, projections=True)
        >>> sorted({n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad})
        ['1']
    """
    clip, _ = rcml_modules(model)
    clip.freeze_trunks()
    if projections:  # the whole backbone, as --freeze-backbone did before 0.2
        clip.model.requires_grad_(False)


def cache_frozen_trunks(
    model: Any,
    dataset: Any,
    folder: str | os.PathLike[str] | None = None,
    *,
    columns: Sequence[str] | None = None,
    dtype: str = "float32",
    memory_gb: float = DEFAULT_MEMORY_GB,
    batch_size: int = 64,
    workers: int = 0,
    log: Callable[[str], None] | None = None,
) -> TrunkCacheCollator:
    """Computes the trunk outputs of a training dataset's items once; returns the collator serving them.

    Args:
        model: an RCML ``SentenceTransformer`` whose trunks are frozen (:func:`freeze_backbone`).
        dataset: the training dataset (item columns of dicts ``{"text", "image", "relation"}``
            or of strings, as :func:`~rcml_st.training.build_pairs` makes).
        folder: where the cache lives (``folder/<fingerprint>``), reused by later runs on the
            same data and weights; ``None``: a temporary folder, deleted with the collator.
        columns: the item columns (default: all but the label columns).
        dtype: storage precision, ``"float32"`` (exact) or ``"float16"`` (half the size).
        memory_gb: read the cache into memory up to this size (GiB per process), else memory-map it.
        batch_size: items per trunk pass while building.
        workers: image-decoding processes while building.
        log: receives a line saying what was built or reused.

    Returns:
        A :class:`~rcml_st.training.trunk_collator.TrunkCacheCollator`: pass it as the trainer's
        ``data_collator``.

    Raises:
        ValueError: when the model's trunks are not frozen (cached outputs would go stale).

    Example:
        >>> import rcml_st
        >>> model = rcml_st.build_model("rcml-tiny", device="cpu")
        >>> freeze_backbone(model)
        >>> rows = {"anchor": [{"text": "red bib", "image": None, "relation": "r"}],
        ...         "positive": [{"text": "red cup", "image": None, "relation": "r"}]}
        >>> collator = cache_frozen_trunks(model, rows)
        >>> collator.cache.text_count
        2
    """
    clip, _ = rcml_modules(model)
    if not clip.trunks_frozen:
        raise ValueError(
            "freeze the trunks first (freeze_backbone(model)): a cache of trainable trunks goes stale"
        )
    texts, images = dataset_items(dataset, columns)
    temporary = folder is None
    root = Path(tempfile.mkdtemp(prefix="rcml-trunk-cache-")) if temporary else Path(folder)
    cache = TrunkCache.build(
        clip,
        texts,
        images,
        root,
        dtype=dtype,
        memory_gb=memory_gb,
        batch_size=batch_size,
        workers=workers,
        log=log,
    )
    collator = TrunkCacheCollator(clip, cache)
    if temporary:
        weakref.finalize(collator, shutil.rmtree, root, True)
    return collator

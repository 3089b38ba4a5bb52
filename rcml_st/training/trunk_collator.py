"""A data collator that serves frozen trunk outputs from a :class:`~rcml_st.training.trunk_cache.TrunkCache`.

The sentence-transformers collator calls ``preprocess`` once per dataset column. This one first
tries the cache: when every text and image of the column is cached, the column's features carry
the trunk outputs (``text_trunk_pooled``, ``text_trunk_tokens``, ``text_trunk_mask`` and the same
for ``image_trunk_*``) instead of token ids and pixels, and
:meth:`~rcml_st.modules.OpenCLIPInput.forward` runs only the projections. Otherwise (an item the
cache lacks, a prompt, an in-memory image) it falls back to the model's own ``preprocess``, so the
result is the same either way, only slower. No key ends in a suffix the trainer groups columns
by except ``input_ids`` (kept, empty), so one column stays one group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from sentence_transformers.base.data_collator import BaseDataCollator

from rcml_st.modules.inputs import parse_batch
from rcml_st.modules.towers import TRUNK_KEYS
from rcml_st.training.trunk_cache import TrunkCache, image_key


class CachedPreprocess:
    """``preprocess`` for training columns: trunk outputs from the cache, else the model's own.

    Args:
        clip: the model's :class:`~rcml_st.modules.OpenCLIPInput` (trunks frozen).
        cache: the :class:`TrunkCache` of the training data.

    Attributes:
        hits: columns served from the cache so far.
        misses: columns that fell back to the model's preprocessing.
    """

    def __init__(self, clip: Any, cache: TrunkCache) -> None:
        self.clip = clip
        self.cache = cache
        self.hits = 0
        self.misses = 0

    def __call__(
        self, inputs: list[Any], prompt: str | None = None, **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        features = None if prompt else self.cached(inputs)
        if features is None:
            self.misses += 1
            return self.clip.preprocess(inputs, prompt=prompt, **kwargs)
        self.hits += 1
        return features

    def cached(self, inputs: Sequence[Any]) -> dict[str, torch.Tensor] | None:
        """The column's features from the cache, or ``None`` when something is not cached."""
        try:
            items = parse_batch(inputs, load_images=False)
        except ValueError:
            return None  # the model's preprocess reports it
        features = self.clip.index_features(items)
        features["input_ids"] = torch.zeros((0, self.cache.context_length), dtype=torch.long)
        texts = [item.text for item in items if item.text is not None]
        images = [image_key(item.image) for item in items if item.image is not None]
        for modality, keys, gather in (
            ("text", texts, self.cache.text_trunk),
            ("image", images, self.cache.image_trunk),
        ):
            if keys:
                trunk = gather(keys)
                if trunk is None:
                    return None
                features.update(
                    zip(TRUNK_KEYS[modality], (trunk.pooled, trunk.tokens, trunk.mask), strict=True)
                )
        return features


class TrunkCacheCollator(BaseDataCollator):
    """The sentence-transformers collator with :class:`CachedPreprocess` as its ``preprocess_fn``.

    Pass it as ``data_collator=`` to a ``SentenceTransformerTrainer`` whose model has frozen
    trunks (see :func:`~rcml_st.training.frozen.cache_frozen_trunks`).

    Example:
        >>> import rcml_st, tempfile
        >>> from rcml_st.training.trunk_cache import TrunkCache
        >>> model = rcml_st.build_model("rcml-tiny", device="cpu")
        >>> cache = TrunkCache.build(model[0], ["a red pram"], [], tempfile.mkdtemp())
        >>> collate = TrunkCacheCollator(model[0], cache)
        >>> batch = collate([{"anchor": {"text": "a red pram", "image": None, "relation": "r"}}])
        >>> sorted(k.removeprefix("anchor_text_") for k in batch if "trunk" in k)
        ['trunk_mask', 'trunk_pooled', 'trunk_tokens']
    """

    def __init__(self, clip: Any, cache: TrunkCache, **kwargs: Any) -> None:
        preprocess: Callable[..., dict[str, torch.Tensor]] = CachedPreprocess(clip, cache)
        super().__init__(preprocess_fn=preprocess, **kwargs)
        self.cache = cache

    @property
    def cached_preprocess(self) -> CachedPreprocess:
        """The preprocessing function (its ``hits`` / ``misses`` count the columns)."""
        return self.preprocess_fn  # type: ignore[return-value]

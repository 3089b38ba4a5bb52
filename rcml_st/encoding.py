"""Encoding N items under R relations with one backbone pass per item.

The expensive part of RCML is the backbone (the CLIP towers); the relation-conditioned pooling is
one attention over tokens the backbone already produced. :func:`encode_relations` therefore runs
the backbone once per item and the pooling once per batch with all R relations as R attention
queries at once, giving R x N embeddings for about the price of N. Indexing and evaluation are
built on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import batch_to_device
from tqdm.auto import tqdm

from rcml_st.modules import rcml_modules

MODALITIES = ("item", "text", "image")


@dataclass
class RelationEmbeddings:
    """Embeddings of N items under R relations.

    Attributes:
        relations: the R relations (``None`` means the plain, relation-agnostic embedding).
        item: fused item vectors (R, N, D), float32, unit length.
        text: text vectors (R, N, D), zeros where the item has no text (or ``None`` if not asked).
        image: image vectors (R, N, D), zeros where the item has no image (or ``None``).
        has_text: (N,) bool.
        has_image: (N,) bool.
    """

    relations: list[str | None]
    item: np.ndarray | None
    text: np.ndarray | None
    image: np.ndarray | None
    has_text: np.ndarray
    has_image: np.ndarray

    def get(self, modality: str) -> np.ndarray:
        """The (R, N, D) array of ``"item"``, ``"text"`` or ``"image"`` (raises if not encoded)."""
        value = getattr(self, modality, None) if modality in MODALITIES else None
        if value is None:
            raise KeyError(f"modality {modality!r} was not encoded (asked: {self._encoded()})")
        return value

    def relation_position(self, relation: str | None) -> int:
        """Index of a relation along the first axis."""
        return self.relations.index(relation)

    def _encoded(self) -> list[str]:
        return [m for m in MODALITIES if getattr(self, m) is not None]


def _plain_item(item: Any, index: int) -> Any:
    if isinstance(item, dict) and item.get("relation") is not None:
        raise ValueError(
            f"item {index}: has its own 'relation'; encode_relations takes the relations as an argument"
        )
    return item


def encode_relations(
    model: SentenceTransformer,
    items: Sequence[Any],
    relations: Sequence[str | None],
    *,
    batch_size: int = 32,
    modalities: Sequence[str] = MODALITIES,
    show_progress_bar: bool = False,
    progress_description: str = "Encoding",
) -> RelationEmbeddings:
    """Encodes every item under every relation, running the backbone once per item.

    Matches ``model.encode(items, relation=r)`` for each ``r`` (to float tolerance).

    Args:
        model: an RCML ``SentenceTransformer`` (see :func:`rcml_st.build_model` / :func:`rcml_st.load`).
        items: strings, PIL images, image paths or dicts with ``text`` and/or ``image``.
        relations: relation descriptions; ``None`` asks for the plain backbone embedding.
        batch_size: items per backbone batch.
        modalities: which of ``"item"``, ``"text"``, ``"image"`` to return.
        show_progress_bar: show a progress bar over items.
        progress_description: the progress bar's label.

    Returns:
        :class:`RelationEmbeddings` with (R, N, D) float32 arrays.

    Example:
        >>> out = encode_relations(model, [{"text": "nursing pillow"}, "bottle warmer"],  # doctest: +SKIP
        ...                        ["used together for infant feeding", "matches in colour"])
        >>> out.item.shape  # doctest: +SKIP
        (2, 2, 512)
    """
    unknown = set(modalities) - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}; choose from {list(MODALITIES)}")
    relations = list(relations)
    for relation in relations:
        if relation is not None and (not isinstance(relation, str) or not relation.strip()):
            raise ValueError(f"relations must be non-empty strings or None, got {relation!r}")
    clip, pooling = rcml_modules(model)
    n, r, dim = len(items), len(relations), clip.get_embedding_dimension()
    outputs = {m: np.zeros((r, n, dim), dtype=np.float32) for m in modalities}
    has_text = np.zeros(n, dtype=bool)
    has_image = np.zeros(n, dtype=bool)
    named = [i for i, rel in enumerate(relations) if rel is not None]
    plain = [i for i, rel in enumerate(relations) if rel is None]

    was_training = model.training
    model.eval()
    device = model.device
    try:
        with torch.inference_mode():
            queries = clip.encode_relation_texts([relations[i] for i in named]).to(device)
            bar = tqdm(total=n, desc=progress_description, unit="item", disable=not show_progress_bar)
            for start in range(0, n, batch_size):
                chunk = [
                    _plain_item(item, start + k) for k, item in enumerate(items[start : start + batch_size])
                ]
                features = batch_to_device(clip.preprocess(chunk), device)
                features = clip(features)
                # The named relations in one pass, the plain embedding in another, side by side.
                parts = [(named, pooling.embed(features, queries))] if named else []
                if plain or not named:
                    parts.append((plain, pooling.embed(features, None)))
                fused = {"has_text": parts[0][1]["has_text"], "has_image": parts[0][1]["has_image"]}
                for key in ("sentence_embedding", "text_embedding", "image_embedding"):
                    fused[key] = torch.zeros((len(chunk), r, dim), device=device, dtype=torch.float32)
                    for columns, out in parts:
                        fused[key][:, columns] = out[key].float()
                stop = start + len(chunk)
                for modality in modalities:
                    key = "sentence_embedding" if modality == "item" else f"{modality}_embedding"
                    outputs[modality][:, start:stop] = fused[key].transpose(0, 1).cpu().numpy()
                has_text[start:stop] = fused["has_text"].cpu().numpy()
                has_image[start:stop] = fused["has_image"].cpu().numpy()
                bar.update(len(chunk))
            bar.close()
    finally:
        model.train(was_training)
    return RelationEmbeddings(
        relations=relations,
        item=outputs.get("item"),
        text=outputs.get("text"),
        image=outputs.get("image"),
        has_text=has_text,
        has_image=has_image,
    )

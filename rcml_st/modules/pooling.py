"""Relation-conditioned pooling: the heart of RCML.

For an item and a relation ``r``, per modality ``m`` (text, image)::

    pooled_m = MultiHeadAttention(query = e_r, keys = values = tokens_m)
    z_m      = normalize(beta * normalize(global_m) + (1 - beta) * normalize(pooled_m))

where ``e_r`` is the relation description's CLIP text embedding, ``tokens_m`` the item's token
features projected to the joint space and ``global_m`` CLIP's own embedding of the item. One
attention block (Q, K, V, O projections) is shared by both modalities: for a 512-wide space it
has 1,050,624 parameters, the size difference the RCML paper reports over CLIP.

Optionally (``relation_gate=True``, ``rcml-st train --relation-gate``), the mix is then scaled
per dimension by a gate computed from the relation, ``z_m = normalize(mixed * 2 sigmoid(W e_r + b))``
(a conditional-similarity mask: each relation weighs the joint space's dimensions its own way,
global embedding included). ``W`` and ``b`` start at zero, so the gate starts as the identity and
an untrained gated model equals the paper's.

``beta = 1`` gives CLIP's embeddings exactly. An item with both modalities gets the fused vector
``normalize(z_text + z_image)`` as its ``sentence_embedding``; ``text_embedding`` and
``image_embedding`` stay in the output features (zeros where the item lacks that modality, see
``has_text`` / ``has_image``). Items without a relation get the plain (normalized) backbone
embeddings.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.base.modules import Module
from torch import nn

from rcml_st.modules.folded_attention import SharedProducts, TokenProjection, folded_attention

DEFAULT_BETA = 0.5
"""Default mix of global and pooled embedding. The paper finds results stable for beta in
[0, 0.6] and poor at 1 (plain CLIP); 0.5 keeps half of CLIP's embedding, so a freshly
initialised pooling head starts from a sensible point when fine-tuning a pretrained backbone."""


class RelationPooling(Module):
    """Pools an item's token features with its relation embedding as the attention query.

    Args:
        embedding_dimension: width of the joint embedding space (the backbone's ``embed_dim``).
        num_heads: attention heads; must divide ``embedding_dimension``.
        beta: weight of the global embedding in the mix, in [0, 1] (default 0.5).
        relations: the relation vocabulary the model was trained on (kept with the model).
        relation_gate: add the per-relation dimension gate (see the module docstring).

    Example:
        >>> pooling = RelationPooling(512)
        >>> sum(p.numel() for p in pooling.parameters())
        1050624
    """

    config_keys = ["embedding_dimension", "num_heads", "beta", "relations", "relation_gate"]

    def __init__(
        self,
        embedding_dimension: int,
        num_heads: int = 8,
        beta: float = DEFAULT_BETA,
        relations: list[str] | None = None,
        relation_gate: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        if embedding_dimension % num_heads:
            raise ValueError(
                f"num_heads ({num_heads}) must divide the embedding dimension ({embedding_dimension})"
            )
        self.embedding_dimension = int(embedding_dimension)
        self.num_heads = int(num_heads)
        self.beta = float(beta)
        self.relations = list(relations or [])
        # Set by training losses (not saved): forward then also embeds every item under every
        # relation of the batch, as ``*_embedding_all`` (B, U, D), for in-batch negatives that are
        # encoded under the anchor's relation.
        self.output_all_relations = False
        self.attention = nn.MultiheadAttention(self.embedding_dimension, self.num_heads, batch_first=True)
        # Weight products of the folded attention, shared by the columns of one training step
        # while a loss holds its scope open (see RCMLLoss); not saved.
        self.shared_products = SharedProducts()
        self.relation_gate = False
        self.gate: nn.Linear | None = None
        if relation_gate:
            self.enable_relation_gate()

    def enable_relation_gate(self) -> None:
        """Adds the per-relation dimension gate, initialised to the identity (a no-op until trained)."""
        if self.gate is None:
            weight = self.attention.in_proj_weight
            self.gate = nn.Linear(self.embedding_dimension, self.embedding_dimension, device=weight.device)
            nn.init.zeros_(self.gate.weight)
            nn.init.zeros_(self.gate.bias)
        self.relation_gate = True

    def get_embedding_dimension(self) -> int:
        """The output embedding width (same as the backbone's)."""
        return self.embedding_dimension

    def condition(
        self,
        global_: torch.Tensor,
        tokens: torch.Tensor,
        mask: torch.Tensor,
        queries: torch.Tensor,
        projection: TokenProjection | None = None,
        inverse: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Conditioned embeddings of N items under Q relations each.

        Args:
            global_: the items' global embeddings (N, D).
            tokens: their token features (N, L, D), or with ``projection`` the trunk tokens
                (N, L, C) before the head's affine map into the joint space.
            mask: which tokens are real (N, L), bool.
            queries: relation embeddings (N, Q, D), or (Q, D) shared by every item.
            projection: the head's ``(weight (D, C), bias)``; the attention then folds it in
                (:func:`~rcml_st.modules.folded_attention.folded_attention`), same result.
            inverse: with ``projection``, ``tokens`` may hold the distinct items only: item n's
                tokens are then ``tokens[inverse[n]]`` (shared queries pool each once).

        Returns:
            Unit vectors (N, Q, D): item n under relation q.
        """
        if tokens.shape[0] == 0:  # attention rejects an empty batch; no items, no embeddings
            return global_.new_zeros((0, queries.shape[-2], global_.shape[-1]))
        plain = F.normalize(global_, dim=-1).unsqueeze(1)
        if self.beta == 1.0:
            return plain.expand(-1, queries.shape[-2], -1)
        if projection is not None:
            if inverse is not None and queries.dim() == 3:  # a query per item: each item's own tokens
                tokens, mask, inverse = tokens[inverse], mask[inverse], None
            pooled = folded_attention(self.attention, queries, tokens, mask, projection, self.shared_products)
            if inverse is not None:
                pooled = pooled.index_select(0, inverse)
        else:
            if queries.dim() == 2:
                queries = queries.unsqueeze(0).expand(tokens.shape[0], -1, -1)
            pooled, _ = self.attention(
                queries.to(tokens.dtype), tokens, tokens, key_padding_mask=~mask, need_weights=False
            )
        mixed = self.beta * plain + (1.0 - self.beta) * F.normalize(pooled, dim=-1)
        if self.gate is not None:
            mixed = mixed * (2.0 * torch.sigmoid(self.gate(queries.to(mixed.dtype))))
        return F.normalize(mixed, dim=-1)

    def modality_embeddings(
        self, features: dict[str, torch.Tensor], modality: str, queries: torch.Tensor | None
    ) -> torch.Tensor | None:
        """One modality's embeddings for the items that have it: (n, Q, D), or (n, 1, D) plain.

        ``queries`` is (n, Q, D) or (Q, D); ``None`` gives the plain backbone embedding.
        """
        if f"{modality}_global" not in features:
            return None
        global_ = features[f"{modality}_global"]
        if queries is None:
            return F.normalize(global_, dim=-1).unsqueeze(1)
        mask = features[f"{modality}_token_mask"]
        if f"{modality}_token_source" in features:  # frozen trunk tokens, not projected
            projection = (features[f"{modality}_token_weight"], features.get(f"{modality}_token_bias"))
            source, inverse = features[f"{modality}_token_source"], features.get(f"{modality}_token_inverse")
            return self.condition(global_, source, mask, queries, projection, inverse)
        return self.condition(global_, features[f"{modality}_tokens"], mask, queries)

    @staticmethod
    def fuse(
        batch_size: int,
        text: torch.Tensor | None,
        text_index: torch.Tensor,
        image: torch.Tensor | None,
        image_index: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """Scatters per-modality embeddings (n, Q, D) into batch order and fuses them.

        Returns ``text_embedding``, ``image_embedding``, ``sentence_embedding`` of shape
        (B, Q, D) and the ``has_text`` / ``has_image`` masks (B,).
        """
        ref = text if text is not None else image
        assert ref is not None, "an item has text or an image"
        shape = (batch_size, ref.shape[1], ref.shape[2])
        has_text = torch.zeros(batch_size, dtype=torch.bool, device=ref.device)
        has_image = torch.zeros(batch_size, dtype=torch.bool, device=ref.device)
        text_out = ref.new_zeros(shape)
        image_out = ref.new_zeros(shape)
        if text is not None:
            text_out = text_out.index_copy(0, text_index, text)
            has_text[text_index] = True
        if image is not None and image_index is not None:
            image_out = image_out.index_copy(0, image_index, image)
            has_image[image_index] = True
        item = F.normalize(text_out + image_out, dim=-1)
        return {
            "text_embedding": text_out,
            "image_embedding": image_out,
            "sentence_embedding": item,
            "has_text": has_text,
            "has_image": has_image,
        }

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Embeds every item under its own relation (or plainly, when it has none)."""
        relation_index = features["relation_index"]
        relation_embedding = features["relation_embedding"]
        batch_size = relation_index.shape[0]
        outputs: dict[str, torch.Tensor | None] = {}
        for modality, index_key in (("text", "text_index"), ("image", "image_index")):
            if f"{modality}_global" not in features:
                outputs[modality] = None
                continue
            global_ = features[f"{modality}_global"]
            plain = F.normalize(global_, dim=-1)
            rel = relation_index[features[index_key]]
            if relation_embedding.shape[0] == 0 or bool((rel < 0).all()):
                outputs[modality] = plain.unsqueeze(1)
                continue
            queries = relation_embedding[rel.clamp(min=0)].unsqueeze(1)
            conditioned = self.modality_embeddings(features, modality, queries)[:, 0]
            outputs[modality] = torch.where((rel >= 0)[:, None], conditioned, plain).unsqueeze(1)
        fused = self.fuse(
            batch_size, outputs["text"], features["text_index"], outputs["image"], features.get("image_index")
        )
        if self.output_all_relations and relation_embedding.shape[0] > 0:
            every = {m: self.modality_embeddings(features, m, relation_embedding) for m in ("text", "image")}
            fused_all = self.fuse(
                batch_size, every["text"], features["text_index"], every["image"], features.get("image_index")
            )
            for name in ("text_embedding", "image_embedding", "sentence_embedding"):
                features[f"{name}_all"] = fused_all[name]
        # Keep the outputs (and the inputs' index features), drop the heavy token tensors.
        heavy = ("tokens", "token_mask", "token_source", "token_weight", "token_bias", "token_inverse")
        for key in [f"{m}_{name}" for m in ("text", "image") for name in heavy] + ["pixel_values"]:
            features.pop(key, None)
        features.update({name: value[:, 0] if value.dim() == 3 else value for name, value in fused.items()})
        return features

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Writes ``config.json`` and ``model.safetensors``."""
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=True)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> RelationPooling:
        """Loads config and weights from a saved model's module folder."""
        hub_kwargs = {
            key: kwargs[key]
            for key in ("token", "cache_folder", "revision", "local_files_only")
            if key in kwargs
        }
        config = cls.load_config(model_name_or_path, subfolder=subfolder, **hub_kwargs)
        module = cls(**config)
        cls.load_torch_weights(model_name_or_path, subfolder=subfolder, model=module, **hub_kwargs)
        return module

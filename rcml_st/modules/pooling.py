"""Relation-conditioned pooling: the heart of RCML.

For an item and a relation ``r``, per modality ``m`` (text, image)::

    pooled_m = MultiHeadAttention(query = e_r, keys = values = tokens_m)
    z_m      = normalize(beta * normalize(global_m) + (1 - beta) * normalize(pooled_m))

where ``e_r`` is the relation description's CLIP text embedding, ``tokens_m`` the item's token
features projected to the joint space and ``global_m`` CLIP's own embedding of the item.
:meth:`RelationPooling.condition` is the one place this is computed: ``model.encode`` (``forward``,
each item under its own relation), the training loss (``forward(all_relations=True)``) and
``encode_relations`` / the evaluation (:meth:`RelationPooling.embed`) all call it. One
attention block (Q, K, V, O projections) is shared by both modalities: for a 512-wide space it
has 1,050,624 parameters, the size difference the RCML paper reports over CLIP.

Optionally (``relation_gate=True``, ``rcml-st train --relation-gate``), the mix is then scaled
per dimension by a gate computed from the relation, ``z_m = normalize(mixed * 2 sigmoid(W e_r + b))``
(a conditional-similarity mask: each relation weighs the joint space's dimensions its own way,
global embedding included). ``W`` and ``b`` start at zero, so the gate starts as the identity and
an untrained gated model equals the paper's.

Optionally (``relation_adapter=RANK``, ``rcml-st train --relation-adapter RANK``), the relation also
acts on the features: each modality's mix goes through a low-rank residual whose scales are
computed from the relation's embedding, ``mixed + U_m diag(s_m(e_r)) V_m^T mixed``
(:class:`RelationAdapter`; linear, so it acts on the global and the pooled vector alike). ``U_m``
starts at zero, so an untrained adapted model equals the paper's exactly; being a function of
``e_r``, not a table of relations, it serves relation descriptions never seen in training. With
``beta = 1`` the adapter alone conditions CLIP's global embedding.

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

DEFAULT_BETA = 0.5
"""Default mix of global and pooled embedding. The paper finds results stable for beta in
[0, 0.6] and poor at 1 (plain CLIP); 0.5 keeps half of CLIP's embedding, so a freshly
initialised pooling head starts from a sensible point when fine-tuning a pretrained backbone."""

MODALITIES = ("text", "image")


class RelationPooling(Module):
    """Pools an item's token features with its relation embedding as the attention query.

    Args:
        embedding_dimension: width of the joint embedding space (the backbone's ``embed_dim``).
        num_heads: attention heads; must divide ``embedding_dimension``.
        beta: weight of the global embedding in the mix, in [0, 1] (default 0.5).
        relations: the relation vocabulary the model was trained on (kept with the model).
        relation_gate: add the per-relation dimension gate (see the module docstring).
        relation_adapter: rank of the relation adapter (see the module docstring); 0: none.

    ``forward`` embeds every item under its own relation (``model.encode``); called with
    ``all_relations=True`` (a forward keyword sentence-transformers passes on to this module)
    it embeds every item under every relation of the batch instead, as ``*_embedding_all``
    (B, U, D): what the training loss scores in-batch negatives with.

    Example:
        >>> pooling = RelationPooling(512)
        >>> sum(p.numel() for p in pooling.parameters())
        1050624
    """

    config_keys = [
        "embedding_dimension",
        "num_heads",
        "beta",
        "relations",
        "relation_gate",
        "relation_adapter",
    ]
    forward_kwargs = {"all_relations"}

    def __init__(
        self,
        embedding_dimension: int,
        num_heads: int = 8,
        beta: float = DEFAULT_BETA,
        relations: list[str] | None = None,
        relation_gate: bool = False,
        relation_adapter: int = 0,
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
        self.attention = nn.MultiheadAttention(self.embedding_dimension, self.num_heads, batch_first=True)
        self.relation_gate = False
        self.gate: nn.Linear | None = None
        if relation_gate:
            self.enable_relation_gate()
        self.relation_adapter = 0
        self.adapter: nn.ModuleDict | None = None
        if relation_adapter:
            self.enable_relation_adapter(relation_adapter)

    def enable_relation_adapter(self, rank: int) -> None:
        """Adds one relation adapter of rank ``rank`` per modality, initialised to the identity."""
        if self.adapter is None:
            device = self.attention.in_proj_weight.device
            self.adapter = nn.ModuleDict(
                {m: RelationAdapter(self.embedding_dimension, rank).to(device) for m in MODALITIES}
            )
        self.relation_adapter = int(rank)

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
        modality: str = "text",
    ) -> torch.Tensor:
        """The module docstring's formula: N items, each under Q relations.

        Args:
            global_: the items' global embeddings (N, D).
            tokens: their token features in the joint space (N, L, D).
            mask: which tokens are real (N, L), bool.
            queries: relation embeddings (N, Q, D), or (Q, D) shared by every item.
            modality: ``"text"`` or ``"image"``: whose relation adapter applies.

        Returns:
            Unit vectors (N, Q, D): item n under relation q.
        """
        if queries.dim() == 2:
            queries = queries.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        adapter = None if self.adapter is None else self.adapter[modality]
        plain = F.normalize(global_, dim=-1).unsqueeze(1)
        if self.beta == 1.0 or tokens.shape[0] == 0:  # CLIP's own; attention rejects an empty batch
            mixed = plain.expand(-1, queries.shape[-2], -1)
            if adapter is None or tokens.shape[0] == 0:
                return mixed
            return F.normalize(adapter(mixed, queries.to(mixed.dtype)), dim=-1)
        pooled, _ = self.attention(
            queries.to(tokens.dtype), tokens, tokens, key_padding_mask=~mask, need_weights=False
        )
        mixed = self.beta * plain + (1.0 - self.beta) * F.normalize(pooled, dim=-1)
        if self.gate is not None:
            mixed = mixed * (2.0 * torch.sigmoid(self.gate(queries.to(mixed.dtype))))
        if adapter is not None:
            mixed = adapter(mixed, queries.to(mixed.dtype))
        return F.normalize(mixed, dim=-1)

    def embed(
        self, features: dict[str, torch.Tensor], queries: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """Every item of a batch under every relation of ``queries`` (Q, D), or plainly (``None``).

        Args:
            features: :meth:`~rcml_st.modules.OpenCLIPInput.forward`'s output (B items).
            queries: relation embeddings (Q, D); ``None`` gives the plain backbone embeddings.

        Returns:
            ``text_embedding``, ``image_embedding`` and the fused ``sentence_embedding``, each
            (B, Q, D) ((B, 1, D) plain), zeros where an item lacks the modality, and the
            ``has_text`` / ``has_image`` masks (B,).
        """
        parts = {}
        for modality in MODALITIES:
            if f"{modality}_global" not in features:
                continue
            global_ = features[f"{modality}_global"]
            if queries is None:
                parts[modality] = F.normalize(global_, dim=-1).unsqueeze(1)
            else:
                tokens, mask = features[f"{modality}_tokens"], features[f"{modality}_token_mask"]
                parts[modality] = self.condition(global_, tokens, mask, queries, modality)
        # Scattered into batch order: zeros where an item lacks the modality.
        ref, batch_size = next(iter(parts.values())), features["relation_index"].shape[0]
        out: dict[str, torch.Tensor] = {}
        for modality in MODALITIES:
            embedding = ref.new_zeros((batch_size, *ref.shape[1:]))
            has = torch.zeros(batch_size, dtype=torch.bool, device=ref.device)
            if modality in parts:
                index = features[f"{modality}_index"]
                embedding, has[index] = embedding.index_copy(0, index, parts[modality]), True
            out[f"{modality}_embedding"], out[f"has_{modality}"] = embedding, has
        out["sentence_embedding"] = F.normalize(out["text_embedding"] + out["image_embedding"], dim=-1)
        return out

    def forward(self, features: dict[str, Any], all_relations: bool = False, **kwargs: Any) -> dict[str, Any]:
        """Embeds every item under its own relation (plainly when it has none), or under all of them.

        Args:
            features: :meth:`~rcml_st.modules.OpenCLIPInput.forward`'s output.
            all_relations: embed every item under every relation of the batch instead, as
                ``text_embedding_all``, ``image_embedding_all``, ``sentence_embedding_all`` (B, U, D).
        """
        relations = features["relation_embedding"]
        every = self.embed(features, relations if relations.shape[0] else None)  # (B, U or 1, D)
        if all_relations:
            outputs = {f"{k}_all" if k.endswith("embedding") else k: v for k, v in every.items()}
        else:  # each item's own relation out of the U (the U relations are the batch's own)
            index = features["relation_index"]
            rows = torch.arange(index.shape[0], device=index.device)
            plain = self.embed(features, None) if relations.shape[0] and bool((index < 0).any()) else None
            outputs = dict(every)
            for key in ("text_embedding", "image_embedding", "sentence_embedding"):
                outputs[key] = every[key][rows, index.clamp(min=0)]
                if plain is not None:  # items without a relation: the plain backbone embeddings
                    outputs[key] = torch.where((index >= 0)[:, None], outputs[key], plain[key][:, 0])
        # Keep the outputs (and the inputs' index features), drop the heavy token tensors.
        for key in [f"{m}_{name}" for m in MODALITIES for name in ("tokens", "token_mask")] + [
            "pixel_values"
        ]:
            features.pop(key, None)
        features.update(outputs)
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


class RelationAdapter(nn.Module):
    """``x + U diag(s(e_r)) V^T x``: a low-rank residual whose scales come from the relation's embedding.

    ``s`` is a linear map of the (normalized) relation embedding, so a relation description never
    seen in training gets its own scales too. Initialised as LoRA is: ``V`` with orthonormal rows
    and ``s`` at unit scale (each relation scales the subspace its own way from the first step),
    ``U`` at zero, so the adapter starts as the identity and ``U``'s gradient is not small.

    Args:
        dim: the joint space's width.
        rank: the residual's rank (the width of ``U`` and ``V``).

    Example:
        >>> adapter = RelationAdapter(8, rank=2)
        >>> x, relation = torch.randn(3, 1, 8), torch.randn(3, 1, 8)
        >>> torch.equal(adapter(x, relation), x)
        True
    """

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)
        self.up = nn.Linear(rank, dim, bias=False)
        self.scale = nn.Linear(dim, rank)
        nn.init.orthogonal_(self.down.weight)
        nn.init.zeros_(self.up.weight)
        nn.init.normal_(self.scale.weight)  # s(e_r) of unit scale for a unit e_r
        nn.init.zeros_(self.scale.bias)

    def forward(self, x: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        """``x`` (..., D) under ``relation`` (..., D), broadcast against each other."""
        return x + self.up(self.down(x) * self.scale(F.normalize(relation, dim=-1)))

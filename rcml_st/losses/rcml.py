"""The RCML loss: relation-conditioned InfoNCE over text and image, across and within modalities.

A training batch holds B pairs ``(anchor_i, positive_i, r_i)``: an item's own text and image
(intra-sample, under a generic "same item" relation) or two items linked by relation ``r_i``
(inter-sample). Every embedding is conditioned on the pair's relation, and every in-batch
candidate is scored *under the query's relation*: the model outputs each item under each of the
batch's relations (``*_embedding_all``), so ``logits[i, j] = <anchor_i | r_i, positive_j | r_i> / T``.

Four directions, each a symmetric InfoNCE (anchors query positives and positives query anchors):
``tt`` text->text and ``ii`` image->image (intra-modal), ``ti`` text->image and ``it`` image->text
(cross-modal). A query or candidate without the needed modality drops out of that direction.
Candidates that are true partners of the query under its relation (the relation graph, or the
same item) are masked out instead of serving as negatives. Under DDP, candidates come from every
process (gathered with their gradients).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from torch import nn

from rcml_st.losses.distributed import gather_sizes, gather_with_grad, union_presence, world
from rcml_st.losses.positives import RelationGraph
from rcml_st.modules import rcml_modules
from rcml_st.modules.towers import TRUNK_KEYS

#: Loss term -> (query modality, candidate modality).
DIRECTIONS: dict[str, tuple[str, str]] = {
    "tt": ("text", "text"),
    "ii": ("image", "image"),
    "ti": ("text", "image"),
    "it": ("image", "text"),
}
MODALITIES = ("text", "image")
DEFAULT_TEMPERATURE = 0.05
"""Fixed softmax temperature (a logit scale of 20, as sentence-transformers' ranking losses use).
It is not learned: a learnable scale mainly pays off in long from-scratch runs with huge batches;
for fine-tuning on relation pairs a fixed, tunable value is simpler and reproducible."""


def _unwrap(model: nn.Module) -> nn.Module:
    # The trainer swaps in its DDP (``.module``) or compiled (``._orig_mod``) wrapper.
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


class RCMLLoss(nn.Module):
    """Relation-conditioned InfoNCE for RCML models (the sentence-transformers loss signature).

    The dataset has two item columns and a ``label`` column: ``anchor`` and ``positive`` hold
    dicts ``{"text", "image", "relation"}`` and ``label`` holds ``[source, target, relation]``:
    indices of the pair's two items (any consistent numbering, e.g. catalogue positions) and of
    its relation in ``relations``. The loss encodes both columns under the label's relation and
    uses the item indices to recognise true positives. :func:`rcml_st.training.build_pairs`
    makes such a dataset (and the graph) from a catalogue.

    Args:
        model: an RCML ``SentenceTransformer`` (kept at ``self.model``; the trainer may wrap it).
        relations: relation descriptions; the label's relation index points into this list.
        positives: the relation graph: candidates it links to the query under the query's
            relation are masked, never negatives. ``None`` masks only the same items.
        temperature: softmax temperature (fixed, see :data:`DEFAULT_TEMPERATURE`).
        weights: weight per term ``"tt"``, ``"ii"``, ``"ti"``, ``"it"`` (default 1 each); a zero
            weight drops the term (e.g. ``{"tt": 0, "ii": 0}`` for no intra-modal loss).
        gather_across_devices: under DDP, score queries against the candidates of every process.

    Returns (from ``forward``):
        A dict ``{"loss_tt": ..., "loss_ii": ..., "loss_ti": ..., "loss_it": ...}`` of weighted
        terms (those with a non-zero weight); the trainer sums them and logs each.

    Example:
        >>> import rcml_st
        >>> from rcml_st.losses import RCMLLoss
        >>> model = rcml_st.build_model("rcml-tiny", device="cpu")
        >>> loss = RCMLLoss(model, relations=["matches in colour", "the same product"])
        >>> # SentenceTransformerTrainer(model=model, train_dataset=pairs, loss=loss).train()
    """

    def __init__(
        self,
        model: SentenceTransformer,
        relations: Sequence[str],
        positives: RelationGraph | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
        weights: Mapping[str, float] | None = None,
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        clip, _ = rcml_modules(model)
        if not relations:
            raise ValueError("RCMLLoss needs at least one relation description")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.relations = list(relations)
        self.temperature = float(temperature)
        unknown = set(weights or {}) - set(DIRECTIONS)
        if unknown:
            raise ValueError(f"unknown loss terms {sorted(unknown)}; choose from {list(DIRECTIONS)}")
        self.weights = {name: float((weights or {}).get(name, 1.0)) for name in DIRECTIONS}
        if any(w < 0 for w in self.weights.values()) or not any(self.weights.values()):
            raise ValueError(f"term weights must be >= 0 with at least one > 0, got {self.weights}")
        if positives is not None and positives.n_relations < len(self.relations):
            raise ValueError("the relation graph covers fewer relations than `relations`")
        self.positives = positives
        self.gather_across_devices = gather_across_devices
        # Each distinct relation is tokenised once; the loss swaps these in for the columns' own
        # relation tokens, so that every process encodes its items under the same (global) list.
        self.register_buffer("relation_tokens", clip.tokenizer(self.relations), persistent=False)
        # CLIP's logit_scale is not used here (the temperature is fixed): without a gradient it
        # would make DDP wait forever for it, so freeze it.
        logit_scale = getattr(clip.model, "logit_scale", None)
        if isinstance(logit_scale, nn.Parameter):
            logit_scale.requires_grad_(False)
        self.last_num_candidates = 0  # for tests and diagnostics: candidates per query, last call
        self._relation_trunk: Any = None  # the relations' frozen trunk outputs (see _encode)

    def forward(
        self, sentence_features: Sequence[dict[str, Any]], labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Computes the weighted loss terms for one batch of pairs.

        Args:
            sentence_features: the two columns' features (anchor, positive) from the collator.
            labels: (B, 3) long tensor ``[source, target, relation]`` per pair.
        """
        if len(sentence_features) != 2:
            raise ValueError(
                f"RCMLLoss takes exactly two item columns (anchor, positive), got {len(sentence_features)}"
            )
        if labels is None or labels.dim() != 2 or labels.shape[1] != 3:
            raise ValueError("RCMLLoss needs a 'label' column of [source, target, relation] per pair")
        device = sentence_features[0]["input_ids"].device
        labels = labels.to(device=device, dtype=torch.long)
        source, target, relation = labels.unbind(1)
        if int(relation.min()) < 0 or int(relation.max()) >= len(self.relations):
            raise ValueError(f"a label's relation index is outside [0, {len(self.relations)})")
        batch = labels.shape[0]

        # The relations used anywhere in the global batch, in one order shared by every process.
        present = torch.zeros(len(self.relations), dtype=torch.bool, device=device)
        present[relation] = True
        if self.gather_across_devices:
            present = union_presence(present)
        used = present.nonzero().squeeze(1)
        position = torch.full((len(self.relations),), -1, dtype=torch.long, device=device)
        position[used] = torch.arange(used.numel(), device=device)
        slot = position[relation]  # each pair's relation as an index into the `*_all` outputs

        anchor, positive = self._encode(sentence_features, self.relation_tokens.to(device), used)

        rank, world_size = world() if self.gather_across_devices else (0, 1)
        sizes = gather_sizes(batch, device) if world_size > 1 else [batch]
        own = sum(sizes[:rank]) + torch.arange(batch, device=device)  # each query's own positive
        rows = torch.arange(batch, device=device)
        self.last_num_candidates = int(sum(sizes))
        # Each term starts as a zero on the graph: it stays one when no query has its modalities.
        zero = anchor["sentence_embedding_all"].float().sum() * 0.0
        sums = dict.fromkeys(DIRECTIONS, zero)
        counts = dict.fromkeys(DIRECTIONS, 0)  # tensors once added to: no device sync per term
        # Symmetric: anchors query the positives' column, positives query the anchors' column.
        for queries, query_items, partners, column, column_items in (
            (anchor, source, target, positive, target),
            (positive, target, source, anchor, source),
        ):
            # The candidates: every process's column, each item under every relation of the batch.
            candidates = {
                m: gather_with_grad(column[f"{m}_embedding_all"], sizes).float() for m in MODALITIES
            }
            has = {m: gather_with_grad(column[f"has_{m}"].long(), sizes).bool() for m in MODALITIES}
            items = gather_with_grad(column_items, sizes)
            excluded = self._excluded(query_items, partners, relation, items, own)  # (B, N)
            for name, (query_modality, candidate_modality) in DIRECTIONS.items():
                if self.weights[name] == 0:
                    continue
                query = queries[f"{query_modality}_embedding_all"][rows, slot].float()  # own relation
                # Every candidate under every relation, then under the query's: (B, N).
                scores = torch.einsum("bd,nud->bun", query, candidates[candidate_modality])[rows, slot]
                masked = excluded | ~has[candidate_modality][None, :]
                masked[rows, own] = False  # the own positive is always a candidate: every row is finite
                logits = (scores / self.temperature).masked_fill(masked, float("-inf"))
                cross_entropy = torch.logsumexp(logits, dim=-1) - logits[rows, own]
                # A query takes part when it has the query modality and its own positive the other.
                valid = queries[f"has_{query_modality}"] & has[candidate_modality][own]
                sums[name] = sums[name] + torch.where(valid, cross_entropy, 0.0).sum()
                counts[name] = counts[name] + valid.sum()
        return {
            f"loss_{name}": self.weights[name] * sums[name] / torch.as_tensor(counts[name]).clamp(min=1)
            for name in DIRECTIONS
            if self.weights[name] != 0
        }

    def _encode(
        self, columns: Sequence[dict[str, Any]], relation_tokens: torch.Tensor, used: torch.Tensor
    ) -> list[dict[str, torch.Tensor]]:
        """Every item of every column under each relation in ``used``: the model's ordinary forward,
        with ``all_relations=True`` for the pooling (the ``*_embedding_all`` outputs).

        With frozen trunks the relation descriptions' trunk outputs are constants: computed once
        and handed to the model as precomputed (``relation_trunk_*``), like a trunk cache's items.
        """
        clip, _ = rcml_modules(_unwrap(self.model))
        if clip.trunks_frozen and self._relation_trunk is None:
            with torch.no_grad():
                self._relation_trunk = clip.text_trunk(relation_tokens)
        outputs = []
        for column in columns:
            features = {**column, "relation_tokens": relation_tokens[used]}
            features["relation_index"] = torch.full_like(column["relation_index"], -1)
            if clip.trunks_frozen:
                trunk = self._relation_trunk
                parts = (trunk.pooled[used], trunk.tokens[used], trunk.mask[used])
                features.update(zip(TRUNK_KEYS["relation"], parts, strict=True))
            outputs.append(self.model(features, all_relations=True))
        return outputs

    def _excluded(
        self,
        query_items: torch.Tensor,
        partners: torch.Tensor,
        relation: torch.Tensor,
        candidate_items: torch.Tensor,
        own: torch.Tensor,
    ) -> torch.Tensor:
        """(B, N) bool: candidates that are true matches of the query (other than its own positive)."""
        excluded = (candidate_items[None, :] == query_items[:, None]) | (
            candidate_items[None, :] == partners[:, None]
        )
        if self.positives is not None:
            excluded |= self.positives.contains(
                relation[:, None], query_items[:, None], candidate_items[None, :]
            )
        excluded[torch.arange(own.numel(), device=own.device), own] = False
        return excluded

    def get_config_dict(self) -> dict[str, Any]:
        """The loss settings, for the model card."""
        return {
            "relations": self.relations,
            "temperature": self.temperature,
            "weights": self.weights,
            "masked_positive_edges": 0 if self.positives is None else len(self.positives),
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        """The RCML paper (arXiv 2508.17497)."""
        return """
@article{qiao2025rcml,
    title={Multimodal Representation Learning Conditioned on Semantic Relations},
    author={Qiao and Hu and Zhu and Haque and Zhao},
    journal={arXiv preprint arXiv:2508.17497},
    year={2025}
}
"""

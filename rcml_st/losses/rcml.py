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


def _by_side(dicts: Sequence[dict[str, torch.Tensor]], key: str) -> torch.Tensor:
    """``dicts[s][key.format(m)]`` for every side s and modality m, stacked as (S, M, ...)."""
    return torch.stack([torch.stack([d[key.format(m)] for m in MODALITIES]) for d in dicts])


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
        offset = sum(sizes[:rank])
        own = offset + torch.arange(batch, device=device)  # each query's own positive candidate

        def candidates(out: dict[str, torch.Tensor], items: torch.Tensor) -> dict[str, torch.Tensor]:
            return {
                "text": gather_with_grad(out["text_embedding_all"], sizes),
                "image": gather_with_grad(out["image_embedding_all"], sizes),
                "has_text": gather_with_grad(out["has_text"].long(), sizes).bool(),
                "has_image": gather_with_grad(out["has_image"].long(), sizes).bool(),
                "items": gather_with_grad(items, sizes),
            }

        # Symmetric: anchors query the positives' column, positives query the anchors' column.
        sides = [
            (anchor, source, target, candidates(positive, target)),
            (positive, target, source, candidates(anchor, source)),
        ]
        self.last_num_candidates = int(sum(sizes))
        # Every (side, query modality, query, candidate modality, candidate) at once: the four
        # directions of both sides are slices of one tensor, so a step costs a handful of ops.
        rows = torch.arange(batch, device=device)
        columns, pools = [side[0] for side in sides], [side[3] for side in sides]
        # (2, 2, B, D): each query under its own relation; (2, 2, N, U, D): every candidate.
        every_relation = _by_side(columns, "{}_embedding_all")  # (2, 2, B, U, D)
        # Each query under its own relation: one index_select (its gradient is one index_add).
        own_relation = rows * every_relation.shape[3] + slot
        queries = every_relation.flatten(2, 3).index_select(2, own_relation).float()
        logits = self._scores(queries, _by_side(pools, "{}").float(), slot)  # (2, 2, B, 2, N)
        has_query, has_candidate = _by_side(columns, "has_{}"), _by_side(pools, "has_{}")
        excluded = torch.stack(
            [self._excluded(items, partners, relation, c["items"], own) for _, items, partners, c in sides]
        )  # (2, B, N)
        masked = excluded[:, None, :, None, :] | ~has_candidate[:, None, None, :, :]
        masked[:, :, rows, :, own] = False  # the own positive is always a candidate: every row is finite
        logits = logits.masked_fill(masked, float("-inf"))
        target_logit = logits.gather(-1, own.view(1, 1, -1, 1, 1).expand(*logits.shape[:-1], 1)).squeeze(-1)
        cross_entropy = torch.logsumexp(logits, dim=-1) - target_logit  # (2, 2, B, 2)
        # A query takes part in a direction when it has the query modality and its own positive
        # has the candidate modality; the others drop out of that direction's mean.
        valid = has_query[:, :, :, None] & has_candidate[:, :, own].transpose(1, 2)[:, None]
        sums = torch.where(valid, cross_entropy, 0.0).sum(dim=(0, 2))  # (query, candidate modality)
        counts = valid.sum(dim=(0, 2)).tolist()
        terms: dict[str, torch.Tensor] = {}
        for name, (query_modality, candidate_modality) in DIRECTIONS.items():
            if self.weights[name] == 0:
                continue
            q, c = MODALITIES.index(query_modality), MODALITIES.index(candidate_modality)
            # No query with this pair of modalities: the sum is a zero that is still on the graph.
            terms[f"loss_{name}"] = self.weights[name] * sums[q, c] / max(1, counts[q][c])
        return terms

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

    def _scores(self, queries: torch.Tensor, candidates: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        """Logits of every query against every candidate, both under the query's relation.

        Args:
            queries: (S, M, B, D), query i of side s in modality m under its relation ``slot[i]``.
            candidates: (S, M, N, U, D), every candidate under every relation of the batch.
            slot: (B,) each query's relation, an index into U.

        Returns:
            (S, M, B, M, N) logits: ``[s, a, i, b, j] = <query_i^a, candidate_j^b | slot_i> / T``.
        """
        # The queries grouped by relation (one reordering), a product per relation on contiguous
        # slices, and the original order back: no scattered writes, none in the backward either.
        order = torch.argsort(slot, stable=True)
        grouped = queries.index_select(2, order)
        parts, start = [], 0
        for u, size in enumerate(torch.bincount(slot, minlength=candidates.shape[3]).tolist()):
            if size:
                part = grouped[:, :, start : start + size]
                parts.append(torch.einsum("smbd,sknd->smbkn", part, candidates[:, :, :, u]))
                start += size
        logits = torch.cat(parts, dim=2).index_select(2, torch.argsort(order))
        return logits / self.temperature

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

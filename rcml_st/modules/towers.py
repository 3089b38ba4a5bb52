"""Token features from every kind of open_clip tower, split into a trunk and a head.

RCML pools an item's *token* features with the relation as the attention query, so every tower
must give tokens, projected into the joint space exactly as the tower projects its own pooled
output. open_clip builds five kinds of tower, each with its own internals; an adapter per kind
splits it into

- a **trunk** (everything before the projection into the joint space): :meth:`Tower.trunk`
  returns a :class:`TrunkOutput` with the pooled feature and the token features, both
  pre-projection, and a token mask;
- a **head** (the projection): :meth:`Tower.head` maps a :class:`TrunkOutput` to the global
  embedding (exactly what open_clip's ``encode_text`` / ``encode_image`` returns) and the
  projected tokens.

The split is what frozen-trunk training caches (the trunk's output) and trains (the head). The
kinds: open_clip's ``VisionTransformer``; ``TimmModel`` (ViT-style token sequences, prefix tokens
dropped; ConvNet feature maps flattened to H x W tokens); ``ModifiedResNet`` (the feature map
before its attention pool, each position sent through the pool's value and output projections);
the built-in text transformer (``CLIP``) and ``TextTransformer`` (``CustomTextCLIP``); and
``HFTextEncoder`` (last hidden states with their attention mask). A tower of any other kind is a
:class:`~rcml_st.errors.UsageError` when the model is built, never a silent fallback.

Example:
    >>> from rcml_st.modules.backbone import create_backbone
    >>> backbone = create_backbone("rcml-tiny")
    >>> text, image = text_tower(backbone.model), image_tower(backbone.model)
    >>> type(text).__name__, type(image).__name__
    ('TransformerTextTower', 'VisionTransformerTower')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from rcml_st.errors import UsageError

try:
    from open_clip.transformer import text_global_pool
except ImportError:  # pragma: no cover - older open_clip keeps it in model.py
    from open_clip.model import text_global_pool

Embeddings = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""``(global (N, D), tokens (N, L, D), mask (N, L))`` in the joint space."""


@dataclass
class TrunkOutput:
    """What a tower's trunk computes, before the projection into the joint space.

    Attributes:
        pooled: the tower's pooled feature (N, C), the input of its projection.
        tokens: token features (N, L, C') in the trunk's width.
        mask: which tokens are real (N, L), bool.
    """

    pooled: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor


#: Feature keys of precomputed trunk outputs (a trunk cache's; ``relation``: the relation descriptions'),
#: per modality: ``(pooled, tokens, mask)``.
#: None ends in a suffix the sentence-transformers trainer groups a column's features by.
TRUNK_KEYS: dict[str, tuple[str, str, str]] = {
    m: (f"{m}_trunk_pooled", f"{m}_trunk_tokens", f"{m}_trunk_mask") for m in ("text", "image", "relation")
}


def precomputed_trunk(
    features: dict[str, Any], modality: str, dtype: torch.dtype | None = None
) -> TrunkOutput | None:
    """The precomputed trunk output of a modality's items in ``features`` (cast to ``dtype``), or ``None``.

    Example:
        >>> f = {"text_trunk_pooled": torch.ones(2, 4), "text_trunk_tokens": torch.ones(2, 3, 4),
        ...      "text_trunk_mask": torch.ones(2, 3, dtype=torch.bool)}
        >>> precomputed_trunk(f, "text").tokens.shape, precomputed_trunk(f, "image")
        (torch.Size([2, 3, 4]), None)
    """
    pooled, tokens, mask = TRUNK_KEYS[modality]
    if pooled not in features:
        return None
    return TrunkOutput(features[pooled].to(dtype), features[tokens].to(dtype), features[mask].bool())


def _apply(projection: nn.Module | torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    if projection is None:
        return x
    if isinstance(projection, nn.Module):
        return projection(x)
    return x @ projection


def _params(*parts: nn.Module | torch.Tensor | None) -> list[nn.Parameter]:
    found: list[nn.Parameter] = []
    for part in parts:
        if isinstance(part, nn.Parameter):
            found.append(part)
        elif isinstance(part, nn.Module):
            found.extend(part.parameters())
    return found


class StageHeads(nn.Module):
    """Projections of earlier image stages' tokens into the joint space (multi-scale image tokens).

    With ``stages`` (indices into the timm trunk's ``feature_info``, e.g. ``[3]`` for
    EfficientNet-Lite0's stride-16 map), the image trunk returns, besides the last feature map's
    tokens, each such stage's feature map average-pooled to the last map's grid: one more token
    per position and stage, so the relation pooling can weigh early (style: line weight, palette,
    texture) against late (content) features. Every token of the trunk output holds one stage's
    features in that stage's block of channels (zeros elsewhere) and a one-hot stage indicator at
    the end; the head projects the last map's block with the tower's own projection, each earlier
    block with its own linear map (this module) and adds a learned per-stage embedding (the
    indicator times ``stage_embedding``, zeros at first).

    Args:
        widths: channel widths, the last feature map's first, then each stage's.
        embedding_dimension: the joint space's width.
        stages: the ``feature_info`` indices the earlier widths belong to.

    Example:
        >>> heads = StageHeads([8, 4], 6, stages=[1])
        >>> x = torch.zeros(2, 3, 4 + 2); x[..., 0:4] = 1.0; x[..., 5] = 1.0
        >>> heads(x).shape
        torch.Size([2, 3, 6])
    """

    def __init__(self, widths: list[int], embedding_dimension: int, stages: list[int]) -> None:
        super().__init__()
        self.widths = [int(w) for w in widths]
        self.stages = [int(s) for s in stages]
        self.projections = nn.ModuleList(
            nn.Linear(w, embedding_dimension, bias=False) for w in self.widths[1:]
        )
        self.stage_embedding = nn.Parameter(torch.zeros(len(self.widths), embedding_dimension))

    def forward(self, rest: torch.Tensor) -> torch.Tensor:
        """The earlier stages' projected blocks plus the stage embedding (channels after the first block)."""
        out = rest[..., -len(self.widths) :] @ self.stage_embedding.to(rest.dtype)
        start = 0
        for projection, width in zip(self.projections, self.widths[1:], strict=True):
            out = out + projection(rest[..., start : start + width])
            start += width
        return out


class Tower:
    """One tower of an open_clip model, as a trunk and a head (see the module docstring).

    Subclasses implement :meth:`trunk`, :meth:`head` (or :meth:`head_global`),
    :meth:`head_parameters` and :meth:`trunk_modules`; the tower is ``head(trunk(x))``.
    """

    modality: str = ""

    def trunk(self, inputs: torch.Tensor) -> TrunkOutput:
        """Runs the tower up to (not including) its projection."""
        raise NotImplementedError

    def head(self, trunk: TrunkOutput) -> Embeddings:
        """Projects a trunk output into the joint space: ``(global, tokens, mask)``.

        By default the pooled feature and every token go through the same map, :meth:`head_global`.
        """
        return self.head_global(trunk.pooled), self.head_global(trunk.tokens), trunk.mask

    def head_parameters(self) -> list[nn.Parameter]:
        """The projection's parameters (trained when the trunk is frozen)."""
        raise NotImplementedError

    def head_global(self, pooled: torch.Tensor) -> torch.Tensor:
        """The global embedding of a pooled feature: the first part of :meth:`head`."""
        raise NotImplementedError

    def trunk_modules(self) -> list[nn.Module]:
        """The modules of the trunk (frozen, and put in eval mode, by ``--freeze-backbone``)."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Image towers
class VisionTransformerTower(Tower):
    """open_clip's ``VisionTransformer``: patch tokens after ``ln_post``, projected by ``proj``."""

    modality = "image"

    def __init__(self, visual: nn.Module) -> None:
        self.visual = visual

    def trunk(self, inputs: torch.Tensor) -> TrunkOutput:
        visual = self.visual
        x = visual._embeds(inputs)
        x = visual.transformer(x)
        pooled, tokens = visual._pool(x)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return TrunkOutput(pooled, tokens, mask)

    def head_parameters(self) -> list[nn.Parameter]:
        return _params(self.visual.proj)

    def head_global(self, pooled: torch.Tensor) -> torch.Tensor:
        return _apply(self.visual.proj, pooled)

    def trunk_modules(self) -> list[nn.Module]:
        return list(self.visual.children())


class TimmTower(Tower):
    """open_clip's ``TimmModel``: the timm trunk's features, then open_clip's head.

    ViT-style trunks give (N, T, C) token sequences: prefix tokens (class, registers) are
    dropped and the trunk's post-pool norm (``fc_norm``) is applied to each token as it is to the
    pooled one. ConvNet trunks give (N, C, H, W) feature maps: each position is a token. When
    open_clip uses the timm classifier as the projection (``timm_proj`` empty), that classifier
    projects the tokens too.
    """

    modality = "image"

    def __init__(self, visual: nn.Module, stages: StageHeads | None = None) -> None:
        self.visual = visual
        self.stages = stages
        names = [name for name, _ in visual.head.named_children()]
        if "pool" in names:
            raise UsageError(
                "a timm image tower with attention pooling (timm_pool abs_attn / rot_attn) has no "
                "token features RCML can pool; use timm_pool 'avg' or 'token'"
            )
        trunk = visual.trunk
        classifier = trunk.get_classifier() if hasattr(trunk, "get_classifier") else None
        # open_clip reuses the timm classifier as the projection when no extra projection is asked for.
        self.classifier = classifier if isinstance(classifier, nn.Linear) else None

    def trunk(self, inputs: torch.Tensor) -> TrunkOutput:
        if self.stages is not None:
            return self._multi_scale_trunk(inputs)
        trunk = self.visual.trunk
        features = trunk.forward_features(inputs)
        pooled = trunk.forward_head(features, pre_logits=True)
        if features.dim() == 4:  # ConvNet: (N, C, H, W) -> (N, H*W, C)
            tokens = features.flatten(2).transpose(1, 2)
        elif features.dim() == 3:  # ViT-style: drop prefix tokens, apply the post-pool norm
            tokens = features[:, int(getattr(trunk, "num_prefix_tokens", 0)) :]
            fc_norm = getattr(trunk, "fc_norm", None)
            if isinstance(fc_norm, nn.Module):
                tokens = fc_norm(tokens)
        else:
            name = type(trunk).__name__
            raise UsageError(f"timm tower {name} gives {features.dim()}-d features, not tokens")
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return TrunkOutput(pooled, tokens, mask)

    def _multi_scale_trunk(self, inputs: torch.Tensor) -> TrunkOutput:
        """The last feature map's tokens, then each earlier stage's, in the block layout of
        :class:`StageHeads` (each stage's map average-pooled to the last map's grid)."""
        stages = self.stages
        assert stages is not None
        trunk = self.visual.trunk
        features, earlier = trunk.forward_intermediates(inputs, indices=list(stages.stages))
        if features.dim() != 4:
            raise UsageError("image token stages need a ConvNet timm tower (feature maps)")
        pooled = trunk.forward_head(features, pre_logits=True)
        grid = features.shape[-2:]
        maps = [features, *(F.adaptive_avg_pool2d(m, grid) for m in earlier)]
        width, n = sum(stages.widths) + len(maps), grid[0] * grid[1]
        tokens = features.new_zeros(features.shape[0], n * len(maps), width)
        start = 0
        for s, part in enumerate(maps):
            rows = slice(s * n, (s + 1) * n)
            tokens[:, rows, start : start + part.shape[1]] = part.flatten(2).transpose(1, 2)
            tokens[:, rows, width - len(maps) + s] = 1.0  # which stage the token comes from
            start += part.shape[1]
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return TrunkOutput(pooled, tokens, mask)

    def head(self, trunk: TrunkOutput) -> Embeddings:
        global_ = self.head_global(trunk.pooled)
        if self.stages is None:
            return global_, self.head_global(trunk.tokens), trunk.mask
        last = self.stages.widths[0]
        tokens = self.head_global(trunk.tokens[..., :last]) + self.stages(trunk.tokens[..., last:])
        return global_, tokens, trunk.mask

    def head_parameters(self) -> list[nn.Parameter]:
        return _params(self.visual.head, self.classifier, self.stages)

    def head_global(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.visual.head(_apply(self.classifier, pooled))

    def trunk_modules(self) -> list[nn.Module]:
        if self.classifier is None:
            return [self.visual.trunk]
        return [m for m in self.visual.trunk.children() if m is not self.classifier]


class ModifiedResNetTower(Tower):
    """open_clip's ``ModifiedResNet`` (RN50 family): the feature map before the attention pool.

    The attention pool is the head: its output (the mean-position query attending over all
    positions) is the global embedding, exactly as open_clip computes it, and each position's
    token is that position sent through the pool's value and output projections (what the pool
    returns for a query attending to that position alone).
    """

    modality = "image"

    def __init__(self, visual: nn.Module) -> None:
        self.visual = visual

    def trunk(self, inputs: torch.Tensor) -> TrunkOutput:
        visual = self.visual
        x = visual.stem(inputs)
        for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
            x = layer(x)
        tokens = x.flatten(2).transpose(1, 2)  # (N, H*W, C)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return TrunkOutput(tokens.mean(dim=1), tokens, mask)

    def head(self, trunk: TrunkOutput) -> Embeddings:
        pool, tokens = self.visual.attnpool, trunk.tokens
        side = math.isqrt(tokens.shape[1])  # the feature map is square
        feature_map = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)
        # The pool's own forward for the global embedding; each position with its positional embedding
        # through the value and output projections for the tokens.
        positions = pool.positional_embedding[None, 1 : 1 + tokens.shape[1], :].to(tokens.dtype)
        return pool(feature_map), pool.c_proj(pool.v_proj(tokens + positions)), trunk.mask

    def head_parameters(self) -> list[nn.Parameter]:
        return _params(self.visual.attnpool)

    def trunk_modules(self) -> list[nn.Module]:
        return [m for name, m in self.visual.named_children() if name != "attnpool"]


# ---------------------------------------------------------------------------------------------
# Text towers
class TransformerTextTower(Tower):
    """open_clip's own text transformer: built into ``CLIP``, or ``TextTransformer`` of ``CustomTextCLIP``.

    With the causal mask a token never sees later positions, so trailing padding is cut off
    without changing the result: titles of ~15 tokens cost 15 positions, not 77.
    """

    modality = "text"

    def __init__(self, owner: nn.Module, builtin: bool) -> None:
        self.owner = owner
        self.builtin = builtin
        prefix = "text_" if builtin else ""
        self.pool_type = getattr(owner, f"{prefix}pool_type", "argmax")
        self.eos_id = getattr(owner, "text_eos_id" if builtin else "eos_id", None)
        # CoCa-style class tokens and pad masks follow TextTransformer's own embedding path.
        self.own_embeds = not builtin and (
            getattr(owner, "cls_emb", None) is not None or getattr(owner, "use_pad_mask", False)
        )

    def trunk(self, inputs: torch.Tensor) -> TrunkOutput:
        owner, ids = self.owner, inputs
        if self.own_embeds:
            x, attn_mask = owner._embeds(ids)
            x = owner.transformer(x, attn_mask=attn_mask)
            if owner.cls_emb is not None:
                pooled = owner.ln_final(text_global_pool(x, pool_type="last"))
                tokens = x[:, :-1]
            else:
                x = owner.ln_final(x)
                pooled = text_global_pool(x, ids, pool_type=self.pool_type, eos_token_id=self.eos_id)
                tokens = x
            return TrunkOutput(pooled, tokens, ids != 0)
        attn_mask = owner.attn_mask
        if attn_mask is not None and self.pool_type in ("argmax", "eos", "first") and ids.shape[0] > 0:
            real = (ids != 0).long()
            last = int((real * torch.arange(1, ids.shape[1] + 1, device=ids.device)).amax())
            ids = ids[:, : max(last, 1)]
        length = ids.shape[1]
        cast_dtype = owner.transformer.get_cast_dtype()
        x = owner.token_embedding(ids).to(cast_dtype)
        x = x + owner.positional_embedding[:length].to(cast_dtype)
        x = owner.transformer(x, attn_mask=None if attn_mask is None else attn_mask[:length, :length])
        x = owner.ln_final(x)
        pooled = text_global_pool(x, ids, self.pool_type, eos_token_id=self.eos_id)
        if self.pool_type == "argmax":
            end = ids.argmax(dim=-1)
            mask = torch.arange(length, device=ids.device)[None, :] <= end[:, None]
        else:
            mask = ids != 0
        return TrunkOutput(pooled, x, mask)

    def head_parameters(self) -> list[nn.Parameter]:
        return _params(self.owner.text_projection)

    def head_global(self, pooled: torch.Tensor) -> torch.Tensor:
        return _apply(self.owner.text_projection, pooled)

    def trunk_modules(self) -> list[nn.Module]:
        names = ("token_embedding", "transformer", "ln_final", "cls_emb")
        modules = [getattr(self.owner, name, None) for name in names]
        return [m for m in modules if isinstance(m, nn.Module)]


class HFTextTower(Tower):
    """open_clip's ``HFTextEncoder`` (BERT, XLM-R, MiniLM, ...): last hidden states + attention mask.

    The pooled feature is open_clip's pooler output (mean, CLS, ...) before ``proj``; tokens are
    the last hidden states, each projected by the same ``proj``. Trailing padding is cut to the
    longest text of the batch (masked positions change nothing).
    """

    modality = "text"

    def __init__(self, text: nn.Module) -> None:
        self.text = text
        self.pad_id = text.config.pad_token_id

    def trunk(self, inputs: torch.Tensor) -> TrunkOutput:
        text = self.text
        attn = (inputs != self.pad_id).long()
        if inputs.shape[0] > 0 and inputs.shape[1] > 1:
            keep = int((attn * torch.arange(1, inputs.shape[1] + 1, device=inputs.device)).amax())
            inputs, attn = inputs[:, : max(keep, 1)], attn[:, : max(keep, 1)]
        out = text.transformer(input_ids=inputs, attention_mask=attn)
        pooled = text.pooler(out, attn)
        return TrunkOutput(pooled, out.last_hidden_state, attn.bool())

    def head_parameters(self) -> list[nn.Parameter]:
        return _params(self.text.proj)

    def head_global(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.text.proj(pooled)

    def trunk_modules(self) -> list[nn.Module]:
        return [self.text.transformer, self.text.pooler]


def image_tower(model: nn.Module, stages: StageHeads | None = None) -> Tower:
    """The adapter for an open_clip model's image tower (``model.visual``).

    Args:
        model: the open_clip model.
        stages: earlier stages' token heads (multi-scale image tokens; timm ConvNet towers only).

    Raises:
        UsageError: for a tower kind that gives no token features, or stages on another kind.
    """
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.timm_model import TimmModel
    from open_clip.transformer import VisionTransformer

    visual = model.visual
    if isinstance(visual, TimmModel):
        return TimmTower(visual, stages)
    if stages is not None:
        raise UsageError(f"image token stages need a timm ConvNet image tower, not {type(visual).__name__}")
    if isinstance(visual, VisionTransformer):
        return VisionTransformerTower(visual)
    if isinstance(visual, ModifiedResNet):
        return ModifiedResNetTower(visual)
    raise UsageError(f"image tower {type(visual).__name__} gives no token features RCML can pool")


def text_tower(model: nn.Module) -> Tower:
    """The adapter for an open_clip model's text tower (built in, ``model.text`` or an HF encoder).

    Raises:
        UsageError: for a tower kind that gives no token features.
    """
    from open_clip.hf_model import HFTextEncoder
    from open_clip.transformer import TextTransformer

    if hasattr(model, "token_embedding") and hasattr(model, "transformer"):
        return TransformerTextTower(model, builtin=True)
    text: Any = getattr(model, "text", None)
    if isinstance(text, TextTransformer):
        return TransformerTextTower(text, builtin=False)
    if isinstance(text, HFTextEncoder):
        return HFTextTower(text)
    raise UsageError(f"text tower {type(text).__name__} gives no token features RCML can pool")

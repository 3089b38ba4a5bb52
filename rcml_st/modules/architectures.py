"""Small open_clip architectures shipped with the package, for demos, tests and CPU runs.

``--backbone rcml-tiny`` / ``--backbone rcml-small`` (and ``rcml_st.build_model("rcml-tiny")``)
name them; they are random-init only (no pretrained weights exist). A
trained model directory stores its own copy of the config, so it never needs these names again.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from rcml_st.atomic import write_text

#: Name -> open_clip model config. ``rcml-tiny`` matches the tests' fixture (32-d, 32 px).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "rcml-tiny": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 48, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    },
    "rcml-small": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 64, "layers": 3, "width": 64, "patch_size": 8, "head_width": 32},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 3},
    },
}


def is_builtin(backbone: str | os.PathLike[str]) -> bool:
    """Whether ``backbone`` names one of :data:`ARCHITECTURES`."""
    return str(backbone) in ARCHITECTURES


def write_architecture(name: str, path: str | os.PathLike[str]) -> Path:
    """Writes a built-in architecture as an open_clip model-config JSON and returns its path.

    Example:
        >>> import json, tempfile, os
        >>> p = write_architecture("rcml-tiny", os.path.join(tempfile.mkdtemp(), "tiny.json"))
        >>> json.loads(p.read_text())["embed_dim"]
        32
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown built-in architecture {name!r}; choose from {sorted(ARCHITECTURES)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, json.dumps(copy.deepcopy(ARCHITECTURES[name]), indent=2) + "\n")

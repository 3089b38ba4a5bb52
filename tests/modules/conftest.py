from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import rcml_st


@pytest.fixture(scope="module")
def model(tiny_clip_config):
    torch.manual_seed(0)
    return rcml_st.build_model(tiny_clip_config, device="cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three small RGB images, as PIL objects and as PNG files."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    pils, paths = [], []
    for i in range(3):
        pixels = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
        image = Image.fromarray(pixels, "RGB")
        path = folder / f"item{i}.png"
        image.save(path)
        pils.append(image)
        paths.append(path)
    return pils, paths

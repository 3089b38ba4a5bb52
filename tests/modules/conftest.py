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


@pytest.fixture(scope="session")
def structured_images_of():
    """``make(n)``: n images with spatial structure (halves of different colour plus noise), so
    token positions differ; the first n of a larger set are the same images."""

    def make(n: int) -> list[Image.Image]:
        rng = np.random.default_rng(0)
        images = []
        for i in range(n):
            pixels = rng.integers(0, 60, size=(70, 80, 3), dtype=np.uint8)
            pixels[:, 40:, i] += 180
            images.append(Image.fromarray(pixels, "RGB"))
        return images

    return make

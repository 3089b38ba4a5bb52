"""Fixtures for the loss tests: a tiny model and hand-built batches of pairs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from sentence_transformers.base.data_collator import BaseDataCollator

import rcml_st


@pytest.fixture
def model(tiny_clip_config):
    """A tiny RCML model with fixed random weights (fresh per test: tests train it)."""
    torch.manual_seed(0)
    return rcml_st.build_model(tiny_clip_config, device="cpu")


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> list[str]:
    """Ten small PNGs with different colours and a stripe, so their embeddings differ."""
    folder: Path = tmp_path_factory.mktemp("loss-images")
    paths = []
    for i in range(10):
        image = Image.new("RGB", (32, 32), (30 * i, 255 - 30 * i, (70 * i) % 256))
        for x in range(32):
            image.putpixel((x, 4 * i % 32), (0, 0, 0))
        path = folder / f"img{i}.png"
        image.save(path)
        paths.append(str(path))
    return paths


@pytest.fixture
def make_batch(images) -> Callable[..., tuple[list[dict[str, Any]], torch.Tensor]]:
    """Collates pairs into the (features, labels) the trainer hands a loss.

    ``make_batch(model, [(source, target, relation_index), ...], relations)``: item ``k`` has the
    text ``"item k"`` and image ``images[k]``; ``source == target`` makes an intra-sample pair
    (text on one side, image on the other), as :func:`rcml_st.training.build_pairs` does.
    """

    def make(model, pairs, relations, text_only=(), image_only=()):
        def side(k: int, relation: str, text: bool = True, image: bool = True) -> dict[str, Any]:
            return {
                "text": f"item {k} text" if text and k not in image_only else None,
                "image": images[k] if image and k not in text_only else None,
                "relation": relation,
            }

        rows = []
        for source, target, relation in pairs:
            name = relations[relation]
            if source == target:
                rows.append(
                    {"anchor": side(source, name, image=False), "positive": side(target, name, text=False)}
                )
            else:
                rows.append({"anchor": side(source, name), "positive": side(target, name)})
            rows[-1]["label"] = [source, target, relation]
        batch = BaseDataCollator(model.preprocess)(rows)
        features = [
            {key[len(prefix) :]: value for key, value in batch.items() if key.startswith(prefix)}
            for prefix in ("anchor_", "positive_")
        ]
        return features, batch["label"]

    return make

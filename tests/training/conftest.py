"""Fixtures for the training tests: a small generated catalogue and a quick training config."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from rcml_st.data import SyntheticCatalog, generate_catalog
from rcml_st.training import TrainConfig


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> SyntheticCatalog:
    """A generated catalogue of 80 items (60 for training, 20 held out), 32 px images."""
    return generate_catalog(tmp_path_factory.mktemp("train-data"), n_items=80, seed=1, image_size=32)


@pytest.fixture
def quick_config(synthetic, tmp_path, tiny_clip_config) -> Callable[..., TrainConfig]:
    """``quick_config(**changes)``: a config that trains the tiny model for a few steps on CPU."""

    def make(**changes) -> TrainConfig:
        base = TrainConfig(
            data=synthetic.train_path,
            output=tmp_path / "model",
            backbone=str(tiny_clip_config),
            epochs=2,
            batch_size=16,
            lr=1e-3,
            pairs_per_epoch=48,
            device="cpu",
            seed=0,
        )
        return dataclasses.replace(base, **changes)

    return make


@pytest.fixture
def saved_weights() -> Callable[[Path], dict]:
    """``saved_weights(dir)``: a saved model's tensors (both modules), for comparing runs."""
    return _weights


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    tensors = dict(load_file(str(path / "open_clip_model.safetensors")))
    tensors.update(
        {
            f"pooling.{k}": v
            for k, v in load_file(str(path / "1_RelationPooling" / "model.safetensors")).items()
        }
    )
    return tensors

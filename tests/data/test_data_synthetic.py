"""Tests for rcml_st.data.synthetic: determinism, a clean read-back, the split and the relations."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rcml_st.data import RELATIONS, SyntheticCatalog, generate_catalog, groups, read_catalog
from rcml_st.data.synthetic import ACTIVITY_OF, BRANDS, COLOURS, GROUP_KEYS, PRODUCT_TYPES


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> SyntheticCatalog:
    return generate_catalog(tmp_path_factory.mktemp("synth"), n_items=120, seed=3)


def _read_clean(path: Path):
    warnings: list[str] = []
    catalog = read_catalog(path, on_warning=warnings.append)
    assert warnings == []
    assert catalog.dropped_targets == 0 and not catalog.skipped
    return catalog


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = generate_catalog(tmp_path / "a", n_items=30, seed=7)
    b = generate_catalog(tmp_path / "b", n_items=30, seed=7)
    c = generate_catalog(tmp_path / "c", n_items=30, seed=8)
    files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(files_a) == 30 + 2
    assert files_a == files_b
    assert a.train_path.read_bytes() != c.train_path.read_bytes()
    assert b.n_train == a.n_train


def test_files_read_back_with_no_warnings(synth):
    train, test = _read_clean(synth.train_path), _read_clean(synth.test_path)
    assert (len(train), len(test)) == (synth.n_train, synth.n_test) == (90, 30)
    assert train.relations == sorted(RELATIONS) == test.relations
    assert synth.relations == RELATIONS
    item = train.items[0]
    assert set(item.metadata) == {"product_type", "activity", "colour", "brand", "price"}
    assert item.image.startswith(str(synth.images_dir))
    with Image.open(item.image) as image:
        assert image.size == (64, 64)


def test_held_out_split_is_disjoint_and_complete(synth):
    train, test = _read_clean(synth.train_path), _read_clean(synth.test_path)
    train_ids, test_ids = set(train.ids), set(test.ids)
    assert not train_ids & test_ids
    assert len(train_ids | test_ids) == 120
    for catalog, own in ((train, train_ids), (test, test_ids)):
        for item in catalog:
            for targets in item.relations.values():
                assert set(targets) <= own


def test_links_follow_the_groups_and_relations_conflict(synth):
    train = _read_clean(synth.train_path)
    for edge in train.edges:
        source, target = train.items[edge.source], train.items[edge.target]
        assert groups(source)[edge.relation] == groups(target)[edge.relation]
    # Conflict: partners under one relation often differ under the others.
    for relation, other in itertools.permutations(RELATIONS, 2):
        label = [groups(item)[other] for item in train]
        differing = [e for e in train.edges if e.relation == relation and label[e.source] != label[e.target]]
        assert len(differing) > len(train.edges) // 10, (relation, other)


def test_each_item_links_to_k_group_mates_per_relation(tmp_path):
    synth = generate_catalog(tmp_path, n_items=60, seed=0, holdout=0.5, links_per_item=2)
    for path in (synth.train_path, synth.test_path):
        catalog = _read_clean(path)
        for item in catalog:
            for relation, key in GROUP_KEYS.items():
                mates = sum(1 for other in catalog if other.metadata[key] == item.metadata[key]) - 1
                assert len(item.relations.get(relation, [])) == min(2, mates)
                assert len(set(item.relations.get(relation, []))) == len(item.relations.get(relation, []))


def test_metadata_is_consistent(synth):
    for item in _read_clean(synth.train_path):
        meta = item.metadata
        assert meta["product_type"] in PRODUCT_TYPES
        assert meta["activity"] == ACTIVITY_OF[meta["product_type"]]
        assert meta["colour"] in COLOURS and meta["brand"] in BRANDS
        assert meta["product_type"] in item.text and meta["brand"] in item.text
        assert meta["colour"] in item.text.lower()
        assert isinstance(meta["price"], float) and meta["price"] > 0


def test_image_fill_is_the_items_colour(synth):
    for item in _read_clean(synth.train_path).items[:20]:
        pixels = np.asarray(Image.open(item.image), dtype=float).reshape(-1, 3)
        distance = np.linalg.norm(pixels - np.array(COLOURS[item.metadata["colour"]]), axis=1)
        assert (distance < 40).mean() > 0.08, item.id


def test_groups_accepts_items_and_dicts_and_rejects_others(synth):
    item = _read_clean(synth.test_path).items[0]
    assert groups(item) == groups(item.to_record())
    assert set(groups(item)) == set(RELATIONS)
    with pytest.raises(ValueError, match="not an item of the synthetic catalogue"):
        groups({"colour": "navy"})


def test_holdout_zero_writes_only_train(tmp_path):
    (tmp_path / "test.jsonl").write_text("stale")
    synth = generate_catalog(tmp_path, n_items=10, holdout=0, image_size=32)
    assert synth.test_path is None and synth.n_test == 0
    assert not (tmp_path / "test.jsonl").exists()
    assert len(_read_clean(synth.train_path)) == 10
    with Image.open(next(synth.images_dir.iterdir())) as image:
        assert image.size == (32, 32)


@pytest.mark.parametrize(
    "kwargs",
    [{"n_items": 1}, {"holdout": 1.0}, {"holdout": -0.1}, {"links_per_item": -1}, {"image_size": 8},
     {"n_items": 3, "holdout": 0.05}],
)  # fmt: skip
def test_bad_arguments_raise_value_error(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate_catalog(tmp_path, **kwargs)


def test_two_hundred_items_generate_with_an_image_each(tmp_path):
    synth = generate_catalog(tmp_path, n_items=200)
    assert synth.n_train + synth.n_test == 200
    assert len(list(synth.images_dir.glob("*.png"))) == 200


def test_by_default_items_link_to_their_whole_group(synth):
    # Evaluation draws negatives from unlinked items, so a group must be linked completely.
    catalog = _read_clean(synth.test_path)
    for relation, key in GROUP_KEYS.items():
        neighbours = catalog.neighbours(relation)
        for i, item in enumerate(catalog):
            label = item.metadata[key]
            mates = {j for j, other in enumerate(catalog) if j != i and other.metadata[key] == label}
            assert neighbours.get(i, set()) == mates

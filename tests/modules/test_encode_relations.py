"""Many relations, one backbone pass: encode_relations against per-relation encode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rcml_st

RELATIONS = ["used together for infant feeding", "matches in colour", "made by the same brand"]


def _items(images):
    pils, paths = images
    return [
        "a bottle warmer",
        pils[0],
        {"text": "nursing pillow", "image": paths[1]},
        {"image": str(paths[2])},
        "swaddle blanket, lilac",
    ]


def test_matches_per_relation_encode_for_every_modality(model, images):
    items = _items(images)
    out = rcml_st.encode_relations(model, items, [*RELATIONS, None], batch_size=2)
    assert out.item.shape == out.text.shape == out.image.shape == (4, 5, 32)
    assert out.has_text.tolist() == [True, False, True, False, True]
    assert out.has_image.tolist() == [False, True, True, True, False]
    for r, relation in enumerate([*RELATIONS, None]):
        per_item = model.encode(items, relation=relation, output_value=None)
        item = np.stack([f["sentence_embedding"].numpy() for f in per_item])
        text = np.stack([f["text_embedding"].numpy() for f in per_item])
        image = np.stack([f["image_embedding"].numpy() for f in per_item])
        np.testing.assert_allclose(out.item[r], item, atol=1e-5)
        np.testing.assert_allclose(out.text[r], text, atol=1e-5)
        np.testing.assert_allclose(out.image[r], image, atol=1e-5)


def test_only_the_asked_modalities_are_returned(model, images):
    out = rcml_st.encode_relations(model, _items(images), RELATIONS[:1], modalities=("item",))
    assert out.text is None and out.image is None
    assert out.get("item").shape == (1, 5, 32)
    with pytest.raises(KeyError, match="was not encoded"):
        out.get("text")
    assert out.relation_position(RELATIONS[0]) == 0


def test_runs_the_backbone_once_per_item(model, images, monkeypatch):
    calls = {"image": 0, "text_rows": 0}
    clip = model[0]
    original_image, original_text = clip.image_trunk, clip.text_trunk

    def count_image(pixels):
        calls["image"] += pixels.shape[0]
        return original_image(pixels)

    def count_text(ids):
        calls["text_rows"] += ids.shape[0]
        return original_text(ids)

    monkeypatch.setattr(clip, "image_trunk", count_image)
    monkeypatch.setattr(clip, "text_trunk", count_text)
    rcml_st.encode_relations(model, _items(images), [f"relation {i}" for i in range(8)])
    assert calls["image"] == 3  # three items have an image, whatever the number of relations
    assert calls["text_rows"] == 3 + 8  # three item texts, plus each relation description once


def test_restores_training_mode_and_keeps_input_order(model, images):
    model.train()
    try:
        items = _items(images)
        forward = rcml_st.encode_relations(model, items, RELATIONS[:1]).item[0]
        backward = rcml_st.encode_relations(model, items[::-1], RELATIONS[:1]).item[0]
        assert model.training
    finally:
        model.eval()
    np.testing.assert_allclose(forward, backward[::-1], atol=1e-5)


def test_items_with_their_own_relation_are_rejected(model):
    with pytest.raises(ValueError, match="item 1: has its own 'relation'"):
        rcml_st.encode_relations(model, ["a", {"text": "b", "relation": "r"}], RELATIONS)


@pytest.mark.parametrize("bad", ["", "   ", 3])
def test_bad_relations_are_rejected(model, bad):
    with pytest.raises(ValueError, match="relations must be non-empty strings or None"):
        rcml_st.encode_relations(model, ["a"], [bad])


def test_unknown_modality_is_rejected(model):
    with pytest.raises(ValueError, match="unknown modalities"):
        rcml_st.encode_relations(model, ["a"], RELATIONS, modalities=("audio",))


def test_relation_texts_are_encoded_once_per_run_and_again_after_a_weight_change(tiny_clip_config):
    from rcml_st.encoding import encode_relations

    torch.manual_seed(0)
    model = rcml_st.build_model(tiny_clip_config, device="cpu")
    adapter = model[0].text_adapter
    real_trunk, rows = adapter.trunk, []

    def counting_trunk(ids):
        rows.append(ids.shape[0])
        return real_trunk(ids)

    adapter.trunk = counting_trunk
    relations = ["matches in colour", "made by the same brand"]
    first = encode_relations(model, ["a red pram"], relations).item
    encode_relations(model, ["a blue rattle"], relations)
    assert rows == [2, 1, 1]  # the two relations once, then each call's item text only
    with torch.no_grad():
        model[0].model.text_projection.mul_(2.0)  # an in-place weight change, as an optimizer step
    again = encode_relations(model, ["a red pram"], relations).item
    assert rows == [2, 1, 1, 2, 1]
    assert first.shape == again.shape == (2, 1, 32)


def test_the_training_forward_under_every_relation_equals_encode_under_each(model, images):
    """The loss's forward (``all_relations=True``) and ``encode`` reach the same pooling formula."""
    items = _items(images)
    features = model.preprocess([{"text": "x", "relation": r} for r in RELATIONS])
    batch = model.preprocess(items)
    batch["relation_tokens"] = features["relation_tokens"]  # every item under each of the three
    with torch.no_grad():
        out = model(batch, all_relations=True)
    assert out["sentence_embedding_all"].shape == (5, 3, 32)
    for r, relation in enumerate(RELATIONS):
        expected = model.encode(items, relation=relation, convert_to_tensor=True)
        torch.testing.assert_close(out["sentence_embedding_all"][:, r], expected, atol=1e-5, rtol=1e-5)

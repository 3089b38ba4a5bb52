"""The OpenCLIP input module and relation pooling, through SentenceTransformer.encode."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

import rcml_st
from rcml_st.modules import OpenCLIPInput, RelationPooling
from rcml_st.modules.backbone import Backbone, create_backbone, save_backbone

FEEDING = "used together for infant feeding"
COLOUR = "matches in colour"


def _reference_clip(model, tmp_path):
    """An independent open_clip model with the same weights, loaded through open_clip itself."""
    clip = model[0]
    save_backbone(Backbone(clip.model, clip.model_cfg, clip.preprocess_cfg), tmp_path)
    reference = open_clip.create_model(f"local-dir:{tmp_path}")
    reference.eval()
    return reference


def test_beta_one_reproduces_the_backbones_clip_embeddings(tiny_clip_config, images, tmp_path):
    torch.manual_seed(1)
    model = rcml_st.build_model(tiny_clip_config, beta=1.0, device="cpu")
    reference = _reference_clip(model, tmp_path)
    tokenizer = open_clip.get_tokenizer(f"local-dir:{tmp_path}")
    _, preprocess = open_clip.create_model_from_pretrained(f"local-dir:{tmp_path}")
    texts = ["organic cotton nursing pillow, sage green", "bottle sterilizer"]
    pils, _ = images

    got_text = model.encode(texts, relation=FEEDING, convert_to_tensor=True)
    got_image = model.encode(pils, relation=FEEDING, convert_to_tensor=True)
    with torch.no_grad():
        want_text = F.normalize(reference.encode_text(tokenizer(texts)), dim=-1)
        want_image = F.normalize(reference.encode_image(torch.stack([preprocess(p) for p in pils])), dim=-1)
    torch.testing.assert_close(got_text, want_text, atol=1e-6, rtol=0)
    torch.testing.assert_close(got_image, want_image, atol=1e-6, rtol=0)


def test_no_relation_gives_the_plain_backbone_embedding(model, images):
    pils, _ = images
    plain = rcml_st.encode_relations(model, ["a red pram", pils[0]], [None], modalities=("item",)).item[0]
    assert np.allclose(model.encode(["a red pram", pils[0]]), plain, atol=1e-6)
    conditioned = model.encode(["a red pram", pils[0]], relation=COLOUR)
    assert not np.allclose(conditioned, plain, atol=1e-3)


def test_the_same_item_gets_a_different_vector_per_relation(model, images):
    item = {"text": "nursing pillow", "image": images[0][0]}
    feeding = model.encode(item, relation=FEEDING)
    colour = model.encode(item, relation=COLOUR)
    assert feeding.shape == (32,)
    assert np.isclose(np.linalg.norm(feeding), 1.0, atol=1e-5)
    assert np.abs(feeding - colour).max() > 1e-3


def test_per_item_relation_wins_over_the_call_level_relation(model):
    mixed = model.encode([{"text": "bottle warmer", "relation": COLOUR}, "bottle warmer"], relation=FEEDING)
    assert np.allclose(mixed[0], model.encode("bottle warmer", relation=COLOUR), atol=1e-6)
    assert np.allclose(mixed[1], model.encode("bottle warmer", relation=FEEDING), atol=1e-6)


def test_mixed_batches_match_items_encoded_alone(model, images):
    pils, paths = images
    batch = [
        "a bottle warmer",
        pils[0],
        paths[1],
        str(paths[2]),
        {"text": "nursing pillow", "image": paths[0]},
        {"image": str(paths[1]), "relation": COLOUR},
    ]
    together = model.encode(batch, relation=FEEDING)
    assert together.shape == (6, 32)
    for i, item in enumerate(batch):
        alone = model.encode([item], relation=FEEDING)[0]
        assert np.allclose(together[i], alone, atol=1e-5), i
    # A path and the same image as a PIL object are the same input.
    assert np.allclose(together[1], model.encode(paths[0], relation=FEEDING), atol=1e-5)


def test_fused_embedding_is_the_normalised_sum_of_the_modalities(model, images):
    item = {"text": "nursing pillow", "image": images[0][0]}
    out = model.encode([item, "text only"], relation=FEEDING, output_value=None)
    both, text_only = out
    assert bool(both["has_text"]) and bool(both["has_image"])
    fused = F.normalize(both["text_embedding"] + both["image_embedding"], dim=-1)
    torch.testing.assert_close(both["sentence_embedding"], fused)
    text_alone = model.encode("nursing pillow", relation=FEEDING)
    assert np.allclose(both["text_embedding"].numpy(), text_alone, atol=1e-5)
    assert np.allclose(
        both["image_embedding"].numpy(), model.encode(images[0][0], relation=FEEDING), atol=1e-5
    )
    assert bool(text_only["has_text"]) and not bool(text_only["has_image"])
    assert float(text_only["image_embedding"].abs().sum()) == 0.0
    torch.testing.assert_close(text_only["sentence_embedding"], text_only["text_embedding"])


def test_each_distinct_relation_is_encoded_once_per_batch(model):
    items = [{"text": f"item {i}", "relation": FEEDING if i % 2 else COLOUR} for i in range(6)]
    features = model.preprocess(items)
    assert features["relation_tokens"].shape[0] == 2
    assert features["relation_index"].tolist() == [0, 1, 0, 1, 0, 1]
    out = model[0](features)
    assert out["relation_embedding"].shape == (2, 32)


def test_only_one_feature_key_per_modality_uses_a_trainer_suffix(model, images):
    # The trainer groups a column's features by suffix; a second `*_input_ids` would split the column.
    features = model.preprocess([{"text": "a", "image": images[0][0], "relation": COLOUR}])
    suffixed = [key for key in features if key.endswith(("input_ids", "pixel_values", "attention_mask"))]
    assert sorted(suffixed) == ["input_ids", "pixel_values"]


@pytest.mark.parametrize(
    ("item", "kwargs", "message"),
    [
        (42, {}, "item 0: unsupported input type int"),
        ({"text": "a", "colour": "red"}, {}, "item 0: unknown key(s) ['colour']"),
        ({"image": "/nonexistent/x.png"}, {}, "item 0"),
        ("/nonexistent/photo.jpg", {}, "item 0"),
        ({"text": "a", "relation": "  "}, {}, "item 0: the relation description is empty"),
        ("a", {"relation": ""}, "item 0: the relation description is empty"),
        ({"relation": "r"}, {}, "item 0: the dict has neither 'text' nor 'image'"),
        ({"text": 3}, {}, "item 0: 'text' must be a string"),
    ],
)
def test_bad_input_raises_a_value_error_naming_the_item(model, item, kwargs, message):
    with pytest.raises(ValueError) as info:
        model.encode([item], **kwargs)
    assert message in str(info.value)


def test_bad_item_in_a_batch_is_named_with_its_content(model):
    with pytest.raises(ValueError, match=r"unsupported input type float;.*\(the item: 1\.5\)"):
        model.encode(["fine", 1.5])


def test_text_longer_than_the_context_is_truncated_not_rejected(model):
    long_text = " ".join(["pillow"] * 200)
    assert model.encode(long_text, relation=FEEDING).shape == (32,)
    assert model[0].max_seq_length == 32


def test_gradients_reach_the_pooling_and_both_towers(tiny_clip_config, images):
    model = rcml_st.build_model(tiny_clip_config, device="cpu")
    model.train()
    features = model.preprocess([{"text": "a", "image": images[0][0], "relation": COLOUR}, "b"])
    out = model(features)
    out["sentence_embedding"].sum().backward()
    clip = model[0].model
    assert model[1].attention.in_proj_weight.grad is not None
    assert clip.visual.conv1.weight.grad is not None
    assert clip.token_embedding.weight.grad is not None


def test_pooling_has_the_size_the_paper_reports_for_512_dimensions():
    # One 512-wide attention block: the 152.33M - 151.28M difference reported for RCML over CLIP.
    assert sum(p.numel() for p in RelationPooling(512).parameters()) == 1_050_624


@pytest.mark.parametrize("beta", [-0.1, 1.5])
def test_beta_outside_unit_interval_is_rejected(beta):
    with pytest.raises(ValueError, match="beta must be in"):
        RelationPooling(32, num_heads=4, beta=beta)


def test_modalities_and_dimension(model):
    clip = model[0]
    assert isinstance(clip, OpenCLIPInput)
    assert clip.get_embedding_dimension() == 32
    assert model.get_embedding_dimension() == 32
    assert "message" in model.modalities


def test_unknown_backbone_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown open_clip model 'ViT-Q-99'"):
        create_backbone("ViT-Q-99")


def test_custom_config_rejects_a_pretrained_tag(tiny_clip_config):
    with pytest.raises(ValueError, match="takes a local weights file, not a tag"):
        create_backbone(tiny_clip_config, "openai")


def test_a_batch_without_item_texts_still_takes_relations(model, images):
    # Image-only items under a relation: relation texts pass the text tower, item texts do not.
    features = model[0](model.preprocess([images[0][0], images[0][1]], relation=COLOUR))
    assert "text_global" not in features and features["relation_embedding"].shape == (1, 32)
    pooling = model[1]
    empty = pooling.condition(
        torch.zeros(0, 32), torch.zeros(0, 5, 32), torch.zeros(0, 5, dtype=torch.bool), torch.zeros(3, 32)
    )
    assert empty.shape == (0, 3, 32)
    out = model(model.preprocess([{"image": images[0][0], "relation": COLOUR}]), all_relations=True)
    assert out["sentence_embedding_all"].shape == (1, 1, 32)
    assert not bool(out["has_text"][0])

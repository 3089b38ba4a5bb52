"""Multi-scale image tokens (``image_stages``, ``rcml-st train --image-stage``) and rcml-lite's image size.

A tiny random-init timm ConvNet stands in for EfficientNet-Lite0: an earlier stage's feature map,
pooled to the last map's grid, joins the tokens the relation pooling attends to; the global
embedding and the last map's tokens stay what they were; the model saves and loads with its stage
heads; models saved before the option load and behave as before.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import rcml_st
from rcml_st.errors import UsageError
from rcml_st.modules.backbone import create_backbone

TINY_TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
CONVNET = {"timm_model_name": "test_resnet", "timm_pool": "avg", "timm_proj": "linear", "image_size": 64}
COLOUR, STYLE = "matches in colour", "drawn by the same artist"


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "convnet.json"
    path.write_text(json.dumps({"embed_dim": 32, "vision_cfg": CONVNET, "text_cfg": TINY_TEXT}))
    return path


@pytest.fixture(scope="module")
def images(structured_images_of):
    return structured_images_of(3)


def _build(config, stages=None):
    torch.manual_seed(0)
    return rcml_st.build_model(config, device="cpu", image_stages=stages, relations=[COLOUR, STYLE]).eval()


def test_an_earlier_stage_adds_its_tokens_and_keeps_the_last_maps(config, images):
    plain, staged = _build(config), _build(config, [1])
    staged[0].model.load_state_dict(plain[0].model.state_dict())  # the same towers, stage heads aside
    pixels = torch.stack([plain[0].image_transform(image) for image in images])
    with torch.no_grad():
        want_global, want_tokens, _ = plain[0].image_adapter.head(plain[0].image_trunk(pixels))
        trunk = staged[0].image_trunk(pixels)
        got_global, got_tokens, mask = staged[0].image_adapter.head(trunk)
    # test_resnet: a 2 x 2 last map (96 channels); stage 1 (32 channels) pooled to the same grid.
    assert trunk.tokens.shape == (3, 8, 96 + 32 + 2) and bool(mask.all())
    torch.testing.assert_close(got_global, want_global)
    # The last map's tokens: the tower's own projection (the stage embedding starts at zero).
    torch.testing.assert_close(got_tokens[:, :4], want_tokens)
    # The stage's tokens: its own projection of the pooled earlier map.
    stage_map = staged[0].model.visual.trunk.forward_intermediates(pixels, indices=[1])[1][0]
    pooled = torch.nn.functional.adaptive_avg_pool2d(stage_map, (2, 2)).flatten(2).transpose(1, 2)
    torch.testing.assert_close(got_tokens[:, 4:], staged[0].image_stage_heads.projections[0](pooled))
    # Trained with frozen trunks: the stage heads are heads.
    names = {name for name, _ in staged[0].head_parameters()}
    assert {"image_stage_heads.projections.0.weight", "image_stage_heads.stage_embedding"} <= names
    staged[0].freeze_trunks()
    assert all(p.requires_grad for p in staged[0].image_stage_heads.parameters())


def test_a_model_with_stages_round_trips_with_its_stage_heads(config, images, tmp_path):
    model = _build(config, [1, 2])
    with torch.no_grad():
        model[0].image_stage_heads.stage_embedding.normal_()  # as if trained
    model.save_pretrained(str(tmp_path / "saved"))
    saved = json.loads((tmp_path / "saved" / "rcml_input_config.json").read_text())
    assert saved["image_stages"] == [1, 2]
    want = model.encode(images, relation=STYLE)
    loaded = rcml_st.load(tmp_path / "saved", device="cpu")
    assert loaded[0].image_stages == [1, 2]
    np.testing.assert_allclose(loaded.encode(images, relation=STYLE), want, atol=1e-6, rtol=0)
    # The stages change what the relation sees: a different vector than without them.
    assert not np.allclose(want, _build(config).encode(images, relation=STYLE), atol=1e-3)


def test_a_model_saved_before_the_option_loads_and_encodes_as_before(config, images, tmp_path):
    model = _build(config)
    model.save_pretrained(str(tmp_path / "old"))
    assert not (tmp_path / "old" / "rcml_image_stages.safetensors").exists()
    path = tmp_path / "old" / "rcml_input_config.json"
    old = {k: v for k, v in json.loads(path.read_text()).items() if k != "image_stages"}
    path.write_text(json.dumps(old))  # what versions without the option wrote
    loaded = rcml_st.load(tmp_path / "old", device="cpu")
    assert loaded[0].image_stages == [] and loaded[0].image_stage_heads is None
    np.testing.assert_allclose(
        loaded.encode(images, relation=COLOUR), model.encode(images, relation=COLOUR), atol=1e-6, rtol=0
    )


def test_stages_that_do_not_exist_or_a_tower_without_stages_fail_clearly(config, tmp_path):
    with pytest.raises(UsageError, match=r"each must be a distinct earlier stage, 0 to 3"):
        _build(config, [4])
    with pytest.raises(UsageError, match="distinct"):
        _build(config, [1, 1])
    vit = tmp_path / "vit.json"
    vision = {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16}
    vit.write_text(json.dumps({"embed_dim": 32, "vision_cfg": vision, "text_cfg": TINY_TEXT}))
    with pytest.raises(UsageError, match="timm ConvNet"):
        _build(vit, [1])


def test_an_image_size_is_an_option_of_rcml_lite_only():
    with pytest.raises(UsageError, match="rcml-lite only"):
        create_backbone("rcml-tiny", image_size=224)

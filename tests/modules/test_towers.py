"""Every open_clip tower family gives token features, so the relation conditions both modalities.

Tiny random-init configs of each family (timm ViT, timm ConvNet, timm classifier-as-projection,
open_clip's ModifiedResNet, a Hugging Face text tower) and the real pretrained ``rcml-lite``.
For each: two relations give different vectors for the same item, in both modalities, and
``beta = 1`` reproduces open_clip's own ``encode_text`` / ``encode_image``.
"""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

import rcml_st
from rcml_st.errors import UsageError
from rcml_st.modules.backbone import Backbone, save_backbone

COLOUR, BRAND = "matches in colour", "made by the same brand"
TEXTS = ["organic cotton nursing pillow, sage green", "stainless steel bottle sterilizer"]
TINY_TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
TINY_VIT = {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16}


def _timm(name: str, pool: str, proj: str, size: int) -> dict:
    return {"timm_model_name": name, "timm_pool": pool, "timm_proj": proj, "image_size": size}


FAMILIES = {
    "timm-vit": _timm("test_vit", "token", "linear", 160),
    "timm-convnet": _timm("test_resnet", "avg", "linear", 64),
    # No extra projection: open_clip uses the timm classifier as the projection.
    "timm-classifier": _timm("test_efficientnet", "avg", "", 64),
    "modified-resnet": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
}


@pytest.fixture(scope="module")
def structured_images(structured_images_of):
    return structured_images_of(2)


@pytest.fixture(scope="module")
def hf_text_dir(tmp_path_factory):
    """A tiny random BERT with all-MiniLM-L6-v2's real tokenizer, as a local HF folder."""
    from transformers import AutoTokenizer, BertConfig

    from rcml_st.modules.lite import text_tower_dir

    folder = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    config.save_pretrained(folder)
    AutoTokenizer.from_pretrained(text_tower_dir()).save_pretrained(folder)
    return folder


def _config_file(tmp_path, vision_cfg, text_cfg=None, custom_text=False):
    config = {"embed_dim": 32, "vision_cfg": vision_cfg, "text_cfg": text_cfg or TINY_TEXT}
    if custom_text:
        config["custom_text"] = True
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def _hf_text_cfg(folder):
    return {
        "hf_model_name": str(folder),
        "hf_tokenizer_name": str(folder),
        "hf_model_pretrained": False,
        "hf_pooler_type": "mean_pooler",
        "hf_proj_type": "linear",
        "context_length": 16,
    }


def _relation_changes_both_modalities(model, images):
    items = [{"text": text, "image": image} for text, image in zip(TEXTS, images, strict=True)]
    colour = model.encode(items, relation=COLOUR, output_value=None, convert_to_tensor=True)
    brand = model.encode(items, relation=BRAND, output_value=None, convert_to_tensor=True)
    for a, b in zip(colour, brand, strict=True):
        assert (a["image_embedding"] - b["image_embedding"]).abs().max() > 1e-5
        assert (a["text_embedding"] - b["text_embedding"]).abs().max() > 1e-5


def _beta_one_is_open_clip(model, images, tmp_path):
    """At beta = 1 the embeddings are open_clip's own, for an independent copy loaded by open_clip."""
    model[1].beta = 1.0
    clip = model[0]
    save_backbone(Backbone(clip.model, clip.model_cfg, clip.preprocess_cfg), tmp_path / "ref")
    # A saved HF text tower is named relative to the model folder: build open_clip's copy from there.
    reference = rcml_st.modules.backbone.create_backbone(tmp_path / "ref").model.eval()
    with torch.no_grad():
        want_text = F.normalize(reference.encode_text(clip.tokenizer(TEXTS)), dim=-1)
        pixels = torch.stack([clip.image_transform(image) for image in images])
        want_image = F.normalize(reference.encode_image(pixels), dim=-1)
    got_text = model.encode(TEXTS, relation=COLOUR, convert_to_tensor=True)
    got_image = model.encode(images, relation=COLOUR, convert_to_tensor=True)
    torch.testing.assert_close(got_text, want_text, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_image, want_image, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_image_tower_family_conditions_both_modalities(family, structured_images, tmp_path):
    torch.manual_seed(0)
    model = rcml_st.build_model(_config_file(tmp_path, FAMILIES[family]), device="cpu").eval()
    _relation_changes_both_modalities(model, structured_images)
    _beta_one_is_open_clip(model, structured_images, tmp_path)


def test_hf_text_tower_conditions_and_round_trips(hf_text_dir, structured_images, tmp_path):
    torch.manual_seed(0)
    config = _config_file(tmp_path, TINY_VIT, _hf_text_cfg(hf_text_dir), custom_text=True)
    model = rcml_st.build_model(config, device="cpu").eval()
    _relation_changes_both_modalities(model, structured_images)
    # Saved with its tower config and tokenizer inside, named relatively: self-contained.
    model.save_pretrained(str(tmp_path / "saved"))
    saved_cfg = json.loads((tmp_path / "saved" / "open_clip_config.json").read_text())["model_cfg"]
    assert saved_cfg["text_cfg"]["hf_model_name"] == "text_tower"
    assert (tmp_path / "saved" / "text_tower" / "tokenizer.json").is_file()
    loaded = rcml_st.load(tmp_path / "saved", device="cpu")
    np.testing.assert_allclose(
        loaded.encode(TEXTS, relation=COLOUR), model.encode(TEXTS, relation=COLOUR), atol=1e-6, rtol=0
    )
    _beta_one_is_open_clip(model, structured_images, tmp_path)


def test_a_tower_without_tokens_fails_when_the_model_is_built(tmp_path):
    vision = _timm("resnet18", "abs_attn", "", 224)
    with pytest.raises(UsageError, match="attention pooling"):
        rcml_st.build_model(_config_file(tmp_path, vision), device="cpu")


def test_head_parameters_are_the_projections(tmp_path):
    model = rcml_st.build_model(_config_file(tmp_path, FAMILIES["modified-resnet"]), device="cpu")
    names = {name for name, _ in model[0].head_parameters()}
    assert names and all(
        name.startswith(("model.visual.attnpool.", "model.text_projection")) for name in names
    )
    assert "model.text_projection" in names


# ---------------------------------------------------------------------------------------------
# rcml-lite: real pretrained weights from the package index


@pytest.fixture(scope="module")
def lite():
    torch.manual_seed(0)
    return rcml_st.build_model("rcml-lite", device="cpu").eval()


def test_lite_text_tower_is_all_minilm_l6_v2(lite, tmp_path):
    import zipfile

    from sentence_transformers import SentenceTransformer

    from rcml_st.modules.lite import TEXT_PACKAGE, _package_dir

    with zipfile.ZipFile(_package_dir(TEXT_PACKAGE) / "model.zip") as archive:
        archive.extractall(tmp_path / "minilm")
    minilm = SentenceTransformer(str(tmp_path / "minilm"), device="cpu")
    want = minilm.encode(TEXTS, convert_to_tensor=True)
    # No relation: the plain (normalized) global embedding; the text projection starts as the identity.
    got = lite.encode(TEXTS, convert_to_tensor=True)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_lite_image_tower_is_timms_efficientnet_lite0(lite, structured_images):
    import timm

    from rcml_st.modules.lite import IMAGE_PACKAGE, IMAGE_WEIGHTS, _package_dir

    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = torch.load(_package_dir(IMAGE_PACKAGE) / IMAGE_WEIGHTS, map_location="cpu", weights_only=True)
    reference.load_state_dict(dict(zip(reference.state_dict(), state.values(), strict=True)))
    reference.eval()
    pixels = torch.stack([lite[0].image_transform(image) for image in structured_images])
    assert pixels.shape[-1] == 160
    with torch.no_grad():
        want = reference.forward_head(reference.forward_features(pixels), pre_logits=True)
        trunk = lite[0].image_trunk(pixels)
    torch.testing.assert_close(trunk.pooled, want, atol=1e-5, rtol=0)
    assert trunk.tokens.shape == (2, 25, 1280)  # a 5 x 5 feature map at 160 px


def test_lite_conditions_both_modalities_and_round_trips(lite, structured_images, tmp_path):
    from sentence_transformers import SentenceTransformer

    _relation_changes_both_modalities(lite, structured_images)
    lite.save_pretrained(str(tmp_path / "lite"))
    config_text = (tmp_path / "lite" / "open_clip_config.json").read_text()
    assert str(tmp_path) not in config_text and ".cache" not in config_text
    items = [{"text": TEXTS[0], "image": structured_images[0]}, structured_images[1]]
    want = lite.encode(items, relation=COLOUR)
    for loaded in (
        rcml_st.load(tmp_path / "lite", device="cpu"),
        SentenceTransformer(str(tmp_path / "lite"), trust_remote_code=True, device="cpu"),
    ):
        np.testing.assert_allclose(loaded.encode(items, relation=COLOUR), want, atol=1e-6, rtol=0)


def test_lite_without_its_extra_names_the_install_command(monkeypatch):
    import importlib.util

    from rcml_st.modules import lite as lite_module

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == lite_module.IMAGE_PACKAGE else real(name, *a),
    )
    with pytest.raises(UsageError, match=r'pip install "rcml-st\[lite\]"'):
        rcml_st.build_model("rcml-lite", device="cpu")


def test_lite_rejects_pretrained():
    with pytest.raises(UsageError, match="drop --pretrained"):
        rcml_st.modules.backbone.create_backbone("rcml-lite", "weights.pt")


def test_open_clip_still_loads_a_saved_native_model(tmp_path, structured_images):
    model = rcml_st.build_model(_config_file(tmp_path, TINY_VIT), device="cpu")
    model.save_pretrained(str(tmp_path / "native"))
    assert open_clip.create_model(f"local-dir:{tmp_path / 'native'}") is not None


def test_a_saved_model_names_its_config_file_without_its_path(tmp_path):
    model = rcml_st.build_model(_config_file(tmp_path, TINY_VIT), device="cpu")
    model.save_pretrained(str(tmp_path / "saved"))
    saved = json.loads((tmp_path / "saved" / "rcml_input_config.json").read_text())
    assert saved["backbone"] == "config.json"
    assert str(tmp_path) not in "".join(p.read_text() for p in (tmp_path / "saved").glob("*.json"))
    assert rcml_st.load(tmp_path / "saved", device="cpu")[0].backbone == "config.json"

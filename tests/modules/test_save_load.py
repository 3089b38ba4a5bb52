"""Saving with save_pretrained and loading with SentenceTransformer(..., trust_remote_code=True)."""

from __future__ import annotations

import json
import os

import numpy as np
import open_clip
import pytest
import torch
from safetensors.torch import save_file
from sentence_transformers import SentenceTransformer

import rcml_st
from rcml_st.errors import UsageError
from rcml_st.modules.backbone import create_backbone

ITEMS = ["organic cotton nursing pillow", {"text": "bottle sterilizer", "relation": "matches in colour"}]
RELATION = "used together for infant feeding"


@pytest.fixture(scope="module")
def saved(tiny_clip_config, tmp_path_factory):
    torch.manual_seed(3)
    model = rcml_st.build_model(tiny_clip_config, beta=0.3, num_heads=4, device="cpu")
    rcml_st.set_relation_vocabulary(model, [RELATION, "matches in colour", RELATION])
    path = tmp_path_factory.mktemp("saved") / "rcml-baby"
    model.save_pretrained(str(path))
    return model, path


def test_directory_is_self_contained_and_safetensors_only(saved):
    _, path = saved
    files = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    assert {
        "modules.json",
        "config_sentence_transformers.json",
        "open_clip_config.json",
        "open_clip_model.safetensors",
        "rcml_input_config.json",
        "1_RelationPooling/config.json",
        "1_RelationPooling/model.safetensors",
    } <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth"))]
    model_cfg = json.loads((path / "open_clip_config.json").read_text())["model_cfg"]
    assert model_cfg["embed_dim"] == 32 and model_cfg["vision_cfg"]["image_size"] == 32


def test_requirements_are_declared(saved):
    _, path = saved
    config = json.loads((path / "config_sentence_transformers.json").read_text())
    assert set(config["requirements"]) == {"rcml-st", "open_clip_torch"}


def test_loads_offline_with_identical_embeddings(saved, monkeypatch):
    model, path = saved
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = SentenceTransformer(str(path), trust_remote_code=True, device="cpu")
    want = model.encode(ITEMS, relation=RELATION)
    np.testing.assert_array_equal(loaded.encode(ITEMS, relation=RELATION), want)
    np.testing.assert_array_equal(rcml_st.load(path, device="cpu").encode(ITEMS, relation=RELATION), want)
    assert loaded[1].beta == 0.3 and loaded[1].num_heads == 4


def test_the_relation_vocabulary_is_remembered(saved):
    _, path = saved
    assert rcml_st.relation_vocabulary(rcml_st.load(path)) == sorted([RELATION, "matches in colour"])


def test_loading_without_trust_remote_code_is_refused(saved):
    # sentence-transformers 6 imports module classes outside its namespace only when trusted.
    _, path = saved
    with pytest.raises(ValueError, match="trust_remote_code"):
        SentenceTransformer(str(path), device="cpu")


def test_the_directory_is_also_a_plain_open_clip_model(saved):
    model, path = saved
    plain = open_clip.create_model(f"local-dir:{path}")
    for name, tensor in plain.state_dict().items():
        torch.testing.assert_close(tensor, model[0].model.state_dict()[name])


def test_load_rejects_directories_that_are_not_rcml_models(tmp_path):
    with pytest.raises(UsageError, match="not a saved model directory"):
        rcml_st.load(tmp_path)


def test_pretrained_local_weights_file_is_loaded(tiny_clip_config, tmp_path):
    torch.manual_seed(5)
    source = create_backbone(tiny_clip_config)
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.model.state_dict().items()}, str(weights))
    torch.save(source.model.state_dict(), tmp_path / "weights.pt")
    for file in (weights, tmp_path / "weights.pt"):
        loaded = create_backbone(tiny_clip_config, str(file))
        for name, tensor in source.model.state_dict().items():
            torch.testing.assert_close(loaded.model.state_dict()[name], tensor)
    model = rcml_st.build_model(tiny_clip_config, pretrained=weights, device="cpu")
    assert torch.equal(model[0].model.visual.conv1.weight, source.model.visual.conv1.weight)


def test_weights_that_do_not_fit_are_a_clear_error(tiny_clip_config, tmp_path):
    weights = tmp_path / "other.safetensors"
    save_file({"visual.conv1.weight": torch.zeros(3, 3)}, str(weights))
    with pytest.raises(UsageError, match="does not fit this architecture"):
        create_backbone(tiny_clip_config, str(weights))


def test_named_architecture_with_unknown_tag_lists_the_tags():
    with pytest.raises(UsageError, match="neither a local weights file nor a pretrained tag of ViT-B-32"):
        create_backbone("ViT-B-32", "no-such-tag")


@pytest.mark.slow
def test_named_architecture_loads_a_local_weights_file(tmp_path):
    # The real pretrained path for a named model (ViT-B-32), fed a local file since no hub is reachable.
    torch.manual_seed(7)
    source = open_clip.create_model("ViT-B-32")
    file = tmp_path / "vit-b-32.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(file))
    del source
    model = rcml_st.build_model("ViT-B-32", pretrained=file, device="cpu")
    reference = open_clip.create_model("ViT-B-32", pretrained=str(file))
    torch.testing.assert_close(model[0].model.visual.proj, reference.visual.proj)
    assert model.get_embedding_dimension() == 512
    assert os.path.getsize(file) > 100_000_000


def test_builtin_architecture_names_build_directly():
    model = rcml_st.build_model("rcml-small", device="cpu")
    assert model.get_embedding_dimension() == 64
    with pytest.raises(UsageError, match="takes a local weights file, not a tag"):
        create_backbone("rcml-tiny", "openai")

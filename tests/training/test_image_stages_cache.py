"""The trunk cache of a model with multi-scale image tokens (``image_stages``) serves what its trunk does."""

from __future__ import annotations

import json

import torch

import rcml_st
from rcml_st.data import generate_catalog
from rcml_st.training.trunk_cache import TrunkCache

TINY_TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
CONVNET = {"timm_model_name": "test_resnet", "timm_pool": "avg", "timm_proj": "linear", "image_size": 32}


def test_cached_stage_tokens_equal_the_trunks_and_have_their_own_fingerprint(tmp_path):
    data = generate_catalog(tmp_path / "data", n_items=8, seed=1, image_size=32)
    images = sorted(str(p) for p in data.images_dir.glob("*.png"))[:5]
    config = tmp_path / "convnet.json"
    config.write_text(json.dumps({"embed_dim": 32, "vision_cfg": CONVNET, "text_cfg": TINY_TEXT}))
    caches = {}
    for stages in ([], [1, 2]):
        torch.manual_seed(0)
        clip = rcml_st.build_model(config, device="cpu", image_stages=stages)[0]
        clip.freeze_trunks()
        cache = TrunkCache.build(clip, ["a red pram"], images, tmp_path / "cache" / str(len(stages)))
        caches[len(stages)] = cache
        got = cache.image_trunk(images)
        with torch.no_grad():
            want = clip.image_trunk(clip.preprocess([{"image": i} for i in images])["pixel_values"])
        torch.testing.assert_close(got.tokens, want.tokens, atol=1e-6, rtol=0)
        torch.testing.assert_close(got.pooled, want.pooled, atol=1e-6, rtol=0)
        assert bool(got.mask.all())
    # Same towers, same data: the stages alone change what is cached, so the fingerprints differ.
    assert caches[0].folder.name != caches[2].folder.name
    assert caches[2].image_trunk(images).tokens.shape[1] == 3 * caches[0].image_trunk(images).tokens.shape[1]

"""The ``zero_shot`` baseline: the untrained backbone a model was trained from, rebuilt offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rcml_st
from rcml_st.errors import UsageError
from rcml_st.evaluation import evaluate_catalog
from rcml_st.evaluation.methods import build_zero_shot, zero_shot_spec

TEXTS = ["organic cotton nursing pillow, sage green", "stainless steel bottle warmer"]


@pytest.fixture(scope="module")
def fine_tuned_lite():
    """An rcml-lite model whose weights moved away from the packaged ones (as training does)."""
    torch.manual_seed(0)
    model = rcml_st.build_model("rcml-lite", device="cpu")
    with torch.no_grad():
        for parameter in model[0].parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    return model


def test_zero_shot_is_the_untrained_backbone_not_the_fine_tuned_one(fine_tuned_lite):
    assert zero_shot_spec(fine_tuned_lite) == ("rcml-lite", None)
    untrained = build_zero_shot(fine_tuned_lite, seed=0)
    # all-MiniLM-L6-v2 as packaged: the lite text side starts as exactly it.
    torch.manual_seed(123)
    fresh = rcml_st.build_model("rcml-lite", device="cpu")
    np.testing.assert_allclose(untrained.encode(TEXTS), fresh.encode(TEXTS), atol=1e-5)
    assert not np.allclose(untrained.encode(TEXTS), fine_tuned_lite.encode(TEXTS), atol=1e-3)
    # Fresh parts (the image projection) follow the seed, not the global random state.
    state = torch.random.get_rng_state()
    again = build_zero_shot(fine_tuned_lite, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    for a, b in zip(untrained.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)


def test_backbones_that_cannot_be_rebuilt_say_why(model, tiny_clip_config):
    with pytest.raises(UsageError, match="custom architecture"):
        zero_shot_spec(model)  # built from a model-config JSON that is not shipped with it
    with pytest.raises(UsageError, match="random weights"):
        zero_shot_spec(rcml_st.build_model("rcml-tiny", device="cpu"))
    odd = rcml_st.build_model(tiny_clip_config, device="cpu")
    odd[0].backbone, odd[0].pretrained = "ViT-B-32", "my-weights.pt"
    with pytest.raises(UsageError, match="not an open_clip pretrained tag"):
        zero_shot_spec(odd)
    odd[0].pretrained = "openai"
    assert zero_shot_spec(odd) == ("ViT-B-32", "openai")


def test_left_out_with_the_reason_in_the_report(model, test_catalog):
    report = evaluate_catalog(model, test_catalog, baselines=("clip", "zero_shot"), negatives=4)
    assert list(report.methods) == ["rcml", "clip"]
    assert "custom architecture" in report.settings["zero_shot"]["left_out"]


def test_in_the_report_beside_clip(fine_tuned_lite, test_catalog):
    catalog = test_catalog.subset(range(12))
    report = evaluate_catalog(
        fine_tuned_lite, catalog, baselines=("clip", "zero_shot"), negatives=3, probe_max_edges=40
    )
    data = report.to_dict()
    assert list(data["retrieval"]) == ["rcml", "clip", "zero_shot"]
    assert data["settings"]["zero_shot"] == {"backbone": "rcml-lite", "pretrained": None}
    assert data["retrieval"]["zero_shot"]["avg"]["hit@5"] is not None
    assert data["retrieval"]["zero_shot"] != data["retrieval"]["clip"]
    # Exactly the clip protocol on a freshly built rcml-lite.
    from rcml_st.evaluation import build_queries, score_retrieval
    from rcml_st.evaluation.methods import clip_baseline, encode_with_plain

    torch.manual_seed(7)
    fresh = rcml_st.build_model("rcml-lite", device="cpu")
    _, plain = encode_with_plain(fresh, catalog, [])
    expected = clip_baseline(fresh, catalog, catalog.relations, plain)
    queries = build_queries(catalog, 3, 0)
    assert score_retrieval(expected, queries).metrics["tt"] == data["retrieval"]["zero_shot"]["tt"]

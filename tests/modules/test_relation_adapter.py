"""The relation adapter (``--relation-adapter RANK``): the relation acts on the features."""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F

import rcml_st
from rcml_st.modules.pooling import RelationPooling


def _inputs(n=5, length=7, d=16, q=3):
    generator = torch.Generator().manual_seed(0)
    global_ = torch.randn(n, d, generator=generator)
    tokens = torch.randn(n, length, d, generator=generator)
    mask = torch.ones(n, length, dtype=torch.bool)
    mask[0, 4:] = False  # a shorter item
    queries = torch.randn(q, d, generator=generator)
    return global_, tokens, mask, queries


def _pair(beta=0.5, rank=4):
    torch.manual_seed(0)
    plain = RelationPooling(16, num_heads=4, beta=beta)
    torch.manual_seed(0)
    adapted = RelationPooling(16, num_heads=4, beta=beta, relation_adapter=rank)
    return plain, adapted


def test_untrained_adapter_is_exactly_the_papers_pooling():
    plain, adapted = _pair()
    for modality in ("text", "image"):
        assert torch.equal(plain.condition(*_inputs()), adapted.condition(*_inputs(), modality))


def _spread(z: torch.Tensor) -> torch.Tensor:
    """Mean cosine of each item's vectors under relations 0 and 1."""
    return (z[:, 0] * z[:, 1]).sum(-1).mean()


def _fit_image_side(adapted, targets, optimizer, steps):
    """Trains the image adapter towards ``targets`` (N, Q, D); returns the vectors before and after."""
    global_, tokens, mask, queries = _inputs(q=2)
    adapted.attention.requires_grad_(False)
    before = adapted.condition(global_, tokens, mask, queries, "image").detach()
    for _ in range(steps):
        loss = -(adapted.condition(global_, tokens, mask, queries, "image") * targets).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return before, adapted.condition(global_, tokens, mask, queries, "image").detach()


def test_a_few_steps_make_the_relations_pull_one_item_apart():
    # Relation 0 asks for one view of each item, relation 1 for another: with the paper's
    # pooling frozen, only the adapter can tell them apart.
    plain, adapted = _pair()
    global_, tokens, mask, queries = _inputs(q=2)
    generator = torch.Generator().manual_seed(1)
    targets = F.normalize(torch.randn(2, 16, 16, generator=generator) @ global_.T, dim=1).permute(2, 0, 1)
    optimizer = torch.optim.Adam(adapted.adapter.parameters(), lr=0.05)
    before, after = _fit_image_side(adapted, targets, optimizer, steps=30)
    assert torch.allclose(before, plain.condition(global_, tokens, mask, queries))
    assert _spread(after) < _spread(before) - 0.1
    assert torch.allclose(after.norm(dim=-1), torch.ones(5, 2), atol=1e-5)
    # The text side has its own adapter, untouched by training the image side.
    assert torch.equal(adapted.condition(global_, tokens, mask, queries, "text"), before)


def test_the_residual_trains_from_the_first_steps():
    # LoRA's initialisation (U at zero, V orthonormal, s at unit scale): a few small steps move an
    # item's vectors under two relations apart. With s at zero instead (U and V at nn.Linear's
    # small default), 6 steps at lr 1e-2 moved them by about 3e-5.
    _, adapted = _pair(rank=4)
    generator = torch.Generator().manual_seed(2)
    targets = F.normalize(torch.randn(5, 2, 16, generator=generator), dim=-1)
    optimizer = torch.optim.SGD(adapted.adapter.parameters(), lr=1e-2)
    before, after = _fit_image_side(adapted, targets, optimizer, steps=6)
    assert (after - before).norm(dim=-1).max() > 1e-3


def test_at_beta_one_the_adapter_alone_conditions_the_global_embedding():
    plain, adapted = _pair(beta=1.0)
    global_, tokens, mask, queries = _inputs()
    same = adapted.condition(global_, tokens, mask, queries)
    assert torch.allclose(same, plain.condition(global_, tokens, mask, queries), atol=1e-6)
    with torch.no_grad():
        adapted.adapter["text"].up.weight.normal_()
    out = adapted.condition(global_, tokens, mask, queries)
    assert not torch.allclose(out[:, 0], out[:, 1], atol=1e-3)


def test_adapter_is_saved_and_configs_without_it_load_as_the_papers_pooling(tmp_path):
    _, adapted = _pair()
    with torch.no_grad():
        adapted.adapter["image"].up.weight.fill_(0.3)
    adapted.save(str(tmp_path))
    loaded = RelationPooling.load(str(tmp_path))
    assert loaded.relation_adapter == 4
    args = _inputs()
    assert torch.equal(loaded.condition(*args, "image"), adapted.condition(*args, "image"))
    config = json.loads((tmp_path / "config.json").read_text())
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "relation_adapter"}))
    plain = RelationPooling(16, num_heads=4)
    plain.save_torch_weights(str(old), safe_serialization=True)
    before_adapter = RelationPooling.load(str(old))
    assert before_adapter.adapter is None and before_adapter.relation_adapter == 0
    assert torch.equal(before_adapter.condition(*args), plain.condition(*args))


def test_a_saved_model_round_trips_and_serves_a_relation_never_trained_on(tiny_clip_config, tmp_path):
    torch.manual_seed(0)
    model = rcml_st.build_model(tiny_clip_config, num_heads=4, device="cpu")
    rcml_st.set_relation_vocabulary(model, ["matches in colour", "made by the same brand"])
    model[1].enable_relation_adapter(8)
    with torch.no_grad():
        for adapter in model[1].adapter.values():
            adapter.up.weight.normal_()
    model.save_pretrained(str(tmp_path / "m"))
    loaded = rcml_st.load(tmp_path / "m", device="cpu")
    item = [{"text": "Oakbud crib mobile, navy"}]
    for relation in ("matches in colour", "hangs above the same crib"):  # the second: never trained on
        a = model.encode(item, relation=relation)
        b = loaded.encode(item, relation=relation)
        np.testing.assert_allclose(a, b, atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(a, axis=-1), 1.0, atol=1e-5)
    unseen = loaded.encode(item, relation="hangs above the same crib")
    assert not np.allclose(unseen, loaded.encode(item, relation="matches in colour"), atol=1e-3)

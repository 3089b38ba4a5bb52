"""The relation pooling's optional per-relation dimension gate (``--relation-gate``)."""

from __future__ import annotations

import json

import torch

from rcml_st.modules.pooling import RelationPooling


def _inputs(n=5, length=7, d=16, q=3):
    generator = torch.Generator().manual_seed(0)
    global_ = torch.randn(n, d, generator=generator)
    tokens = torch.randn(n, length, d, generator=generator)
    mask = torch.ones(n, length, dtype=torch.bool)
    queries = torch.randn(q, d, generator=generator)
    return global_, tokens, mask, queries


def _pair(seed=0):
    torch.manual_seed(seed)
    plain = RelationPooling(16, num_heads=4)
    torch.manual_seed(seed)
    gated = RelationPooling(16, num_heads=4, relation_gate=True)
    return plain, gated


def test_untrained_gate_is_the_identity():
    plain, gated = _pair()
    args = _inputs()
    assert torch.allclose(plain.condition(*args), gated.condition(*args), atol=1e-6)


def test_trained_gate_weighs_dimensions_per_relation():
    plain, gated = _pair()
    with torch.no_grad():
        gated.gate.weight.copy_(torch.randn(16, 16))
    global_, tokens, mask, queries = _inputs()
    out = gated.condition(global_, tokens, mask, queries)
    ref = plain.condition(global_, tokens, mask, queries)
    assert out.shape == ref.shape == (5, 3, 16)
    assert torch.allclose(out.norm(dim=-1), torch.ones(5, 3), atol=1e-5)
    # Each relation rescales the same mixed vector by its own positive per-dimension gate.
    gate = 2 * torch.sigmoid(gated.gate(queries))
    expected = torch.nn.functional.normalize(ref * gate, dim=-1)
    assert torch.allclose(out, expected, atol=1e-5)
    # Relations pull the same item further apart than without the gate.
    spread = lambda z: (z[:, 0] * z[:, 1]).sum(-1).mean()  # noqa: E731
    assert spread(out) < spread(ref)


def test_gate_is_saved_and_old_configs_load_without_it(tmp_path):
    _, gated = _pair()
    with torch.no_grad():
        gated.gate.bias.fill_(0.3)
    gated.save(str(tmp_path))
    loaded = RelationPooling.load(str(tmp_path))
    assert loaded.relation_gate and torch.equal(loaded.gate.bias, gated.gate.bias)
    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("relation_gate")
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps(config))
    RelationPooling(16, num_heads=4).save_torch_weights(str(old), safe_serialization=True)
    assert RelationPooling.load(str(old)).gate is None


def test_no_gate_at_beta_one():
    torch.manual_seed(0)
    gated = RelationPooling(16, num_heads=4, beta=1.0, relation_gate=True)
    with torch.no_grad():
        gated.gate.weight.normal_()
    global_, tokens, mask, queries = _inputs()
    out = gated.condition(global_, tokens, mask, queries)
    assert torch.allclose(out[:, 0], torch.nn.functional.normalize(global_, dim=-1), atol=1e-6)

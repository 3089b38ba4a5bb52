"""The folded attention equals multi-head attention over projected tokens, values and gradients.

Frozen-trunk training never projects the trunk tokens: the relation pooling evaluates the
attention on the query side (rcml_st.modules.folded_attention). These tests hold it to the
plain computation (project every token, then ``nn.MultiheadAttention``) for shared and per-item
queries, padded tokens, heads with and without a bias, and through a whole RCML training step of
a frozen model, and check the batching of a loss's two columns into one forward pass.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rcml_st
from rcml_st.losses import RCMLLoss
from rcml_st.modules import OpenCLIPInput
from rcml_st.modules.columns import column_sizes, concat_columns
from rcml_st.modules.folded_attention import SharedProducts, folded_attention, linear_map
from rcml_st.training.frozen import freeze_backbone

DIM, HEADS, WIDTH = 16, 4, 24


def _case(queries_shape: tuple[int, ...], bias: bool, seed: int = 0):
    torch.manual_seed(seed)
    attention = nn.MultiheadAttention(DIM, HEADS, batch_first=True)
    with torch.no_grad():  # non-zero biases, so that dropping the key bias is really checked
        attention.in_proj_bias.normal_()
        attention.out_proj.bias.normal_()
    head = nn.Linear(WIDTH, DIM, bias=bias)
    tokens = torch.randn(5, 7, WIDTH)
    mask = torch.ones(5, 7, dtype=torch.bool)
    mask[1, 3:] = False  # padded items
    mask[4, 1:] = False
    queries = torch.randn(*queries_shape, requires_grad=True)
    return attention, head, tokens, mask, queries


def _plain(attention, head, tokens, mask, queries):
    x = head(tokens)
    q = queries if queries.dim() == 3 else queries.unsqueeze(0).expand(tokens.shape[0], -1, -1)
    out, _ = attention(q, x, x, key_padding_mask=~mask, need_weights=False)
    return out


def _grads(out, *tensors):
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)  # a loss that weighs every output
    return torch.autograd.grad((out * weights).sum(), tensors)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("queries_shape", [(3, DIM), (5, 2, DIM), (5, 1, DIM)])
def test_folded_attention_equals_attention_over_projected_tokens(queries_shape, bias):
    attention, head, tokens, mask, queries = _case(queries_shape, bias)
    params = [queries, *attention.parameters(), *head.parameters()]
    want = _plain(attention, head, tokens, mask, queries)
    got = folded_attention(attention, queries, tokens, mask, (head.weight, head.bias))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for g, w in zip(_grads(got, *params), _grads(want, *params), strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)


def test_the_shared_query_kernel_passes_gradcheck():
    from rcml_st.modules.folded_attention import _SharedQueryPool

    torch.manual_seed(0)
    directions = torch.randn(2 * 3, 5, dtype=torch.float64, requires_grad=True)  # Q=2, H=3
    value_map = torch.randn(3, 2, 5, dtype=torch.float64, requires_grad=True)
    tokens = torch.randn(4, 6, 5, dtype=torch.float64)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[0, 2:] = False
    assert torch.autograd.gradcheck(
        lambda d, m: _SharedQueryPool.apply(d, m, tokens, mask), (directions, value_map)
    )


def test_per_item_queries_fold_the_key_map_once_for_a_large_batch():
    # Many items per query set: the key projection is folded into the head once (Wk P), the
    # other branch of the per-item path; same result.
    attention, head, _, _, _ = _case((1, DIM), bias=True)
    tokens, mask = torch.randn(40, 3, WIDTH), torch.ones(40, 3, dtype=torch.bool)
    queries = torch.randn(40, 2, DIM)
    want = _plain(attention, head, tokens, mask, queries)
    shared = SharedProducts()
    with shared.scope():
        got = folded_attention(attention, queries, tokens, mask, (head.weight, head.bias), shared)
        assert len(shared._memo) == 2  # Wk P and Wv P
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_shared_products_serve_a_second_call_and_keep_both_gradients():
    attention, head, tokens, mask, queries = _case((3, DIM), bias=False)
    params = list(head.parameters()) + list(attention.parameters())
    projection = (head.weight, None)
    shared = SharedProducts()
    with shared.scope():
        first = folded_attention(attention, queries, tokens[:2], mask[:2], projection, shared)
        second = folded_attention(attention, queries, tokens[2:], mask[2:], projection, shared)
        assert len(shared._memo) == 1
    assert shared._memo is None  # the scope is closed: nothing is kept past the step
    alone = torch.cat(
        [
            folded_attention(attention, queries, t, m, projection)
            for t, m in ((tokens[:2], mask[:2]), (tokens[2:], mask[2:]))
        ]
    )
    together = torch.cat([first, second])
    torch.testing.assert_close(together, alone)
    for g, w in zip(_grads(together, *params), _grads(alone, *params), strict=True):
        torch.testing.assert_close(g, w, atol=1e-6, rtol=1e-5)


def test_shared_products_see_an_in_place_change_of_a_weight():
    shared = SharedProducts()
    a, b = torch.randn(3, 4), torch.randn(4, 2)
    with shared.scope():
        before = shared.matmul(a, b)
        a.mul_(2)  # the version counter moves: not the product remembered
        after = shared.matmul(a, b)
    torch.testing.assert_close(after, 2 * before)


def test_linear_map_accepts_one_affine_layer_only():
    linear = nn.Linear(6, 4)
    assert linear_map(nn.Sequential(nn.Dropout(0.0), linear))[0] is linear.weight
    matrix = torch.randn(6, 4)
    weight, bias = linear_map(matrix)  # used as x @ matrix
    assert torch.equal(weight, matrix.T) and bias is None
    assert linear_map(None, nn.Identity(), linear) is not None
    assert linear_map(nn.Sequential(linear, nn.GELU(), nn.Linear(4, 4))) is None  # an MLP
    assert linear_map(nn.Linear(6, 5), nn.Linear(5, 4)) is None  # two layers
    assert linear_map(nn.Dropout(0.1), linear) is None  # drops tokens at random in training
    assert linear_map(nn.Dropout(0.1).eval(), linear) is not None
    assert linear_map(nn.LayerNorm(6), linear) is None
    assert linear_map(None) is None  # no projection at all: tokens are used as they are


ITEMS = [
    {"text": "organic cotton nursing pillow", "image": None},
    {"text": "milk storage bags, 50 pack", "image": None},
    {"text": "bottle sterilizer and dryer", "image": None},
    {"text": "a soft grey pram blanket", "image": None},
]


def _columns(clip, images):
    anchors = [dict(ITEMS[0], image=images[0]), ITEMS[1], dict(ITEMS[2], image=images[1])]
    positives = [ITEMS[3], dict(ITEMS[0], image=images[2]), ITEMS[1]]
    return [clip.preprocess(anchors), clip.preprocess(positives)]


def _step(model, loss, columns, labels):
    terms = loss([dict(c) for c in columns], labels)
    total = torch.stack(list(terms.values())).sum()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(total, [p for p in model.parameters() if p.requires_grad])
    return total.detach(), dict(zip(names, grads, strict=True))


def test_a_frozen_training_step_folded_equals_the_projected_tokens(tiny_clip_config, images, monkeypatch):
    torch.manual_seed(0)
    model = rcml_st.build_model(tiny_clip_config, device="cpu")
    freeze_backbone(model)
    model.train()
    relations = ["bought together", "matches in colour"]
    loss = RCMLLoss(model, relations)
    columns = _columns(model[0], images[0])
    labels = torch.tensor([[0, 3, 0], [1, 0, 1], [2, 1, 0]])
    folded = _step(model, loss, columns, labels)
    assert model[0]._folded_projection("text") is not None
    assert model[0]._folded_projection("image") is not None
    monkeypatch.setattr(OpenCLIPInput, "_folded_projection", lambda self, modality: None)
    plain = _step(model, loss, columns, labels)
    torch.testing.assert_close(folded[0], plain[0], atol=1e-5, rtol=1e-5)
    assert folded[1].keys() == plain[1].keys() and len(folded[1]) > 2  # heads and pooling train
    for name in folded[1]:
        torch.testing.assert_close(folded[1][name], plain[1][name], atol=1e-5, rtol=1e-4, msg=name)


def test_a_loss_encodes_its_two_columns_in_one_pass_with_the_same_result(tiny_clip_config, images):
    torch.manual_seed(0)
    model = rcml_st.build_model(tiny_clip_config, device="cpu").eval()
    clip = model[0]
    columns = _columns(clip, images[0])
    columns[0] = clip.preprocess([dict(ITEMS[0], relation="r"), ITEMS[1], dict(ITEMS[2], image=images[0][1])])
    merged = concat_columns(columns)
    assert column_sizes(columns) == [3, 3]
    assert merged["relation_index"].tolist() == [0, -1, -1, -1, -1, -1]
    with torch.no_grad():
        one = model(merged)["sentence_embedding"]
        each = torch.cat([model(dict(c))["sentence_embedding"] for c in columns])
    torch.testing.assert_close(one, each, atol=1e-6, rtol=1e-5)


def test_columns_of_different_kinds_are_not_merged(tiny_clip_config, images):
    clip = rcml_st.build_model(tiny_clip_config, device="cpu")[0]
    raw = clip.preprocess([ITEMS[0]])
    cached = {
        **raw,
        "text_trunk_pooled": torch.zeros(1, 4),
        "text_trunk_tokens": torch.zeros(1, 2, 4),
        "text_trunk_mask": torch.ones(1, 2, dtype=torch.bool),
    }
    cached["input_ids"] = raw["input_ids"][:0]
    assert concat_columns([raw, cached]) is None  # token ids and cached trunk outputs
    assert concat_columns([raw, {**raw, "prompt_length": torch.tensor(1)}]) is None  # unknown key
    texts_only, images_only = clip.preprocess([ITEMS[0]]), clip.preprocess([images[0][0]])
    both = concat_columns([texts_only, images_only])  # a modality missing from one column is fine
    assert both["text_index"].tolist() == [0] and both["image_index"].tolist() == [1]


def test_a_frozen_step_trains_under_mixed_precision(tiny_clip_config, images):
    # As `--bf16` training does on a GPU (accelerate wraps the model's forward in autocast):
    # half precision weights reach the folded pooling, whose kernel computes in one precision
    # and returns each gradient in its input's.
    torch.manual_seed(0)
    model = rcml_st.build_model(tiny_clip_config, device="cpu")
    freeze_backbone(model)
    model.train()
    model.forward = torch.autocast("cpu", dtype=torch.bfloat16)(model.forward)
    loss = RCMLLoss(model, ["bought together", "matches in colour"])
    labels = torch.tensor([[0, 3, 0], [1, 0, 1], [2, 1, 0]])
    terms = loss(_columns(model[0], images[0]), labels)
    total = torch.stack(list(terms.values())).sum()
    total.backward()
    trained = [p for p in model.parameters() if p.requires_grad]
    assert torch.isfinite(total)
    assert all(
        p.grad is not None and p.grad.dtype == p.dtype and torch.isfinite(p.grad).all() for p in trained
    )

"""Relation pooling over frozen trunk tokens without projecting them: the attention, folded.

With frozen tower trunks (``--freeze-backbone``) an item's trunk tokens ``t`` (N, L, C) are
constants, and what trains is an affine projection into the joint space, ``x = P t + b``, and the
relation pooling's attention (``Wq, Wk, Wv, Wo``). Projecting every token and then running the
key and value projections costs ``O(N·L·C·D + N·L·D²)`` per pass, forward and backward: most of a
frozen training step. But every operation on ``t`` up to the softmax is linear, so the attention
can be evaluated on the query side instead. For relation ``q`` and head ``h``, with
``q'_h = (Wq q + bq)_h / sqrt(d_h)``:

- the scores ``q'_h · (Wk_h x_l + bk_h)`` equal ``t_l · (P^T Wk_h^T q'_h)`` plus a term that is the
  same for every token (the biases), which the softmax cancels: one direction in the trunk's
  width per (relation, head), and the scores are a single product with the tokens;
- the values ``Σ_l a_l (Wv_h x_l + bv_h)`` equal ``(Wv_h P)(Σ_l a_l t_l) + Wv_h b + bv_h``
  because the weights ``a`` sum to one: the tokens are summed first, then projected once per
  (item, relation, head).

The cost falls to ``O(N·L·C·Q·H + N·Q·C·D + D²·C)`` for Q relations and H heads, and no (N, L, D)
tensor is ever made. The result equals :class:`torch.nn.MultiheadAttention` applied to the
projected tokens up to float rounding (checked by the tests). The products that depend only on
the weights (``Wv P`` and, for per-item queries, ``Wk P``) can be shared by several calls inside
one training step through :class:`SharedProducts`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

TokenProjection = tuple[torch.Tensor, torch.Tensor | None]
"""``(weight (D, C), bias (D,) or None)``: a tower head's affine map of one token, ``x = W t + b``."""


def linear_map(*parts: nn.Module | torch.Tensor | None) -> TokenProjection | None:
    """The affine map that applying ``parts`` in order makes of one token, if it is one linear layer.

    Every part must be a no-op (``None``, ``nn.Identity``, a dropout that drops nothing) except
    at most one ``nn.Linear`` or one matrix applied as ``x @ matrix``; anything else (an MLP, a
    norm, an active dropout, two linear layers) gives ``None``, and the caller projects the
    tokens as usual.

    Example:
        >>> head = nn.Sequential(nn.Dropout(0.0), nn.Linear(6, 4, bias=False))
        >>> weight, bias = linear_map(head)
        >>> weight.shape, bias
        (torch.Size([4, 6]), None)
        >>> linear_map(nn.Sequential(nn.Linear(6, 6), nn.GELU())) is None
        True
    """
    found: list[TokenProjection] = []

    def walk(part: nn.Module | torch.Tensor | None) -> bool:
        if part is None or isinstance(part, nn.Identity):
            return True
        if isinstance(part, torch.Tensor):
            if part.dim() != 2:
                return False
            found.append((part.T, None))  # x @ matrix
            return True
        if isinstance(part, nn.Dropout):
            return part.p == 0.0 or not part.training
        if isinstance(part, nn.Linear):
            found.append((part.weight, part.bias))
            return True
        if isinstance(part, nn.Sequential):
            return all(walk(child) for child in part)
        return False

    if not all(walk(part) for part in parts) or len(found) != 1:
        return None
    return found[0]


class SharedProducts:
    """Weight products computed once and reused by every folded attention call inside a scope.

    A training step encodes two columns (anchors, positives) with the same weights; ``Wv P`` is
    ``D² · C`` multiply-adds, more than the rest of a column's attention, forward and backward.
    Inside :meth:`scope` the product is kept (with its graph) and served again to later calls;
    the scope must end before the weights change, and the step must call ``backward`` once on
    what the calls computed (as a loss over both columns does).

    Example:
        >>> shared = SharedProducts()
        >>> a, b = torch.randn(3, 4), torch.randn(4, 5)
        >>> with shared.scope():
        ...     first, again = shared.matmul(a, b), shared.matmul(a, b)
        >>> first is again, shared.matmul(a, b) is first
        (True, False)
    """

    def __init__(self) -> None:
        self._memo: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Within this block, :meth:`matmul` of the same two tensors is computed once."""
        outer = self._memo
        self._memo = {} if outer is None else outer
        try:
            yield
        finally:
            self._memo = outer

    @staticmethod
    def _key(t: torch.Tensor) -> tuple:
        # Views of one weight (a chunk, a transpose) are new objects at every call: key by storage
        # and layout. The memo keeps its operands alive, so no other tensor can take that storage.
        return (t.data_ptr(), tuple(t.shape), t.stride(), t._version, t.dtype, t.device)

    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a @ b``, remembered inside a scope (by the storage, layout and version of the two)."""
        if self._memo is None:
            return a @ b
        key = (self._key(a), self._key(b), torch.is_grad_enabled())
        if key not in self._memo:
            self._memo[key] = (a, b, a @ b)
        return self._memo[key][2]


_NO_SHARING = SharedProducts()


def folded_attention(
    attention: nn.MultiheadAttention,
    queries: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    projection: TokenProjection,
    shared: SharedProducts = _NO_SHARING,
) -> torch.Tensor:
    """``attention(queries, P t + b, P t + b)`` computed on the query side (see the module docstring).

    Args:
        attention: the pooling's attention (``batch_first``, one packed in-projection, no dropout).
        queries: relation embeddings, (Q, D) shared by every item or (N, Q, D) per item.
        tokens: the items' trunk tokens before the projection, (N, L, C).
        mask: which tokens are real, (N, L) bool.
        projection: the head's ``(weight (D, C), bias (D,) or None)``.
        shared: where to keep weight products for the rest of a training step.

    Returns:
        The attention output (N, Q, D), as :class:`torch.nn.MultiheadAttention` gives it.

    Example:
        >>> attention = nn.MultiheadAttention(8, 2, batch_first=True)
        >>> weight, tokens = torch.randn(8, 5), torch.randn(3, 4, 5)
        >>> mask = torch.ones(3, 4, dtype=torch.bool)
        >>> queries = torch.randn(2, 8)
        >>> folded = folded_attention(attention, queries, tokens, mask, (weight, None))
        >>> x = tokens @ weight.T
        >>> plain, _ = attention(queries.expand(3, -1, -1), x, x, need_weights=False)
        >>> torch.allclose(folded, plain, atol=1e-5)
        True
    """
    weight, bias = projection
    dim, heads = attention.embed_dim, attention.num_heads
    head_dim = dim // heads
    w_q, w_k, w_v = attention.in_proj_weight.chunk(3)
    b_q, _b_k, b_v = attention.in_proj_bias.chunk(3) if attention.in_proj_bias is not None else (None,) * 3
    q = F.linear(queries.to(tokens.dtype), w_q, b_q) * head_dim**-0.5
    q = q.unflatten(-1, (heads, head_dim))  # (..., Q, H, dh)
    width = tokens.shape[2]
    value_map = shared.matmul(w_v, weight).view(heads, head_dim, width)  # Wv P, per head
    if q.dim() == 3:  # shared queries: one key direction per (relation, head) in the trunk's width
        directions = torch.einsum("qhd,hde->qhe", q, w_k.view(heads, head_dim, dim)) @ weight
        values = _SharedQueryPool.apply(directions.flatten(0, 1), value_map, tokens, mask)
    else:
        values = _per_item_pool(q, w_k, weight, value_map, tokens, mask, shared)
    offset = b_v
    if bias is not None:
        offset = w_v @ bias if offset is None else offset + w_v @ bias
    if offset is not None:
        values = values + offset
    return attention.out_proj(values)


def _per_item_pool(
    q: torch.Tensor,
    w_k: torch.Tensor,
    weight: torch.Tensor,
    value_map: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    shared: SharedProducts,
) -> torch.Tensor:
    """Folded pooling for per-item queries ``q`` (N, Q, H, dh): the values (N, Q, D), no biases."""
    n, _length, width = tokens.shape
    heads, head_dim, dim = q.shape[2], q.shape[3], w_k.shape[1]
    # Fold Wk P once for the batch when that is cheaper than a key direction per item.
    if n * q.shape[1] * heads * dim * width > dim * dim * width:
        key_map = shared.matmul(w_k, weight).view(heads, head_dim, width)
        directions = torch.einsum("nqhd,hdc->nqhc", q, key_map)
    else:
        directions = torch.einsum("nqhd,hde->nqhe", q, w_k.view(heads, head_dim, dim)) @ weight
    scores = torch.einsum("nlc,nqhc->nqhl", tokens, directions)
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    summed = torch.einsum("nqhl,nlc->nqhc", scores.softmax(dim=-1), tokens)  # (N, Q, H, C)
    return torch.einsum("nqhc,hdc->nqhd", summed, value_map).flatten(-2)


class _SharedQueryPool(torch.autograd.Function):
    """The folded pooling of N items under the same Q·H key directions, with a hand-made backward.

    Inputs: ``directions`` (Q·H, C), row ``q·H + h``; ``value_map`` (H, dh, C); ``tokens``
    (N, L, C), constant; ``mask`` (N, L). Output: the values (N, Q, H·dh), before their bias.

    The training path (a loss scores every item under every relation of the batch). Written out
    so that every step is one matrix product over the whole batch in a layout that needs no
    copies of the (N, Q·H, C) sums, where autograd through ``einsum`` makes several.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, directions: torch.Tensor, value_map: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        # One precision for the whole kernel, autocast off (mixed-precision training hands in
        # half precision weights and float32 tokens); gradients go back in each input's own.
        ctx.dtypes = (directions.dtype, value_map.dtype)
        dtype = torch.promote_types(torch.promote_types(directions.dtype, value_map.dtype), tokens.dtype)
        with torch.autocast(tokens.device.type, enabled=False):
            return _SharedQueryPool._forward(
                ctx, directions.to(dtype), value_map.to(dtype), tokens.to(dtype), mask
            )

    @staticmethod
    def _forward(
        ctx: Any, directions: torch.Tensor, value_map: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        n, length, width = tokens.shape
        heads, head_dim, _ = value_map.shape
        rows = directions.shape[0]
        queries = rows // heads
        flat = tokens.reshape(n * length, width)
        # The skinny operands are made contiguous in the layout the product reads (faster on CPU).
        scores = torch.mm(flat, directions.t().contiguous()).view(n, length, rows)
        scores.masked_fill_(~mask[:, :, None], float("-inf"))
        weights = torch.softmax(scores, dim=1)  # over the tokens
        summed = torch.bmm(weights.transpose(1, 2), tokens)  # (N, Q·H, C)
        by_head = summed.view(n * queries, heads, width)
        values = directions.new_empty((n * queries, heads, head_dim))
        # Batched over the heads, written in place: strided views of row-major layouts, no copies.
        torch.bmm(by_head.transpose(0, 1), value_map.transpose(1, 2), out=values.transpose(0, 1))
        ctx.save_for_backward(value_map, tokens, weights, summed)
        return values.view(n, queries, heads * head_dim)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        value_map, tokens, weights, summed = ctx.saved_tensors
        with torch.autocast(tokens.device.type, enabled=False):
            grad_directions, grad_map = _SharedQueryPool._backward(
                grad.to(tokens.dtype), value_map, tokens, weights, summed
            )
        return grad_directions.to(ctx.dtypes[0]), grad_map.to(ctx.dtypes[1]), None, None

    @staticmethod
    def _backward(
        grad: torch.Tensor,
        value_map: torch.Tensor,
        tokens: torch.Tensor,
        weights: torch.Tensor,
        summed: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, length, width = tokens.shape
        heads, head_dim, _ = value_map.shape
        rows = weights.shape[2]
        queries = rows // heads
        grad = grad.reshape(n * queries, heads, head_dim)
        by_head = summed.view(n * queries, heads, width)
        grad_map = torch.bmm(grad.permute(1, 2, 0), by_head.transpose(0, 1))  # (H, dh, C)
        grad_summed = summed.new_empty((n * queries, heads, width))
        torch.bmm(grad.transpose(0, 1), value_map, out=grad_summed.transpose(0, 1))
        grad_weights = torch.bmm(tokens, grad_summed.view(n, rows, width).transpose(1, 2))  # (N, L, Q·H)
        grad_scores = weights * (grad_weights - (grad_weights * weights).sum(dim=1, keepdim=True))
        grad_directions = torch.mm(
            grad_scores.view(n * length, rows).t().contiguous(), tokens.reshape(n * length, width)
        )
        return grad_directions, grad_map

"""Gathering embeddings across processes (DDP), keeping the gradient of every rank's share.

Contrastive losses get their negatives from the whole global batch: each process scores its own
queries against the candidates of *every* process. This is open_clip's ``gather_with_grad`` /
sentence-transformers' ``gather_across_devices``, with one addition: ranks may hold batches of
different sizes (the last batch of an epoch), so tensors are padded to the largest rank's size
for the collective and cut back afterwards.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` outside distributed training."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_sizes(size: int, device: torch.device) -> list[int]:
    """Every rank's value of ``size`` (e.g. its local batch size), in rank order."""
    _, world_size = world()
    if world_size == 1:
        return [size]
    local = torch.tensor([size], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(local) for _ in range(world_size)]
    dist.all_gather(sizes, local)
    return [int(s.item()) for s in sizes]


def _padded(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """``tensor`` with zero rows up to the largest rank's row count (collectives need equal shapes)."""
    extra = max(sizes) - tensor.shape[0]
    return torch.cat([tensor, tensor.new_zeros((extra, *tensor.shape[1:]))]) if extra > 0 else tensor


def gather_with_grad(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenates every rank's ``tensor`` along dim 0; gradients flow back to each owner.

    Tensors without a gradient (item ids, masks) are gathered the same way.

    Args:
        tensor: this rank's tensor, ``sizes[rank]`` rows.
        sizes: every rank's row count (from :func:`gather_sizes`).

    Returns:
        A tensor of ``sum(sizes)`` rows, rank 0's rows first. Outside distributed training this
        is ``tensor`` itself.
    """
    if len(sizes) == 1:
        return tensor
    import torch.distributed.nn.functional as dist_fn

    tensor = _padded(tensor, sizes)
    with warnings.catch_warnings():
        # torch 2.15 marks this autograd-aware gather deprecated in favour of a private module
        # (``torch.distributed._functional_collectives``); it is what open_clip and
        # sentence-transformers use, so keep the public one and its warning out of the log.
        warnings.simplefilter("ignore", FutureWarning)
        parts = dist_fn.all_gather(tensor.contiguous())
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


def union_presence(present: torch.Tensor) -> torch.Tensor:
    """Element-wise OR of a boolean vector over all ranks (which relations any rank uses)."""
    _, world_size = world()
    if world_size == 1:
        return present
    counts = present.to(torch.long)
    dist.all_reduce(counts, op=dist.ReduceOp.MAX)
    return counts.bool()

"""PairBatchSampler: batch order from (seed, epoch), pair subsets per epoch, equal counts under DDP."""

from __future__ import annotations

import pytest

from rcml_st.training import sampler as sampler_module
from rcml_st.training.sampler import PairBatchSampler


def _batches(size=50, batch=8, seed=0, epoch=0, drop_last=False, **kwargs):
    sampler = PairBatchSampler(list(range(size)), batch_size=batch, drop_last=drop_last, seed=seed, **kwargs)
    sampler.set_epoch(epoch)
    return sampler, list(sampler)


def test_same_seed_and_epoch_same_batches_other_epoch_other_order():
    _, first = _batches(seed=3, epoch=1)
    _, again = _batches(seed=3, epoch=1)
    _, next_epoch = _batches(seed=3, epoch=2)
    assert first == again
    assert first != next_epoch
    assert sorted(i for b in first for i in b) == list(range(50))  # every pair once per epoch


def test_length_matches_iteration_and_drop_last():
    sampler, batches = _batches(size=50, batch=8)
    assert len(sampler) == len(batches) == 7 and len(batches[-1]) == 2
    sampler, batches = _batches(size=50, batch=8, drop_last=True)
    assert len(sampler) == len(batches) == 6


def test_pairs_per_epoch_draws_a_fresh_subset_each_epoch():
    sampler, first = _batches(size=100, batch=10, epoch=0, pairs_per_epoch=30)
    _, second = _batches(size=100, batch=10, epoch=1, pairs_per_epoch=30)
    assert len(sampler) == len(first) == 3
    seen_first = {i for b in first for i in b}
    assert len(seen_first) == 30 and seen_first != {i for b in second for i in b}


@pytest.mark.parametrize(("size", "expected"), [(50, 6), (9, 2)])
def test_under_ddp_the_batch_count_is_a_multiple_of_the_processes(monkeypatch, size, expected):
    monkeypatch.setattr(sampler_module, "world", lambda: (0, 2))
    sampler, batches = _batches(size=size, batch=8)
    assert len(sampler) == len(batches) == expected

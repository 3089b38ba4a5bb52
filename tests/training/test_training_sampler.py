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


class _Labels(list):
    """A list of pairs that also answers ``dataset["label"]`` like a ``datasets.Dataset``."""

    def __getitem__(self, key):
        return [row for row in self] if key == "label" else super().__getitem__(key)


def _labelled(sources=40, relations=3, per_relation=2):
    # (source, target, relation) for every source, relation and a few targets, in a scrambled order.
    rows = [
        [s, (s + k + 1) % sources, r]
        for s in range(sources)
        for r in range(relations)
        for k in range(per_relation)
    ]
    return _Labels(rows[i] for i in sorted(range(len(rows)), key=lambda i: (i * 7919) % len(rows)))


def test_mixed_relations_put_a_sources_relations_side_by_side():
    data = _labelled()
    sampler = PairBatchSampler(data, batch_size=6, drop_last=False, seed=1, mix_relations=True)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 40
    assert sorted(i for b in batches for i in b) == list(range(len(data)))  # every pair once
    first_round = batches[:20]  # 40 sources x 3 relations, one pair each, before any second pair
    for batch in first_round:
        sources = [data[i][0] for i in batch]
        assert len(set(sources)) == 2  # two sources per batch of six...
        for source in set(sources):  # ...each with its three relations
            assert sorted(data[i][2] for i in batch if data[i][0] == source) == [0, 1, 2]
    # Random batches almost never hold one source under two relations.
    plain = list(PairBatchSampler(data, batch_size=6, drop_last=False, seed=1))
    together = sum(len({data[i][2] for i in b if data[i][0] == data[b[0]][0]}) == 3 for b in plain)
    assert together < 3


def test_mixed_relations_are_reproducible_and_respect_pairs_per_epoch():
    data = _labelled()
    make = lambda epoch: PairBatchSampler(  # noqa: E731
        data, batch_size=6, drop_last=False, seed=2, mix_relations=True, pairs_per_epoch=60
    )
    a, b = make(0), make(0)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b) and len(a) == len(list(a)) == 10
    c = make(0)
    c.set_epoch(4)
    assert list(c) != list(a)

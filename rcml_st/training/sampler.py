"""The batch sampler for pair datasets: reproducible per epoch, equal batch counts under DDP."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from sentence_transformers.base.sampler import DefaultBatchSampler

from rcml_st.losses.distributed import world


class PairBatchSampler(DefaultBatchSampler):
    """Shuffled batches whose order depends only on ``(seed, epoch)``.

    Two properties the default sampler lacks:

    - The order of epoch ``e`` is drawn from a generator seeded with ``(seed, e)``, not from a
      generator carried over from earlier epochs, so a run resumed at an epoch boundary sees
      exactly the batches an uninterrupted run would have seen.
    - Under distributed training the number of batches is a multiple of the number of
      processes. The loss gathers candidates from every process at every step, so all
      processes must take the same number of steps (the trainer shards batches round-robin and
      would otherwise leave one process waiting for the others forever).

    - Optionally, each epoch uses a fresh random subset of ``pairs_per_epoch`` pairs: dense
      relation graphs (whole groups linked) have far more pairs than an epoch needs, and this
      keeps epochs short while every pair still gets its turn over the run.

    - Optionally (``mix_relations=True``, ``rcml-st train --batches by-source``), each batch holds
      an item's pairs under *different* relations side by side: the epoch takes the sources in a
      random order and, for each, one pair per relation it has (then, in later rounds, the next
      ones). The source's partner under relation B then sits in the batch as a candidate for its
      query under relation A: the hard negative a model that ignores the relation gets wrong,
      which random batches of a large catalogue almost never contain. Needs the dataset's
      ``label`` column (``[source, target, relation]``, see :mod:`rcml_st.training.pairs`).

    The constructor takes the arguments the trainer passes to a ``batch_sampler`` callable
    (bind ``pairs_per_epoch`` and ``mix_relations`` with ``functools.partial``).

    Example:
        >>> from datasets import Dataset
        >>> rows = [[0, 1, 0], [0, 2, 1], [1, 0, 0], [1, 3, 1], [3, 1, 0], [3, 2, 1]]
        >>> data = Dataset.from_dict({"label": rows})
        >>> sampler = PairBatchSampler(data, batch_size=2, drop_last=False, mix_relations=True)
        >>> [[rows[i][:3:2] for i in batch] for batch in sampler]  # [source, relation] of each pair
        [[[1, 0], [1, 1]], [[3, 1], [3, 0]], [[0, 0], [0, 1]]]
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        pairs_per_epoch: int | None = None,
        mix_relations: bool = False,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            drop_last=drop_last,
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )
        self.size = len(dataset)
        self.used = self.size if not pairs_per_epoch else min(int(pairs_per_epoch), self.size)
        self.world_size = world()[1]
        self.sources: list[int] | None = None
        self.relations: list[int] | None = None
        if mix_relations:
            labels = dataset["label"]
            self.sources = [int(label[0]) for label in labels]
            self.relations = [int(label[2]) for label in labels]

    def _mixed_order(self, order: list[int]) -> list[int]:
        """``order`` regrouped: per source (first-appearance order), one pair per relation a round."""
        rounds: list[dict[int, list[int]]] = []  # round -> source -> pairs
        seen: dict[tuple[int, int], int] = {}  # (source, relation) -> pairs placed so far
        first: dict[int, int] = {}
        for index in order:
            source, relation = self.sources[index], self.relations[index]
            first.setdefault(source, len(first))
            level = seen.get((source, relation), 0)
            seen[(source, relation)] = level + 1
            if level == len(rounds):
                rounds.append({})
            rounds[level].setdefault(source, []).append(index)
        regrouped = []
        for by_source in rounds:
            for source in sorted(by_source, key=first.__getitem__):
                regrouped.extend(by_source[source])
        return regrouped

    def _batches(self, order: Sequence[int]) -> list[Sequence[int]]:
        """The first ``used`` pairs of ``order`` in batches (under DDP, a multiple of the process count)."""
        batches = [
            order[i : min(i + self.batch_size, self.used)] for i in range(0, self.used, self.batch_size)
        ]
        if batches and self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.world_size > 1 and batches:
            if len(batches) < self.world_size:  # tiny data: repeat batches so each process gets one
                batches = [batches[i % len(batches)] for i in range(self.world_size)]
            batches = batches[: len(batches) // self.world_size * self.world_size]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator()
        generator.manual_seed(int(self.seed) * 100_003 + int(self.epoch))
        order = torch.randperm(self.size, generator=generator).tolist()
        if self.sources is not None:
            order = self._mixed_order(order)
        yield from self._batches(order)

    def __len__(self) -> int:
        return len(self._batches(range(self.size)))  # the count does not depend on the order

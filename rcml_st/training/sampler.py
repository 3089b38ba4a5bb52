"""The batch sampler for pair datasets: reproducible per epoch, equal batch counts under DDP."""

from __future__ import annotations

from collections.abc import Iterator
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

    The constructor takes the arguments the trainer passes to a ``batch_sampler`` callable
    (bind ``pairs_per_epoch`` with ``functools.partial``).
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

    def _batches(self) -> list[list[int]]:
        generator = torch.Generator()
        generator.manual_seed(int(self.seed) * 100_003 + int(self.epoch))
        order = torch.randperm(self.size, generator=generator)[: self.used].tolist()
        batches = [order[i : i + self.batch_size] for i in range(0, self.used, self.batch_size)]
        if batches and self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.world_size > 1 and batches:
            if len(batches) < self.world_size:  # tiny data: repeat batches so each process gets one
                batches = [batches[i % len(batches)] for i in range(self.world_size)]
            batches = batches[: len(batches) // self.world_size * self.world_size]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()

    def __len__(self) -> int:
        full, rest = divmod(self.used, self.batch_size)
        count = full + (1 if rest and not self.drop_last else 0)
        if self.world_size > 1 and count:
            count = max(count, self.world_size) // self.world_size * self.world_size
        return count

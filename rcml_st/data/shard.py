"""Deterministic slices of a catalogue, so that N workers can each index one part of it.

An item belongs to slice ``blake2b(item id) mod N``: the same on every machine, every run and
every Python version (unlike ``hash()``), independent of the line order, and spread evenly.
``--shard i/N`` on the command line, or ``RANK`` / ``WORLD_SIZE`` from a launcher such as
``torchrun``, chooses the slice.

Example:
    >>> shard = Shard.parse("1/4")
    >>> shard, shard.contains("B0001")
    (Shard(index=1, count=4), False)
    >>> sum(Shard(i, 3).contains("B0001") for i in range(3))  # exactly one slice holds an item
    1
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

from rcml_st.errors import UsageError


def slice_of(item_id: str, count: int) -> int:
    """The slice (``0 .. count-1``) that ``item_id`` belongs to.

    Example:
        >>> slice_of("B0001", 4)
        3
    """
    digest = hashlib.blake2b(item_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(frozen=True)
class Shard:
    """Slice ``index`` of ``count`` (0-based): the items whose :func:`slice_of` is ``index``.

    Attributes:
        index: this worker's slice, ``0 <= index < count``.
        count: the number of slices (workers).
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(f"--shard must be I/N with 0 <= I < N, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Reads ``"I/N"`` (e.g. ``"0/4"``).

        Raises:
            UsageError: not of the form ``I/N`` with ``0 <= I < N``.
        """
        index, sep, count = text.partition("/")
        try:
            if not sep:
                raise ValueError
            return cls(int(index), int(count))
        except ValueError:
            raise UsageError(f"--shard must be I/N with 0 <= I < N (e.g. 0/4), got {text!r}") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Shard | None:
        """The launcher's slice: ``RANK`` of ``WORLD_SIZE`` when ``WORLD_SIZE`` > 1, else ``None``.

        Example:
            >>> Shard.from_env({"RANK": "1", "WORLD_SIZE": "2"})
            Shard(index=1, count=2)
            >>> Shard.from_env({}) is None
            True
        """
        env = os.environ if environ is None else environ
        world = env.get("WORLD_SIZE", "").strip()
        if not world:
            return None
        try:
            count, index = int(world), int(env.get("RANK", "0"))
        except ValueError:
            raise UsageError(f"RANK/WORLD_SIZE must be integers, got {env.get('RANK')!r}/{world!r}") from None
        return cls(index, count) if count > 1 else None

    @property
    def whole(self) -> bool:
        """Whether this "slice" is the whole catalogue (``count == 1``)."""
        return self.count == 1

    def contains(self, item_id: str) -> bool:
        """Whether ``item_id`` belongs to this slice."""
        return self.count == 1 or slice_of(item_id, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

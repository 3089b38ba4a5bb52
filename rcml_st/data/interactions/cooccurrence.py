"""Item pairs that the same user (customer, order, session) touched, counted on disk, top k kept.

:func:`cooccurrence_edges` streams (user, item, time) rows and returns, for every item, its
``top_k`` strongest partners. It never holds the log nor all pairs in memory:

1. **Partition by user.** Each row becomes a 20-byte record (user hash, item number, time)
   appended to one of ``partitions`` temporary files chosen by the user's hash, so that all rows
   of a user land in the same file.
2. **Pairs per user partition.** Each file is loaded alone (one that is over the memory budget
   is split again by other bits of the hash), its rows de-duplicated per (user, item), users
   with more than ``max_items_per_user`` items cut to their most recent ones, and the pairs of
   items of each user (within ``window`` seconds of each other, when given) counted once per
   user. The partial counts go, as 12-byte (pair, count) records, to files partitioned by the
   pair's first item.
3. **Top k per item partition.** Each of those files is loaded alone (split again when too
   big), its partial counts summed, scored (co-count, Jaccard or PMI) and cut to the ``top_k``
   partners of each item.

Memory: the item numbers (the caller's dict), one array of 8 bytes per item (its user count),
the result (16 bytes per kept edge), and one partition at a time, kept under ``memory_mb``
(about 1 GB by default) by splitting. Disk: 20 bytes per row plus 12 bytes per distinct
(user-partition, pair), in a temporary folder removed at the end.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rcml_st.data.interactions.reader import Interaction

#: The scores :func:`cooccurrence_edges` ranks partners by.
SCORES = ("count", "jaccard", "pmi")

_ROW = np.dtype([("user", "<i8"), ("item", "<i4"), ("time", "<f8")])
_PAIR = np.dtype([("key", "<i8"), ("count", "<i4")])
_BUFFER_ROWS = 1 << 20  # rows gathered before they are spread over the partition files
# Peak bytes per element while a partition is processed (measured on the code below, rounded up):
# a loaded row with its sort orders and masks; a pair key being counted (pieces, concatenation,
# sort copy, uniques and counts, the partitioned block); a partial count being summed and ranked.
_BYTES_PER_ROW_IN_MEMORY = 96
_BYTES_PER_PAIR_IN_MEMORY = 72
_BYTES_PER_PARTIAL_IN_MEMORY = 96
_BYTES_PER_EDGE = 30  # the kept edges (16 bytes) while they are put in source order at the end
_RUNTIME_MB = 100  # Python, numpy and the modules loaded


@dataclass
class CooccurrenceStats:
    """What :func:`cooccurrence_edges` did.

    Attributes:
        rows: rows read.
        unknown_items: rows whose item is not in the catalogue (left out).
        users: distinct users with at least one item of the catalogue.
        capped_users: users cut to ``max_items_per_user`` items.
        pairs: distinct (item, partner) pairs seen before ``min_count`` and ``top_k``.
        edges: (item, partner) edges kept.
        splits: partitions that were over the memory budget and split again.
    """

    rows: int = 0
    unknown_items: int = 0
    users: int = 0
    capped_users: int = 0
    pairs: int = 0
    edges: int = 0
    splits: int = 0


@dataclass
class CooccurrenceEdges:
    """The kept edges, grouped by source item and strongest first within a source.

    Attributes:
        sources: source item numbers (int32).
        targets: target item numbers (int32).
        counts: the number of users who touched both (int32).
        scores: the ranking score (float32; the count itself for ``score="count"``).
        stats: the :class:`CooccurrenceStats` of the run.
    """

    sources: np.ndarray
    targets: np.ndarray
    counts: np.ndarray
    scores: np.ndarray
    stats: CooccurrenceStats

    def __len__(self) -> int:
        return len(self.sources)

    def partners(self) -> dict[int, np.ndarray]:
        """Source item number -> its partners (target item numbers), strongest first."""
        if not len(self.sources):
            return {}
        starts = np.flatnonzero(np.r_[True, self.sources[1:] != self.sources[:-1]])
        ends = np.r_[starts[1:], len(self.sources)]
        return {int(self.sources[s]): self.targets[s:e] for s, e in zip(starts, ends, strict=True)}


def cooccurrence_edges(
    rows: Iterable[Interaction],
    items: Mapping[str, int],
    *,
    top_k: int = 10,
    score: str = "count",
    min_count: int = 1,
    window: float | None = None,
    max_items_per_user: int = 100,
    memory_mb: float = 1024,
    partitions: int = 32,
    temp_dir: str | os.PathLike[str] | None = None,
) -> CooccurrenceEdges:
    """The ``top_k`` partners of every item: items the same users touched, counted out of core.

    Args:
        rows: (user, item, time) rows, e.g. from :func:`~rcml_st.data.interactions.iter_log`.
        items: item id -> item number (0..n-1); rows of other items are left out and counted.
        top_k: partners kept per item (0: all).
        score: ``"count"`` (users who touched both), ``"jaccard"`` (count / users who touched
            either) or ``"pmi"`` (log of count x users / (users of a x users of b)); ties are
            broken by count, then by item number.
        min_count: pairs touched together by fewer users are left out (PMI needs 2 or more to
            mean anything).
        window: when given, two items pair up only if the same user touched them at most this
            many seconds apart (needs times; rows without one all share time 0).
        max_items_per_user: a user with more distinct items keeps only the most recent ones
            (``m`` items make ``m(m-1)`` pairs: a 10k-item account would make 100M).
        memory_mb: the budget for one partition in memory; bigger ones are split.
        partitions: the number of user partitions to start with.
        temp_dir: where the partition files go (default: the system's temporary folder).

    Returns:
        The :class:`CooccurrenceEdges`.

    Example:
        >>> rows = [Interaction(u, i, None) for u, i in
        ...         [("u1", "A"), ("u1", "B"), ("u2", "A"), ("u2", "B"), ("u2", "C"), ("u3", "C")]]
        >>> edges = cooccurrence_edges(rows, {"A": 0, "B": 1, "C": 2})
        >>> edges.partners()[0].tolist(), edges.counts[:2].tolist()
        ([1, 2], [2, 1])
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r} (use one of {', '.join(SCORES)})")
    if top_k < 0 or min_count < 1 or max_items_per_user < 2 or memory_mb <= 0 or partitions < 2:
        raise ValueError(
            "expected top_k >= 0, min_count >= 1, max_items_per_user >= 2, memory_mb > 0, partitions >= 2"
        )
    if window is not None and window < 0:
        raise ValueError("window must be 0 seconds or more")
    counter = _Counter(
        n_items=max(len(items), 1),
        window=window,
        cap=max_items_per_user,
        budget=max(int(memory_mb * (1 << 20)), 1),
        partitions=partitions,
    )
    folder = Path(tempfile.mkdtemp(prefix="rcml-cooc-", dir=temp_dir))
    try:
        counter.partition_rows(rows, items, folder)
        counter.count_pairs(folder)
        sources, targets, counts, scores = counter.top_partners(folder, top_k, score, min_count)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    counter.stats.edges = len(sources)
    return CooccurrenceEdges(sources, targets, counts, scores, counter.stats)


class _Counter:
    """The three stages of :func:`cooccurrence_edges`, sharing the per-item user counts."""

    def __init__(self, n_items: int, window: float | None, cap: int, budget: int, partitions: int) -> None:
        self.n_items = n_items
        self.window = window
        self.cap = cap
        self.budget = budget
        self.partitions = partitions
        self.item_users = np.zeros(n_items, dtype=np.int64)
        self.stats = CooccurrenceStats()

    # ---------------------------------------------------------------- stage 1: rows -> user files

    def partition_rows(self, rows: Iterable[Interaction], items: Mapping[str, int], folder: Path) -> None:
        files = [open(folder / f"u{p}.bin", "wb") for p in range(self.partitions)]  # noqa: SIM115
        users: list[int] = []
        numbers: list[int] = []
        times: list[float] = []
        stats = self.stats
        lookup = items.get
        try:
            for user, item, time in rows:
                stats.rows += 1
                number = lookup(item)
                if number is None:
                    stats.unknown_items += 1
                    continue
                users.append(hash(user))
                numbers.append(number)
                times.append(0.0 if time is None else time)
                if len(users) >= _BUFFER_ROWS:
                    self._spread(users, numbers, times, files)
                    users, numbers, times = [], [], []
            self._spread(users, numbers, times, files)
        finally:
            for fh in files:
                fh.close()

    def _spread(self, users: list[int], numbers: list[int], times: list[float], files: list) -> None:
        if not users:
            return
        block = np.empty(len(users), dtype=_ROW)
        block["user"] = users
        block["item"] = numbers
        block["time"] = times
        _write_partitioned(block, _bucket(block["user"], len(files), 0), files)

    # ---------------------------------------------------------------- stage 2: user files -> pair files

    def count_pairs(self, folder: Path) -> None:
        pair_files = [open(folder / f"p{p}.bin", "wb") for p in range(self.partitions)]  # noqa: SIM115
        try:
            for p in range(self.partitions):
                self._user_partition(folder / f"u{p}.bin", 1, pair_files)
        finally:
            for fh in pair_files:
                fh.close()

    def _user_partition(self, path: Path, depth: int, pair_files: list) -> None:
        size = path.stat().st_size
        rows_in_file = size // _ROW.itemsize
        if rows_in_file * _BYTES_PER_ROW_IN_MEMORY > self.budget and depth < 6:
            self._split(
                path, _ROW, "user", depth, lambda part: self._user_partition(part, depth + 1, pair_files)
            )
            return
        rows = np.fromfile(path, dtype=_ROW)
        path.unlink()
        if not len(rows):
            return
        rows = self._per_user(rows)
        starts = np.flatnonzero(np.r_[True, rows["user"][1:] != rows["user"][:-1]])
        lengths = np.diff(np.r_[starts, len(rows)])
        self.stats.users += len(starts)
        # Pairs this partition makes (an upper bound with a window): count them in slices of
        # users small enough for the budget.
        pairs_per_user = lengths * (lengths - 1)
        limit = max(self.budget // _BYTES_PER_PAIR_IN_MEMORY, 1)
        first = 0
        while first < len(starts):
            total = np.cumsum(pairs_per_user[first:])
            last = first + max(int(np.searchsorted(total, limit, side="right")), 1)
            lo = starts[first]
            hi = starts[last] if last < len(starts) else len(rows)
            self._emit_pairs(rows[lo:hi], pair_files)
            first = last

    def _per_user(self, rows: np.ndarray) -> np.ndarray:
        """Rows sorted by (user, time, item), de-duplicated and capped per user."""
        if self.window is None:
            # One row per (user, item), at its latest time.
            order = np.lexsort((-rows["time"], rows["item"], rows["user"]))
            rows = rows[order]
            first = np.r_[
                True, (rows["user"][1:] != rows["user"][:-1]) | (rows["item"][1:] != rows["item"][:-1])
            ]
            rows = rows[first]
        else:
            order = np.lexsort((rows["item"], rows["time"], rows["user"]))
            rows = rows[order]
            same = (
                (rows["user"][1:] == rows["user"][:-1])
                & (rows["item"][1:] == rows["item"][:-1])
                & (rows["time"][1:] == rows["time"][:-1])
            )
            rows = rows[np.r_[True, ~same]]
        # Most recent first within each user, to keep the newest `cap` rows; ties (no times) are
        # broken by a hash of the item, so a capped user keeps a fair sample, the same every run.
        order = np.lexsort((_bucket(rows["item"], 1 << 30, 0), -rows["time"], rows["user"]))
        rows = rows[order]
        starts = np.flatnonzero(np.r_[True, rows["user"][1:] != rows["user"][:-1]])
        lengths = np.diff(np.r_[starts, len(rows)])
        rank = np.arange(len(rows)) - np.repeat(starts, lengths)
        over = lengths > self.cap
        self.stats.capped_users += int(over.sum())
        rows = rows[rank < self.cap]
        # Each kept (user, item) counts once for the item's user count (Jaccard, PMI).
        if self.window is None:
            distinct_items = rows["item"]  # already one row per (user, item)
        else:
            distinct_items = np.unique(
                np.stack([rows["user"], rows["item"].astype(np.int64)], axis=1), axis=0
            )[:, 1]
        self.item_users += np.bincount(distinct_items, minlength=self.n_items)
        order = np.lexsort((rows["item"], rows["time"], rows["user"]))
        return rows[order]

    def _emit_pairs(self, rows: np.ndarray, pair_files: list) -> None:
        user, item, time = rows["user"], rows["item"].astype(np.int64), rows["time"]
        n = self.n_items
        keys: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        for d in range(1, min(self.cap, len(rows))):
            ok = user[d:] == user[:-d]
            if self.window is not None:
                ok &= (time[d:] - time[:-d]) <= self.window
            if not ok.any():
                if self.window is None or not (user[d:] == user[:-d]).any():
                    break  # no user has more than d rows
                continue
            a, b = item[:-d][ok], item[d:][ok]
            differ = a != b
            a, b = a[differ], b[differ]
            keys += [a * n + b, b * n + a]
            if self.window is not None:
                u = user[:-d][ok][differ]
                owners += [u, u]
        if not keys:
            return
        key = np.concatenate(keys)
        if self.window is not None:
            # The same pair can meet several times within one user's history: count it once.
            owner = np.concatenate(owners)
            key = np.unique(np.stack([owner, key], axis=1), axis=0)[:, 1]
        unique, counts = np.unique(key, return_counts=True)
        block = np.empty(len(unique), dtype=_PAIR)
        block["key"] = unique
        block["count"] = counts
        _write_partitioned(block, _bucket(unique // n, len(pair_files), 0), pair_files)

    # ---------------------------------------------------------------- stage 3: pair files -> top k

    def top_partners(
        self, folder: Path, top_k: int, score: str, min_count: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        parts: list[tuple[np.ndarray, ...]] = []
        for p in range(self.partitions):
            self._pair_partition(folder / f"p{p}.bin", 1, top_k, score, min_count, parts)
        if not parts:
            empty_i = np.zeros(0, dtype=np.int32)
            return empty_i, empty_i, empty_i, np.zeros(0, dtype=np.float32)
        # Partitions interleave sources: put them in source order (ranks stay in order), one
        # column at a time so that only one extra column is ever held.
        columns: list[list[np.ndarray]] = [list(column) for column in zip(*parts, strict=True)]
        parts.clear()
        sources = np.concatenate(columns[0])
        columns[0].clear()
        order = np.argsort(sources, kind="stable")
        result = [sources[order]]
        del sources
        for column in columns[1:]:
            joined = np.concatenate(column)
            column.clear()
            result.append(joined[order])
            del joined
        return result[0], result[1], result[2], result[3]

    def _pair_partition(
        self, path: Path, depth: int, top_k: int, score: str, min_count: int, parts: list
    ) -> None:
        size = path.stat().st_size
        if (size // _PAIR.itemsize) * _BYTES_PER_PARTIAL_IN_MEMORY > self.budget and depth < 6:
            self._split(
                path,
                _PAIR,
                "key",
                depth,
                lambda part: self._pair_partition(part, depth + 1, top_k, score, min_count, parts),
                by_source=True,
            )
            return
        block = np.fromfile(path, dtype=_PAIR)
        path.unlink()
        if not len(block):
            return
        order = np.argsort(block["key"], kind="stable")
        keys = block["key"][order]
        partial = block["count"][order]
        del block, order
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        counts = np.add.reduceat(partial.astype(np.int64), starts)
        keys = keys[starts]
        del partial, starts
        self.stats.pairs += len(keys)
        keep = counts >= min_count
        keys, counts = keys[keep], counts[keep]
        if not len(keys):
            return
        # In key order: by source, then target. Stable sorts keep the target order among ties.
        sources, targets = keys // self.n_items, keys % self.n_items
        del keys
        values = self._score(sources, targets, counts, score)
        top = int(counts.max())
        if score == "count" and self.n_items * (top + 1) < 2**62:
            order = np.argsort(sources * (top + 1) + (top - counts), kind="stable")  # one key: fast
        else:
            order = np.lexsort((-counts, -values, sources))
        sources, targets, counts, values = sources[order], targets[order], counts[order], values[order]
        del order
        if top_k:
            starts = np.flatnonzero(np.r_[True, sources[1:] != sources[:-1]])
            rank = np.arange(len(sources)) - np.repeat(starts, np.diff(np.r_[starts, len(sources)]))
            keep = rank < top_k
            sources, targets, counts, values = sources[keep], targets[keep], counts[keep], values[keep]
        parts.append(
            (
                sources.astype(np.int32),
                targets.astype(np.int32),
                counts.astype(np.int32),
                values.astype(np.float32),
            )
        )

    def _score(self, sources: np.ndarray, targets: np.ndarray, counts: np.ndarray, score: str) -> np.ndarray:
        if score == "count":
            return counts.astype(np.float64)
        users_a = self.item_users[sources].astype(np.float64)
        users_b = self.item_users[targets].astype(np.float64)
        if score == "jaccard":
            return counts / (users_a + users_b - counts)
        return np.log(counts * float(max(self.stats.users, 1)) / (users_a * users_b))

    # ---------------------------------------------------------------- splitting an oversized file

    def _split(
        self, path: Path, dtype: np.dtype, field: str, depth: int, handle, by_source: bool = False
    ) -> None:
        """Splits a file that is over the budget into ``partitions`` files by other hash bits."""
        self.stats.splits += 1
        stem = path.with_suffix("")
        parts = [Path(f"{stem}_{q}.bin") for q in range(self.partitions)]
        files = [open(part, "wb") for part in parts]  # noqa: SIM115
        chunk = max(self.budget // (4 * dtype.itemsize), 1)
        try:
            with open(path, "rb") as fh:
                while True:
                    block = np.fromfile(fh, dtype=dtype, count=chunk)
                    if not len(block):
                        break
                    values = block[field] // self.n_items if by_source else block[field]
                    _write_partitioned(block, _bucket(values, self.partitions, depth), files)
        finally:
            for out in files:
                out.close()
        path.unlink()
        for part in parts:
            handle(part)


def _bucket(values: np.ndarray, partitions: int, depth: int) -> np.ndarray:
    """The partition of each value, from different bits of a mixed hash at each depth."""
    mixed = (values.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)
    return ((mixed // np.uint64(partitions**depth)) % np.uint64(partitions)).astype(np.int64)


def _write_partitioned(block: np.ndarray, buckets: np.ndarray, files: list) -> None:
    order = np.argsort(buckets, kind="stable")
    block, buckets = block[order], buckets[order]
    bounds = np.searchsorted(buckets, np.arange(len(files) + 1))
    for p, fh in enumerate(files):
        lo, hi = bounds[p], bounds[p + 1]
        if hi > lo:
            block[lo:hi].tofile(fh)


def describe_memory_bound(n_items: int, top_k: int, memory_mb: float) -> str:
    """A sentence stating the memory bound of a run (for reports and ``--help``).

    The item index (a dict of the ids) is counted at about 150 bytes per item, the kept edges
    at 30 bytes (while they are put in order at the end), Python with numpy at 100 MB.

    Example:
        >>> print(describe_memory_bound(1_000_000, 10, 1024))
        about 1,563 MB: 1,024 MB per partition + 144 MB of item ids + 8 MB of item counts + 287 MB of edges
    """
    mb = 1 << 20
    ids = math.ceil(n_items * 150 / mb)
    counts = math.ceil(n_items * 8 / mb)
    edges = math.ceil(n_items * max(top_k, 1) * _BYTES_PER_EDGE / mb)
    total = math.ceil(memory_mb) + ids + counts + edges + _RUNTIME_MB
    return (
        f"about {total:,} MB: {memory_mb:,g} MB per partition + {ids:,} MB of item ids + "
        f"{counts:,} MB of item counts + {edges:,} MB of edges"
    )

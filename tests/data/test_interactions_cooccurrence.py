"""Out-of-core co-occurrence counting against a plain in-memory reference."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter, defaultdict

import numpy as np
import pytest

from rcml_st.data.interactions import Interaction, cooccurrence_edges


def _log(
    seed: int, users: int = 60, items: int = 40, rows: int = 700, timed: bool = True
) -> list[Interaction]:
    rng = random.Random(seed)
    # Distinct times, so "most recent" never ties; a few repeated (user, item) rows.
    times = rng.sample(range(10**6), rows)
    log = [
        Interaction(
            f"u{rng.randrange(users)}", f"i{int(rng.paretovariate(1.2)) % items}", float(t) if timed else None
        )
        for t in times
    ]
    return log + log[:50]


def _reference(log, n_items, *, cap, window=None, min_count=1, score="count", top_k=0):
    """Pairs per user with itertools, counted in a Counter: the obvious way, all in memory."""
    per_user: dict[str, dict] = defaultdict(dict)
    events: dict[str, set] = defaultdict(set)
    for user, item, time in log:
        number = int(item[1:])
        per_user[user][number] = max(per_user[user].get(number, -1.0), time or 0.0)
        events[user].add((time or 0.0, number))
    pairs: Counter = Counter()
    item_users: Counter = Counter()
    for user in per_user:
        if window is None:
            kept = sorted(per_user[user].items(), key=lambda it: -it[1])[:cap]
            chosen = [(t, i) for i, t in kept]
        else:
            chosen = sorted(events[user], key=lambda e: -e[0])[:cap]
        item_users.update({i for _, i in chosen})
        together = set()
        for (ta, a), (tb, b) in itertools.combinations(chosen, 2):
            if a != b and (window is None or abs(ta - tb) <= window):
                together |= {(a, b), (b, a)}
        pairs.update(together)
    n_users = len(per_user)
    out: dict[int, list[tuple[int, int]]] = defaultdict(list)
    ranked = []
    for (a, b), c in pairs.items():
        if c < min_count:
            continue
        if score == "count":
            value = float(c)
        elif score == "jaccard":
            value = c / (item_users[a] + item_users[b] - c)
        else:
            value = math.log(c * n_users / (item_users[a] * item_users[b]))
        ranked.append((a, -value, -c, b, c))
    for a, _, _, b, c in sorted(ranked):
        if not top_k or len(out[a]) < top_k:
            out[a].append((b, c))
    return dict(out)


def _as_dict(edges) -> dict[int, list[tuple[int, int]]]:
    out: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for a, b, c in zip(edges.sources.tolist(), edges.targets.tolist(), edges.counts.tolist(), strict=True):
        out[a].append((b, c))
    return dict(out)


ITEMS = {f"i{n}": n for n in range(40)}


@pytest.mark.parametrize("score", ["count", "jaccard", "pmi"])
def test_top_k_matches_the_in_memory_reference(score: str) -> None:
    log = _log(0)
    min_count = 2 if score == "pmi" else 1
    edges = cooccurrence_edges(log, ITEMS, top_k=5, score=score, min_count=min_count, max_items_per_user=100)
    expected = _reference(log, 40, cap=100, score=score, top_k=5, min_count=min_count)
    assert _as_dict(edges) == expected
    assert edges.stats.users == len({u for u, _, _ in log})


def test_splitting_oversized_partitions_changes_nothing() -> None:
    log = _log(1)
    whole = cooccurrence_edges(log, ITEMS, top_k=0, max_items_per_user=8)
    split = cooccurrence_edges(log, ITEMS, top_k=0, max_items_per_user=8, memory_mb=0.004, partitions=2)
    assert split.stats.splits > 0
    assert _as_dict(split) == _as_dict(whole) == _reference(log, 40, cap=8)
    assert np.array_equal(whole.scores, split.scores)


def test_very_active_users_are_capped_to_their_most_recent_items() -> None:
    bot = [Interaction("bot", f"i{n}", float(n)) for n in range(40)]
    log = [*bot, Interaction("u1", "i0", 1.0), Interaction("u1", "i1", 2.0)]
    edges = cooccurrence_edges(log, ITEMS, top_k=0, max_items_per_user=5)
    assert edges.stats.capped_users == 1
    pairs = _as_dict(edges)
    assert {b for b, _ in pairs[39]} == {35, 36, 37, 38}  # the bot's 5 newest items only
    assert pairs[0] == [(1, 1)]  # u1's pair; the bot's oldest items made none
    assert len(edges) == 5 * 4 + 2


def test_time_window_pairs_only_nearby_interactions() -> None:
    log = _log(2)
    edges = cooccurrence_edges(log, ITEMS, top_k=0, window=20000.0, max_items_per_user=30)
    assert _as_dict(edges) == _reference(log, 40, cap=30, window=20000.0)
    everything = cooccurrence_edges(log, ITEMS, top_k=0, max_items_per_user=30)
    assert 0 < len(edges) < len(everything)


def test_unknown_items_are_left_out_and_counted() -> None:
    log = [Interaction("u", "i1", None), Interaction("u", "elsewhere", None), Interaction("u", "i2", None)]
    edges = cooccurrence_edges(log, ITEMS)
    assert edges.stats.rows == 3 and edges.stats.unknown_items == 1
    assert _as_dict(edges) == {1: [(2, 1)], 2: [(1, 1)]}


def test_no_pairs_gives_no_edges() -> None:
    edges = cooccurrence_edges([Interaction("u", "i1", None)], ITEMS)
    assert len(edges) == 0 and edges.partners() == {}


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown score"):
        cooccurrence_edges([], ITEMS, score="cosine")
    with pytest.raises(ValueError, match="max_items_per_user >= 2"):
        cooccurrence_edges([], ITEMS, max_items_per_user=1)

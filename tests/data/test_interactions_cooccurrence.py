"""Pair counting (sparse product or DuckDB self-join) against the old counter's outputs and a plain reference.

``golden/expected.json`` was written by the hand-written out-of-core counter that DuckDB replaced
(``golden/make_log_golden.py`` at commit 0f2717b), on a log made to have ties: the new engine must
give the same relations, in the same order, and the same counts of users, capped users and pairs.
Ties in the top k are broken the documented way (score, then count, then catalogue order), which
is what the old counter did too, so equal outputs are a fair test rather than luck.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections import Counter, defaultdict
from pathlib import Path

import duckdb
import pytest

from rcml_st.data.interactions import LogColumns, add_log_relations, count_pairs

GOLDEN = Path(__file__).parent / "golden"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text())


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_prepare_log_equals_the_pre_duckdb_counter(case: str, tmp_path: Path) -> None:
    expected = EXPECTED[case]
    out = tmp_path / "out.jsonl"
    summary = add_log_relations(
        GOLDEN / "items.jsonl",
        GOLDEN / "log.csv",
        out,
        columns=LogColumns("customer", "sku", expected["time_column"]),
        threads=2,
        **expected["options"],
    )
    relations = {
        r["id"]: r["relations"]["bought by the same customers"]
        for r in map(json.loads, out.read_text().splitlines())
        if "relations" in r
    }
    assert relations == expected["relations"]
    c, stats = summary.counting, summary.log_stats
    got = {"rows": stats.rows, "unknown_items": stats.unknown_items, "users": c.users}
    got |= {"capped_users": c.capped_users, "pairs": c.pairs, "edges": c.edges}
    assert got == expected["stats"]


def _log(seed: int, users: int = 60, items: int = 40, rows: int = 700) -> list[tuple[str, int, float]]:
    rng = random.Random(seed)
    times = rng.sample(range(10**6), rows)  # distinct, so "most recent" never ties
    log = [(f"u{rng.randrange(users)}", int(rng.paretovariate(1.2)) % items, float(t)) for t in times]
    return log + log[:50]


def _reference(log, *, cap, window=None, min_count=1, score="count", top_k=0):
    """Pairs per user with itertools, counted in a Counter: the obvious way, all in memory."""
    latest: dict[str, dict] = defaultdict(dict)
    events: dict[str, set] = defaultdict(set)
    for user, item, time in log:
        latest[user][item] = max(latest[user].get(item, -1.0), time)
        events[user].add((time, item))
    pairs: Counter = Counter()
    item_users: Counter = Counter()
    for user in latest:
        if window is None:
            chosen = [(t, i) for i, t in sorted(latest[user].items(), key=lambda it: -it[1])[:cap]]
        else:
            chosen = sorted(events[user], key=lambda e: -e[0])[:cap]
        item_users.update({i for _, i in chosen})
        together = set()
        for (ta, a), (tb, b) in itertools.combinations(chosen, 2):
            if a != b and (window is None or abs(ta - tb) <= window):
                together |= {(a, b), (b, a)}
        pairs.update(together)
    ranked = []
    for (a, b), c in pairs.items():
        if c >= min_count:
            value = {
                "count": float(c),
                "jaccard": c / (item_users[a] + item_users[b] - c),
                "pmi": math.log(c * len(latest) / (item_users[a] * item_users[b])) if score == "pmi" else 0,
            }[score]
            ranked.append((a, -value, -c, b, c))
    out: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for a, _, _, b, c in sorted(ranked):
        if not top_k or len(out[a]) < top_k:
            out[a].append((b, c))
    return dict(out)


def _edges(log, **options) -> dict[int, list[tuple[int, int]]]:
    con = duckdb.connect()
    con.execute("CREATE TABLE ev (u VARCHAR, item INTEGER, time DOUBLE)")
    if log:
        con.executemany("INSERT INTO ev VALUES (?, ?, ?)", log)
    count_pairs(con, "ev", **options)
    out: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for a, b, c in con.execute("SELECT src, dst, c FROM edges ORDER BY src, rank").fetchall():
        out[a].append((b, c))
    return dict(out)


# memory_mb=0: no room for the sparse product, so DuckDB's self-join counts the pairs (as for big logs).
@pytest.mark.parametrize("memory_mb", [1024, 0])
@pytest.mark.parametrize("score", ["count", "jaccard", "pmi"])
def test_top_k_matches_the_in_memory_reference(score: str, memory_mb: int) -> None:
    log = _log(0)
    min_count = 2 if score == "pmi" else 1
    got = _edges(log, top_k=5, score=score, min_count=min_count, memory_mb=memory_mb)
    assert got == _reference(log, cap=100, score=score, top_k=5, min_count=min_count)


@pytest.mark.parametrize("memory_mb", [1024, 0])
def test_cap_and_window_match_the_in_memory_reference(memory_mb: int) -> None:
    log = _log(1)
    assert _edges(log, top_k=0, max_items_per_user=8, memory_mb=memory_mb) == _reference(log, cap=8)
    windowed = _edges(log, top_k=0, window=20000.0, max_items_per_user=30)
    assert windowed == _reference(log, cap=30, window=20000.0)
    assert 0 < sum(map(len, windowed.values())) < sum(map(len, _edges(log, top_k=0).values()))


def test_very_active_users_are_capped_to_their_most_recent_items() -> None:
    log = [("bot", n, float(n)) for n in range(40)] + [("u1", 0, 1.0), ("u1", 1, 2.0)]
    pairs = _edges(log, top_k=0, max_items_per_user=5)
    assert {b for b, _ in pairs[39]} == {35, 36, 37, 38}  # the bot's 5 newest items only
    assert pairs[0] == [(1, 1)]  # u1's pair; the bot's oldest items made none


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown score"):
        _edges([], score="cosine")
    with pytest.raises(ValueError, match="max_items_per_user >= 2"):
        _edges([], max_items_per_user=1)


def test_the_sparse_product_in_many_small_blocks_gives_the_same_pairs() -> None:
    log = [(f"u{u}", i, float(10 * u + i)) for u in range(4) for i in range(u, u + 4)]  # 16 rows kept
    tiny = 16 * 16 * 4 / 2**20  # just room for A: blocks of 8 pairs, so several blocks
    assert (
        _edges(log, top_k=0, memory_mb=tiny) == _reference(log, cap=100) == _edges(log, top_k=0, memory_mb=0)
    )

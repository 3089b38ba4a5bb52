"""Item pairs that the same user (customer, order, session) touched, counted and ranked.

:func:`count_pairs` runs on a DuckDB table of events (``u`` user, ``item`` catalogue number,
``time`` seconds; 0 without times):

1. **Per user** (SQL). Without ``window``, one row per (user, item) at its latest time; with it,
   one per distinct (user, item, time). A user with more keeps the ``max_items_per_user`` most
   recent ones; equal times are broken by a fixed hash of the item number, then the number, so a
   capped user without times keeps a fair sample, the same every run.
2. **Pairs.** Each pair of a user's kept items counts once per user. Without ``window`` the
   counts are the sparse product ``AᵀA`` of the user x item matrix (SciPy, a block of items at a
   time), when ``A`` fits in ``memory_mb``; otherwise, and with ``window`` (items touched within
   ``window`` seconds of each other), a self-join in DuckDB, which spills to disk past its limit.
3. **Top k** (SQL). Each item keeps its ``top_k`` partners by score (``count``, ``jaccard`` or
   ``pmi``), ties broken by the count, then by the partner's catalogue order (lower first).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import scipy.sparse

#: The scores :func:`count_pairs` ranks partners by.
SCORES = ("count", "jaccard", "pmi")

# The old counter's tie-break among equal times, (item * 0x9E3779B97F4A7C15 mod 2^64) >> 32 mod 2^30,
# in 64-bit arithmetic: the constant is 2654435769 * 2^32 + 2135587861.
_ITEM_HASH = "((((item::BIGINT * 2135587861) >> 32) + item::BIGINT * 2654435769) % 1073741824)"
_BYTES_PER_PAIR = 64  # a block of the sparse product: SciPy's result, its row numbers, DuckDB's copy


@dataclass
class CooccurrenceStats:
    """What the counting did.

    Attributes:
        users: distinct users with at least one item of the catalogue.
        capped_users: users cut to ``max_items_per_user`` items.
        pairs: distinct (item, partner) pairs seen before ``min_count`` and ``top_k``.
        edges: (item, partner) edges kept.
    """

    users: int = 0
    capped_users: int = 0
    pairs: int = 0
    edges: int = 0


def count_pairs(
    con: duckdb.DuckDBPyConnection,
    events: str = "events",
    *,
    top_k: int = 10,
    score: str = "count",
    min_count: int = 1,
    window: float | None = None,
    max_items_per_user: int = 100,
    significance: float = 0.0,
    memory_mb: float = 1024,
) -> CooccurrenceStats:
    """Makes the table ``edges`` (``src``, ``dst``, ``c``: the count, ``rank``: 1 for the strongest).

    Args:
        con: a DuckDB connection holding ``events``.
        events: a table or view of ``u`` (user), ``item`` (catalogue number), ``time`` (seconds).
        top_k: partners kept per item (0: all).
        score: ``"count"`` (users who touched both), ``"jaccard"`` (count / users who touched
            either) or ``"pmi"`` (log of count x users / (users of a x users of b)).
        min_count: pairs touched together by fewer users are left out.
        window: when given, two items pair up only if the same user touched them at most this
            many seconds apart.
        max_items_per_user: a user with more keeps only the most recent ones.
        significance: when above 0, a pair is kept only if its count is this many standard
            deviations above the count users touching items independently would give:
            ``count - e >= significance * sqrt(e)``, ``e = users of a x users of b / users``.
        memory_mb: the memory the sparse product may use (else the pairs are counted in DuckDB).

    Example:
        >>> con = duckdb.connect()
        >>> rows = [("u1", 0), ("u1", 1), ("u2", 0), ("u2", 1), ("u2", 2), ("u3", 2)]
        >>> values = ", ".join(f"('{u}', {i}, 0.0)" for u, i in rows)
        >>> _ = con.execute(f"CREATE TABLE ev AS SELECT * FROM (VALUES {values}) t(u, item, time)")
        >>> count_pairs(con, "ev").pairs
        6
        >>> con.execute("SELECT dst, c FROM edges WHERE src = 0 ORDER BY rank").fetchall()
        [(1, 2), (2, 1)]
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r} (use one of {', '.join(SCORES)})")
    if top_k < 0 or min_count < 1 or max_items_per_user < 2 or (window is not None and window < 0):
        raise ValueError("expected top_k >= 0, min_count >= 1, max_items_per_user >= 2, window >= 0")
    per_user = "DISTINCT u, item, time" if window is not None else "u, item, max(time) AS time"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE kept AS SELECT * FROM (
            SELECT u, item, time, count(*) OVER (PARTITION BY u) AS n,
                   row_number() OVER (PARTITION BY u ORDER BY time DESC, {_ITEM_HASH}, item) AS rank
            FROM (SELECT {per_user} FROM {events} {"GROUP BY u, item" if window is None else ""}))
        WHERE rank <= {max_items_per_user}""")
    users, capped, kept = con.execute(
        f"SELECT count(*) FILTER (rank = 1), count(*) FILTER (rank = 1 AND n > {max_items_per_user}), "
        "count(*) FROM kept"
    ).fetchone()
    value, keep, joins = "c::DOUBLE", f"c >= {min_count}", ""
    if score != "count" or significance > 0:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE item_users AS SELECT item, count(DISTINCT u) AS n FROM kept GROUP BY item"
        )
        joins = "JOIN item_users ua ON ua.item = src JOIN item_users ub ON ub.item = dst"
        expected = f"(ua.n * ub.n / {float(users)!r})"
        value = {
            "count": value,
            "jaccard": "c / (ua.n + ub.n - c)",
            "pmi": f"ln(c * {float(users)!r} / (ua.n * ub.n))",
        }[score]
        keep += (
            f" AND c - {expected} >= {float(significance)!r} * sqrt({expected})" if significance > 0 else ""
        )
    # Ties: the higher count, then the lower partner number: one BIGINT, (count, 2^32 - 1 - partner).
    order = "{'v': v, 'k': c::BIGINT * 4294967296 + (4294967295 - dst)}"
    pick = (
        f"max_by({{'dst': dst, 'c': c}}, {order}, {top_k})"
        if top_k
        else f"list({{'dst': dst, 'c': c}} ORDER BY {order} DESC)"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE partners (src INTEGER, pairs BIGINT, partners STRUCT(dst INTEGER, c INTEGER)[])"
    )
    insert = f"""
        INSERT INTO partners SELECT src, count(*), {pick} FILTER (WHERE keep)
        FROM (SELECT src, dst, c, {value} AS v, {keep} AS keep FROM @pairs {joins} WHERE src <> dst) GROUP BY src"""
    if window is None and 0 < kept * 16 <= memory_mb * 2**20 / 4:
        for _ in _product_blocks(con, int(memory_mb * 2**20 / 2 / _BYTES_PER_PAIR)):
            con.execute(insert.replace("@pairs", "block"))
    else:
        near = f"AND abs(a.time - b.time) <= {float(window)!r}" if window is not None else ""
        counted = "count(DISTINCT a.u)" if window is not None else "count(*)"
        con.execute(
            insert.replace(
                "@pairs",
                f"""(SELECT a.item AS src, b.item AS dst, {counted}::INTEGER AS c
            FROM kept a JOIN kept b ON a.u = b.u AND a.item <> b.item {near} WHERE a.n > 1 GROUP BY ALL)""",
            )
        )
    con.execute("""CREATE OR REPLACE TEMP TABLE edges AS SELECT src, p.dst AS dst, p.c AS c, rank FROM (
        SELECT src, unnest(partners) AS p, generate_subscripts(partners, 1) AS rank FROM partners)""")
    pairs, edges = con.execute("SELECT sum(pairs), sum(len(partners)) FROM partners").fetchone()
    return CooccurrenceStats(users=users, capped_users=capped, pairs=int(pairs or 0), edges=int(edges or 0))


def _product_blocks(con: duckdb.DuckDBPyConnection, block_pairs: int):
    """Yields ``block`` (registered with ``con``): (src, dst, c) of ``AᵀA`` for a block of items.

    ``A`` is the user x item matrix of ``kept`` (one row per user, from DuckDB's lists); a block
    holds the items whose products hold at most ``block_pairs`` entries (an item with more: alone).
    """
    lists = con.sql("SELECT list(item) FROM kept GROUP BY u").to_arrow_table().column(0).combine_chunks()
    items, starts = lists.values.to_numpy(), lists.offsets.to_numpy()
    shape = (len(starts) - 1, int(items.max()) + 1)
    a = scipy.sparse.csr_matrix((np.ones(len(items), np.int32), items, starts), shape=shape)
    at = a.T.tocsr()
    work = np.cumsum(at @ np.diff(starts).astype(np.int64))  # an upper bound of each block's entries
    cuts = np.searchsorted(work, np.arange(block_pairs, work[-1], block_pairs), side="right")
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, shape[1]], strict=True):
        if hi > lo:
            product = (at[lo:hi] @ a).tocoo()
            con.register("block", pa.table({"src": product.row + lo, "dst": product.col, "c": product.data}))
            yield
    con.unregister("block")

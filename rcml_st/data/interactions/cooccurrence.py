"""Item pairs the same users touched: counted (SciPy's sparse ``AᵀA`` of the user x item matrix, or a
DuckDB self-join for time windows and logs too big for memory), scored and ranked in DuckDB."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import scipy.sparse

from rcml_st.errors import UsageError

#: The scores :func:`count_pairs` ranks partners by.
SCORES = ("count", "jaccard", "pmi")

# The old counter's tie-break among equal times, (item * 0x9E3779B97F4A7C15 mod 2^64) >> 32 mod 2^30,
# in 64-bit arithmetic: the constant is 2654435769 * 2^32 + 2135587861.
_ITEM_HASH = "((((item::BIGINT * 2135587861) >> 32) + item::BIGINT * 2654435769) % 1073741824)"


@dataclass
class CooccurrenceStats:
    """Distinct ``users``, those ``capped_users`` cut to their most recent items; distinct
    (item, partner) ``pairs`` before ``min_count`` and ``top_k``; ``edges`` kept."""

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
    """Makes the table ``edges`` (``src``, ``dst``, ``c``: users who touched both, ``rank``: 1 first).

    Args:
        con, events: a DuckDB connection and its table of ``u`` (user), ``item`` (number), ``time`` (s).
        top_k: partners kept per item (0: all), by score, then count, then catalogue order.
        score: ``"count"`` (users who touched both), ``"jaccard"`` (count / users who touched either)
            or ``"pmi"`` (log of count x users / (users of a x users of b)).
        min_count: pairs touched together by fewer users are left out.
        window: when given, items pair up only if a user touched them at most this many seconds apart.
        max_items_per_user: a user with more keeps the most recent ones (equal times: a fixed hash
            of the item number, so a capped user without times keeps a fair sample).
        significance: when above 0, a pair needs ``count - e >= significance * sqrt(e)``, ``e`` its
            count under independence (users of a x users of b / users).
        memory_mb: the memory the sparse product may use (else DuckDB counts the pairs).

    Example:
        >>> con = duckdb.connect()
        >>> rows = [("u1", 0), ("u1", 1), ("u2", 0), ("u2", 1), ("u2", 2), ("u3", 2)]
        >>> values = ", ".join(f"('{u}', {i}, 0.0)" for u, i in rows)
        >>> _ = con.execute(f"CREATE TABLE ev AS SELECT * FROM (VALUES {values}) t(u, item, time)")
        >>> count_pairs(con, "ev").pairs, con.execute("SELECT dst, c FROM edges WHERE src = 0").fetchall()
        (6, [(1, 2), (2, 1)])
    """
    if score not in SCORES:
        raise UsageError(f"unknown score {score!r} (use one of {', '.join(SCORES)})")
    if top_k < 0 or min_count < 1 or max_items_per_user < 2 or (window is not None and window < 0):
        raise UsageError("expected top_k >= 0, min_count >= 1, max_items_per_user >= 2, window >= 0")
    per_user = "DISTINCT u, item, time" if window is not None else "u, item, max(time) AS time"
    con.execute(f"""CREATE OR REPLACE TEMP TABLE kept AS SELECT * FROM (
        SELECT *, count(*) OVER (PARTITION BY u) AS n,
            row_number() OVER (PARTITION BY u ORDER BY time DESC, {_ITEM_HASH}, item) AS rank
        FROM (SELECT {per_user} FROM {events} {"GROUP BY u, item" * (window is None)}))
        WHERE rank <= {max_items_per_user}""")
    users, capped, kept = con.execute(f"""SELECT count(*) FILTER (rank = 1),
        count(*) FILTER (rank = 1 AND n > {max_items_per_user}), count(*) FROM kept""").fetchone()
    n, e = float(users), f"(a.n * b.n / {float(users)!r})"  # e: a pair's count under independence
    value = {"count": "c", "jaccard": "c / (a.n + b.n - c)", "pmi": f"ln(c * {n!r} / (a.n * b.n))"}[score]
    keep = f"c >= {min_count}" + f" AND c - {e} >= {float(significance)!r} * sqrt({e})" * (significance > 0)
    joins = ""
    if score != "count" or significance > 0:
        con.execute("""CREATE OR REPLACE TEMP TABLE item_users AS
            SELECT item, count(DISTINCT u) AS n FROM kept GROUP BY 1""")
        joins = "JOIN item_users a ON a.item = src JOIN item_users b ON b.item = dst"
    # k orders by the count, then by the lower partner number: (c, 2^32 - 1 - dst) in one BIGINT.
    pick = f"max_by(k, {{'v': v, 'k': k}}, {top_k})" if score != "count" else f"max(k, {top_k})"
    pick = pick if top_k else "list(k ORDER BY v DESC, k DESC)"
    con.execute("CREATE OR REPLACE TEMP TABLE partners (src INT, pairs BIGINT, top BIGINT[])")
    insert = f"""INSERT INTO partners SELECT src, count(*), {pick} FILTER (WHERE keep) FROM (
        SELECT src, c::BIGINT * 4294967296 + (4294967295 - dst) AS k, {value}::DOUBLE AS v, {keep} AS keep
        FROM @pairs {joins} WHERE src <> dst) GROUP BY src"""
    if window is None and 0 < kept * 16 <= memory_mb * 2**20 / 4:  # AᵀA, a block of items at a time
        lists = con.sql("SELECT list(item) FROM kept GROUP BY u").to_arrow_table().column(0).combine_chunks()
        items, starts = lists.values.to_numpy(), lists.offsets.to_numpy()
        shape = (len(starts) - 1, int(items.max()) + 1)
        a = scipy.sparse.csr_matrix((np.ones(len(items), np.int32), items, starts), shape=shape)
        # Pairs per block at 64 bytes each; two blocks are in memory at once (see below).
        at, block = a.T.tocsr(), int(memory_mb * 2**20 / 4 / 64)
        work = np.cumsum(at @ np.diff(starts).astype(np.int64))  # at least each item's products
        cuts = np.searchsorted(work, np.arange(block, work[-1], block), side="right")

        def product(lo: int, hi: int) -> pa.Table:
            coo = (at[lo:hi] @ a).tocoo()
            return pa.table({"src": coo.row + lo, "dst": coo.col, "c": coo.data})

        # SciPy's product releases the GIL: the next block is multiplied while DuckDB ranks this one.
        with ThreadPoolExecutor(max_workers=1) as pool:
            blocks = list(zip(np.r_[0, cuts].tolist(), np.r_[cuts, shape[1]].tolist(), strict=True))
            pending = pool.submit(product, *blocks[0])
            for following in [*blocks[1:], None]:
                table = pending.result()
                if following is not None:
                    pending = pool.submit(product, *following)
                con.register("block", table)  # replaces (and frees) the block before
                con.execute(insert.replace("@pairs", "block"))
        con.unregister("block")
    else:
        near = f"AND abs(a.time - b.time) <= {float(window)!r}" if window is not None else ""
        pairs = f"""(SELECT a.item AS src, b.item AS dst, count(DISTINCT a.u) AS c FROM kept a JOIN kept b
            ON a.u = b.u AND a.item <> b.item {near} WHERE a.n > 1 GROUP BY ALL)"""
        con.execute(insert.replace("@pairs", pairs))
    con.execute("""CREATE OR REPLACE TEMP TABLE edges AS SELECT src, (4294967295 - (k & 4294967295))::INT AS
        dst, (k >> 32)::INT AS c, rank FROM (SELECT src, unnest(top) AS k, generate_subscripts(top, 1) AS rank
        FROM partners)""")
    pairs, edges = con.execute("SELECT sum(pairs), sum(len(top)) FROM partners").fetchone()
    return CooccurrenceStats(users=users, capped_users=capped, pairs=int(pairs or 0), edges=int(edges or 0))

"""Item pairs that the same user (customer, order, session) touched: counted and ranked by DuckDB.

:func:`cooccurrence_edges` runs on a DuckDB table of events (``u`` user hash, ``item`` catalogue
number, ``time`` seconds), e.g. the one :func:`~rcml_st.data.interactions.read_log` makes:

1. **Per user.** Without ``window``, one row per (user, item) at its latest time; with it, one
   per distinct (user, item, time). A user with more keeps the ``max_items_per_user`` most recent
   ones; equal times are broken by a fixed hash of the item number, then the number, so a capped
   user without times keeps a fair sample, the same every run.
2. **Pairs.** A self-join on the user: each unordered pair of a user's kept items (within
   ``window`` seconds, when given) counts once per user.
3. **Top k.** Each item keeps its ``top_k`` partners by score (``count``, ``jaccard`` or
   ``pmi``), ties broken by the count, then by the partner's catalogue order (lower first).

DuckDB runs these in parallel (``threads``) within ``memory_limit``, spilling to its temporary
folder past it, so the log's size is bounded by disk, not memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np

#: The scores :func:`cooccurrence_edges` ranks partners by.
SCORES = ("count", "jaccard", "pmi")

_LOW = 4294967295  # 2^32 - 1: a pair (count, partner) packs into one BIGINT, count in the high bits
# The old counter's tie-break among equal times: (item * golden ratio mod 2^64) >> 32, mod 2^30.
_ITEM_HASH = "((item::HUGEINT * 11400714819323198485) % 18446744073709551616) // 4294967296 % 1073741824"


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


@dataclass
class CooccurrenceEdges:
    """The kept edges, grouped by source item and strongest first within a source.

    Attributes:
        sources: source item numbers (int32).
        targets: target item numbers (int32).
        counts: the number of users who touched both (int32).
        stats: the :class:`CooccurrenceStats` of the run.
    """

    sources: np.ndarray
    targets: np.ndarray
    counts: np.ndarray
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
    con: duckdb.DuckDBPyConnection,
    events: str,
    n_items: int,
    *,
    top_k: int = 10,
    score: str = "count",
    min_count: int = 1,
    window: float | None = None,
    max_items_per_user: int = 100,
    significance: float = 0.0,
) -> CooccurrenceEdges:
    """The ``top_k`` partners of every item: items the same users touched.

    Args:
        con: a DuckDB connection holding ``events``.
        events: a table or view of ``u`` (user, any type), ``item`` (int, 0..n_items-1), ``time``
            (seconds; rows without one should hold 0).
        n_items: the number of catalogue items.
        top_k: partners kept per item (0: all).
        score: ``"count"`` (users who touched both), ``"jaccard"`` (count / users who touched
            either) or ``"pmi"`` (log of count x users / (users of a x users of b)).
        min_count: pairs touched together by fewer users are left out.
        window: when given, two items pair up only if the same user touched them at most this
            many seconds apart.
        max_items_per_user: a user with more keeps only the most recent ones.
        significance: when above 0, a pair is kept only if its count is this many standard
            deviations above the count users touching items independently would give:
            ``count - e >= significance * sqrt(e)``, ``e = users of a x users of b / users``
            (a Poisson z-score). Unlike ``min_count`` it adapts to how active the users are.

    Example:
        >>> con = duckdb.connect()
        >>> rows = [("u1", 0), ("u1", 1), ("u2", 0), ("u2", 1), ("u2", 2), ("u3", 2)]
        >>> values = ", ".join(f"('{u}', {i}, 0.0)" for u, i in rows)
        >>> _ = con.execute(f"CREATE TABLE ev AS SELECT * FROM (VALUES {values}) t(u, item, time)")
        >>> edges = cooccurrence_edges(con, "ev", 3)
        >>> edges.partners()[0].tolist(), edges.counts[:2].tolist(), edges.stats.pairs
        ([1, 2], [2, 1], 6)
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r} (use one of {', '.join(SCORES)})")
    if top_k < 0 or min_count < 1 or max_items_per_user < 2 or (window is not None and window < 0):
        raise ValueError("expected top_k >= 0, min_count >= 1, max_items_per_user >= 2, window >= 0")
    distinct = "SELECT DISTINCT u, item, time" if window is not None else "SELECT u, item, max(time) AS time"
    group = "" if window is not None else "GROUP BY u, item"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE kept AS
        SELECT u, item, time, rank, n FROM (
            SELECT u, item, time, count(*) OVER (PARTITION BY u) AS n,
                   row_number() OVER (PARTITION BY u ORDER BY time DESC, {_ITEM_HASH}, item) AS rank
            FROM ({distinct} FROM {events} {group}))
        WHERE rank <= {max_items_per_user}""")
    users, capped = con.execute(
        f"SELECT count(*), count(*) FILTER (n > {max_items_per_user}) FROM kept WHERE rank = 1"
    ).fetchone()
    near = f"AND abs(a.time - b.time) <= {float(window)!r}" if window is not None else ""
    counted = "count(DISTINCT a.u)" if window is not None else "count(*)"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE pairs AS
        SELECT a.item::BIGINT * 4294967296 + b.item AS pair, {counted} AS c
        FROM kept a JOIN kept b ON a.u = b.u AND a.item < b.item {near}
        WHERE a.n > 1 AND b.n > 1 GROUP BY pair""")
    stats = CooccurrenceStats(users=users, capped_users=capped)
    stats.pairs = 2 * con.execute("SELECT count(*) FROM pairs").fetchone()[0]
    joins, value, keep = "", "c::DOUBLE", f"c >= {min_count}"
    if score != "count" or significance > 0:
        con.execute("""
            CREATE OR REPLACE TEMP TABLE item_users AS SELECT item, count(DISTINCT u)::DOUBLE AS n
            FROM kept GROUP BY item""")
        joins = "JOIN item_users ua ON ua.item = s JOIN item_users ub ON ub.item = t"
        jaccard, pmi = "c / (ua.n + ub.n - c)", f"ln(c * {float(users)!r} / (ua.n * ub.n))"
        value = {"count": value, "jaccard": jaccard, "pmi": pmi}[score]
        expected = f"(ua.n * ub.n / {float(users)!r})"
        keep += (
            f" AND c - {expected} >= {float(significance)!r} * sqrt({expected})" if significance > 0 else ""
        )
    # Both directions of each kept pair, the score computed once per pair (all three are symmetric).
    both = f"""
        WITH scored AS (
            SELECT s, t, c, {value} AS v
            FROM (SELECT (pair >> 32)::INTEGER AS s, (pair & {_LOW})::INTEGER AS t, c FROM pairs) {joins}
            WHERE {keep})
        SELECT s AS src, t AS dst, c, v, c * 4294967296 + ({_LOW} - t) AS k FROM scored
        UNION ALL SELECT t, s, c, v, c * 4294967296 + ({_LOW} - s) FROM scored"""
    # k packs (count, partner): the larger k, the higher the count, then the lower the partner.
    if not top_k:
        ranked = f"SELECT src, dst, c FROM ({both}) ORDER BY src, v DESC, k DESC"
    else:
        struct = "{'v': v, 'k': k}"
        top, k, v = (
            (f"max(k, {top_k})", "e", "")
            if score == "count"
            else (f"max_by({struct}, {struct}, {top_k})", "e.k", "e.v DESC,")
        )
        ranked = f"""
            SELECT src, ({_LOW} - ({k} & {_LOW}))::INTEGER AS dst, ({k} >> 32)::INTEGER AS c
            FROM (SELECT src, unnest(top) AS e FROM (SELECT src, {top} AS top FROM ({both}) GROUP BY src))
            ORDER BY src, {v} {k} DESC"""
    result = con.execute(ranked).fetchnumpy()
    stats.edges = len(result["src"])
    as_int = {name: np.asarray(result[name], dtype=np.int32) for name in ("src", "dst", "c")}
    return CooccurrenceEdges(as_int["src"], as_int["dst"], as_int["c"], stats)

"""Amazon review files as an interaction log: "reviewed by the same customers", counted as in ``prepare log``.

The 2023 release's metadata has no co-purchase lists (``bought_together`` is ``null``); its
co-purchase structure is in the review files, one JSON line per review: ``user_id``,
``parent_asin`` (the item: the metadata is keyed by it), ``timestamp`` (ms), ``rating``,
``verified_purchase`` (2023, ``<Category>.jsonl``); ``reviewerID``, ``asin``, ``unixReviewTime``,
``overall``, ``verified`` (2018, ``<Category>.json.gz``; 2014: without ``verified``, all kept).

Signal over noise: one customer reviewing two products says little (a stray purchase, a gift), so
by default a pair needs :data:`MIN_CO_REVIEWS` customers and :data:`CO_REVIEW_SIGNIFICANCE`
standard deviations above chance: on a generated 2023-format catalogue (20 themes, 20% stray
reviews) that keeps over 85% of edges within a theme, against 55% for every pair
(``tests/data/test_amazon_reviews.py``).
"""

from __future__ import annotations

import os

import pyarrow as pa

from rcml_st.data.amazon.reader import check_input, iter_lines
from rcml_st.data.interactions.cooccurrence import CooccurrenceStats, count_pairs
from rcml_st.data.interactions.source import LogColumns, LogStats, read_log, session

#: The relation description of items reviewed by the same customers.
REVIEW_RELATION = "reviewed by the same customers"
#: Pairs reviewed together by fewer customers are left out by default.
MIN_CO_REVIEWS = 2
#: By default a pair is kept only when reviewed together this many standard deviations more often
#: than by chance (see :func:`~rcml_st.data.interactions.count_pairs`).
CO_REVIEW_SIGNIFICANCE = 3.0

NOT_VERIFIED = "not a verified purchase"
LOW_RATING = "rated under --min-rating"


def review_edges(
    path: str | os.PathLike[str],
    items: list[str],
    *,
    verified_only: bool = True,
    min_rating: float | None = None,
    skip_invalid: bool = False,
    top_k: int = 20,
    min_count: int = MIN_CO_REVIEWS,
    max_items_per_user: int = 100,
    significance: float = CO_REVIEW_SIGNIFICANCE,
    memory_mb: float = 1024,
    temp_dir: str | os.PathLike[str] | None = None,
    stats: LogStats | None = None,
) -> tuple[dict[str, list[str]], CooccurrenceStats]:
    """Each product's ``top_k`` partners reviewed by the same customers, most co-reviews first.

    Args:
        path: a review file (2014, 2018 or 2023 release), gzip or not.
        items: the catalogue's product ids, in catalogue order (ties go to the earlier product).
        verified_only: leave out reviews flagged as not a verified purchase.
        min_rating: leave out reviews rated under this (1-5).
        skip_invalid: skip and count bad reviews (no customer, no product) instead of failing.
        top_k, min_count, max_items_per_user, significance, memory_mb: as in
            :func:`~rcml_st.data.interactions.count_pairs`.
        temp_dir: where DuckDB spills (default: the system's temporary folder).
        stats: reviews read and left out (not verified, low rating), by reason.

    Returns:
        Product id -> its partners' ids, strongest first; the counting's statistics.

    Raises:
        InputDataError: ``file:line: problem`` for a bad line or review.

    Example:
        >>> import json, pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "Baby.jsonl"
        >>> rows = [{"user_id": u, "parent_asin": a, "rating": 5.0, "timestamp": 1700000000000,
        ...          "verified_purchase": True} for u in ("U1", "U2") for a in ("B1", "B2")]
        >>> _ = p.write_text("\\n".join(json.dumps(r) for r in rows))
        >>> review_edges(p, ["B1", "B2", "B3"], significance=0)[0]
        {'B1': ['B2'], 'B2': ['B1']}
    """
    path = check_input(path)
    user, item, when, rating, verified = _fields(path)
    filters = {NOT_VERIFIED: (verified, "{} = 'false'")} if verified_only else {}
    if min_rating is not None:
        filters[LOW_RATING] = (rating, f"coalesce(TRY_CAST({{}} AS DOUBLE) < {float(min_rating)!r}, TRUE)")
    stats = stats if stats is not None else LogStats()
    with session(memory_mb, None, temp_dir) as con:
        con.register("ids", pa.table({"id": items, "num": pa.array(range(len(items)), pa.int32())}))
        con.execute("CREATE TEMP TABLE items AS SELECT * FROM ids")
        read_log(
            con,
            path,
            LogColumns(user, item, when),
            stats,
            fmt="jsonl",
            skip_invalid=skip_invalid,
            filters=filters,
        )
        options = {
            "top_k": top_k,
            "min_count": min_count,
            "significance": significance,
            "memory_mb": memory_mb,
        }
        counting = count_pairs(con, max_items_per_user=max_items_per_user, **options)
        partners = con.execute("""SELECT a.id, list(b.id ORDER BY rank) FROM edges JOIN items a ON a.num = src
            JOIN items b ON b.num = dst GROUP BY a.id, a.num ORDER BY a.num""").fetchall()
    return dict(partners), counting


def _fields(path) -> tuple[str, ...]:
    """The (user, item, time, rating, verified) fields of the file's release, from its first review."""
    if b'"reviewerID"' in next((raw for _, raw in iter_lines(path) if raw.strip()), b""):
        return ("reviewerID", "asin", "unixReviewTime", "overall", "verified")
    return ("user_id", "parent_asin", "timestamp", "rating", "verified_purchase")

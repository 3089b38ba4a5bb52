"""Amazon review files as an interaction log: "reviewed by the same customers", counted as in ``prepare log``.

The 2023 metadata has no co-purchase lists; its reviews (``user_id``, ``parent_asin``, ``timestamp``
in ms, ``rating``, ``verified_purchase``) and the 2018 ones (``reviewerID``, ``asin``,
``unixReviewTime``, ``overall``, ``verified``; 2014: no ``verified``, all kept) give them. By default
a pair needs :data:`MIN_CO_REVIEWS` customers, :data:`CO_REVIEW_SIGNIFICANCE` standard deviations
above chance: on a 2023-format catalogue with 20% stray reviews over 85% of the edges stay within a
theme, against 55% for every pair (``tests/data/test_amazon_reviews.py``).
"""

from __future__ import annotations

import os

import pyarrow as pa

from rcml_st.data.amazon.reader import check_input, iter_lines
from rcml_st.data.interactions.cooccurrence import CooccurrenceStats, count_pairs
from rcml_st.data.interactions.source import LogColumns, LogStats, read_log, session

#: The relation description of items reviewed by the same customers.
REVIEW_RELATION = "reviewed by the same customers"
#: Defaults: pairs need this many customers, this many standard deviations above chance.
MIN_CO_REVIEWS, CO_REVIEW_SIGNIFICANCE = 2, 3.0
NOT_VERIFIED, LOW_RATING = "not a verified purchase", "rated under --min-rating"
# The (user, item, time, rating, verified) fields of the 2018 (and 2014) and the 2023 releases.
_FIELDS_2018 = ("reviewerID", "asin", "unixReviewTime", "overall", "verified")
_FIELDS_2023 = ("user_id", "parent_asin", "timestamp", "rating", "verified_purchase")


def review_edges(
    path: str | os.PathLike[str],
    items: list[str],
    *,
    verified_only: bool = True,
    min_rating: float | None = None,
    skip_invalid: bool = False,
    temp_dir: str | os.PathLike[str] | None = None,
    stats: LogStats | None = None,
    **options: float,
) -> tuple[dict[str, list[str]], CooccurrenceStats]:
    """Product id -> its partners' ids reviewed by the same customers, strongest first; the counting's stats.

    Args:
        path: a review file (2014, 2018 or 2023 release), gzip or not.
        items: the catalogue's product ids, in catalogue order (ties go to the earlier product).
        verified_only: leave out reviews flagged as not a verified purchase.
        min_rating: leave out reviews rated under this (1-5).
        skip_invalid: skip and count bad reviews (no customer, no product) instead of failing.
        temp_dir: where DuckDB spills; ``stats``: reviews read and left out, by reason.
        options: of :func:`~rcml_st.data.interactions.count_pairs`; by default ``top_k=20``,
            ``min_count=MIN_CO_REVIEWS``, ``significance=CO_REVIEW_SIGNIFICANCE``.

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
    release_2018 = b'"reviewerID"' in next((raw for _, raw in iter_lines(path) if raw.strip()), b"")
    user, item, when, rating, verified = _FIELDS_2018 if release_2018 else _FIELDS_2023
    filters = {NOT_VERIFIED: (verified, "{} = 'false'")} if verified_only else {}
    if min_rating is not None:
        filters[LOW_RATING] = (rating, f"coalesce(TRY_CAST({{}} AS DOUBLE) < {float(min_rating)!r}, TRUE)")
    options = {"top_k": 20, "min_count": MIN_CO_REVIEWS, "significance": CO_REVIEW_SIGNIFICANCE} | options
    with session(options.get("memory_mb", 1024), None, temp_dir) as con:
        con.register("ids", pa.table({"id": items, "num": pa.array(range(len(items)), pa.int32())}))
        con.execute("CREATE TEMP TABLE items AS SELECT * FROM ids")
        log, stats = LogColumns(user, item, when), stats if stats is not None else LogStats()
        read_log(con, path, log, stats, fmt="jsonl", skip_invalid=skip_invalid, filters=filters)
        counting = count_pairs(con, **options)
        partners = con.execute("""SELECT a.id, list(b.id ORDER BY rank) FROM edges JOIN items a ON a.num = src
            JOIN items b ON b.num = dst GROUP BY a.id, a.num ORDER BY a.num""").fetchall()
    return dict(partners), counting

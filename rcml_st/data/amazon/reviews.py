"""Amazon review files as an interaction log: "reviewed by the same customers", counted by DuckDB.

The 2023 release's metadata has no co-purchase lists (``bought_together`` is ``null``); its
co-purchase structure is in the review files. Each review is one JSON line:

- **2023** (``<Category>.jsonl``): ``rating``, ``title``, ``text``, ``images``, ``asin``,
  ``parent_asin``, ``user_id``, ``timestamp`` (ms), ``helpful_vote``, ``verified_purchase``.
  The metadata is keyed by ``parent_asin``, so that is the item.
- **2018** (``<Category>.json.gz``): ``reviewerID``, ``asin``, ``overall``, ``unixReviewTime``,
  ``verified``, ``reviewText``, ...
- **2014** (``reviews_<Category>.json.gz``): as 2018 without ``verified``.

Only verified purchases count by default (a review without the flag, as in 2014, is kept);
``min_rating`` keeps reviews rated at least that many stars.

Signal over noise: by default a pair of products must have been reviewed by at least
:data:`MIN_CO_REVIEWS` (2) customers. One customer reviewing two products says little (a
stray purchase, a gift, a second household); on a generated 2023-format catalogue (200 products
in 20 themes, customers reviewing within a theme plus 20% stray reviews) keeping every pair
linked 16 partners per product of which 55% in the same theme, while 2 or more co-reviews keep
over 85% in the same theme (``tests/data/test_amazon_reviews.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa

from rcml_st.data.amazon.reader import check_input, iter_lines
from rcml_st.data.interactions.cooccurrence import CooccurrenceStats, count_pairs
from rcml_st.data.interactions.source import (
    LogStats,
    connect,
    ident,
    input_error,
    load_events,
    scan_sql,
    time_sql,
)
from rcml_st.data.interactions.source import sql_string as sql
from rcml_st.errors import InputDataError

#: The relation description of items reviewed by the same customers.
REVIEW_RELATION = "reviewed by the same customers"
#: Pairs reviewed together by fewer customers are left out by default.
MIN_CO_REVIEWS = 2
#: By default a pair is kept only when reviewed together this many standard deviations more
#: often than customers reviewing at random would (see :func:`count_pairs`).
CO_REVIEW_SIGNIFICANCE = 3.0

NOT_VERIFIED = "not a verified purchase"
LOW_RATING = "rated under --min-rating"

# Field names: (user, item, item fallback, time, rating, verified) per release family.
_FIELDS_2023 = ("user_id", "parent_asin", "asin", "timestamp", "rating", "verified_purchase")
_FIELDS_2018 = ("reviewerID", "asin", "asin", "unixReviewTime", "overall", "verified")


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
    """Each product's ``top_k`` partners reviewed by the same customers (at least ``min_count``).

    Args:
        path: a review file (2014, 2018 or 2023 release), gzip or not.
        items: the catalogue's product ids, in catalogue order (ties go to the earlier product).
        verified_only: leave out reviews flagged as not a verified purchase.
        min_rating: leave out reviews rated under this (1-5).
        skip_invalid: skip and count bad reviews (no customer, no product) instead of failing.
        top_k: partners kept per product, most co-reviews first (ties: catalogue order).
        min_count: pairs reviewed together by fewer customers are left out.
        max_items_per_user: a customer with more reviewed products keeps the most recent ones.
        significance: a pair must be reviewed together this many standard deviations more often
            than by chance (0: any count from ``min_count`` on).
        memory_mb: DuckDB's memory limit (it spills to ``temp_dir`` past it).
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
    stats = stats if stats is not None else LogStats()
    fields = _fields(path)
    user, item, fallback, when, rating, verified = map(ident, fields)
    text = "nullif(trim(CAST({} AS VARCHAR)), '')".format
    filters = f"WHEN {verified} = 'false' THEN {sql(NOT_VERIFIED)} " if verified_only else ""
    if min_rating is not None:
        filters += f"WHEN coalesce(TRY_CAST({rating} AS DOUBLE) < {float(min_rating)!r}, TRUE) THEN {sql(LOW_RATING)} "
    parsed = f"""
        SELECT filename, u, it, tm, reason, reason LIKE 'no %' AS bad, 'review without ' || replace(reason, 'no ', '') AS problem
        FROM (SELECT filename, u, it, tm, CASE WHEN u IS NULL THEN {sql(f"no {fields[0]!r}")}
                     WHEN it IS NULL THEN {sql(f"no {fields[1]!r}")} {filters}END AS reason
              FROM (SELECT *, filename, {text(user)} AS u, coalesce({text(item)}, {text(fallback)}) AS it,
                           {time_sql(when)} AS tm FROM {scan_sql([path], "jsonl", sorted(set(fields)))}))"""
    spill = tempfile.mkdtemp(prefix=".rcml-duckdb-", dir=temp_dir)
    try:
        with connect(memory_mb, None, spill) as con:
            con.register("ids", pa.table({"id": items, "num": pa.array(range(len(items)), pa.int32())}))
            con.execute("CREATE TEMP TABLE items AS SELECT * FROM ids")
            try:
                load_events(con, parsed, "jsonl", skip_invalid, stats)
            except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
                raise input_error(exc, [path]) from None
            options = {"top_k": top_k, "min_count": min_count, "significance": significance}
            counting = count_pairs(con, max_items_per_user=max_items_per_user, memory_mb=memory_mb, **options)
            partners = con.execute("""SELECT a.id, list(b.id ORDER BY rank) FROM edges
                JOIN items a ON a.num = src JOIN items b ON b.num = dst GROUP BY a.id, a.num ORDER BY a.num""").fetchall()
            return dict(partners), counting
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def _fields(path: Path) -> tuple[str, ...]:
    """The field names of the file's release, from its first review."""
    for number, line in iter_lines(path):
        if line.strip():
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise InputDataError(f"bad JSON: {exc}", path=str(path), line=number) from None
            is_2023 = isinstance(record, dict) and ("user_id" in record or "parent_asin" in record)
            return _FIELDS_2023 if is_2023 else _FIELDS_2018
    return _FIELDS_2023

"""Amazon review files as an interaction log: "reviewed by the same customers".

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
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from rcml_st.data.interactions.reader import Interaction, LogStats, iter_records, parse_time
from rcml_st.errors import InputDataError

#: The relation description of items reviewed by the same customers.
REVIEW_RELATION = "reviewed by the same customers"

NOT_VERIFIED = "not a verified purchase"
LOW_RATING = "rated under --min-rating"

# Field names: (user, item, item fallback, time, rating, verified) per release family.
_FIELDS_2023 = ("user_id", "parent_asin", "asin", "timestamp", "rating", "verified_purchase")
_FIELDS_2018 = ("reviewerID", "asin", None, "unixReviewTime", "overall", "verified")


def _text(record: dict[str, Any], key: str | None) -> str | None:
    value = record.get(key) if key else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    return value.strip() if isinstance(value, str) and value.strip() else None


def iter_reviews(
    path: str | os.PathLike[str],
    *,
    verified_only: bool = True,
    min_rating: float | None = None,
    skip_invalid: bool = False,
    stats: LogStats | None = None,
) -> Iterator[Interaction]:
    """Yields (customer, product, time) for each review that counts, streaming.

    Args:
        path: a review file (2014, 2018 or 2023 release), gzip or not.
        verified_only: leave out reviews flagged as not a verified purchase.
        min_rating: leave out reviews rated under this (1-5).
        skip_invalid: skip and count bad reviews (no customer, no product) instead of failing.
        stats: rows read and reviews left out, by reason.

    Raises:
        InputDataError: ``file:line: problem`` for a bad line or review.

    Example:
        >>> import json, pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "Baby.jsonl"
        >>> rows = [{"user_id": "U1", "parent_asin": "B1", "asin": "B1x", "rating": 5.0,
        ...          "timestamp": 1700000000000, "verified_purchase": True, "text": "ok"},
        ...         {"user_id": "U1", "parent_asin": "B2", "rating": 2.0, "timestamp": None,
        ...          "verified_purchase": False}]
        >>> _ = p.write_text("\\n".join(json.dumps(r) for r in rows))
        >>> list(iter_reviews(p))
        [Interaction(user='U1', item='B1', time=1700000000.0)]
    """
    stats = stats if stats is not None else LogStats()
    where = str(path)
    fields: tuple[str | None, ...] | None = None
    for number, record in iter_records(path, "jsonl"):
        stats.rows += 1
        if fields is None:
            fields = _FIELDS_2023 if "user_id" in record or "parent_asin" in record else _FIELDS_2018
        user_key, item_key, item_fallback, time_key, rating_key, verified_key = fields
        user = _text(record, user_key)
        item = _text(record, item_key) or _text(record, item_fallback)
        if user is None or item is None:
            missing = user_key if user is None else item_key
            error = InputDataError(f"review without {missing!r}", path=where, line=number)
            if not skip_invalid:
                raise error
            stats.skip(f"no {missing}", str(error))
            continue
        verified = record.get(verified_key)  # type: ignore[arg-type]
        if verified_only and verified is False:
            stats.skip(NOT_VERIFIED, f"{where}:{number}")
            continue
        if min_rating is not None:
            rating = record.get(rating_key)  # type: ignore[arg-type]
            if not isinstance(rating, (int, float)) or isinstance(rating, bool) or rating < min_rating:
                stats.skip(LOW_RATING, f"{where}:{number}")
                continue
        try:
            time = parse_time(record.get(time_key))  # type: ignore[arg-type]
        except ValueError:
            time = None  # a missing time only matters for which items a capped customer keeps
        yield Interaction(user, item, time)

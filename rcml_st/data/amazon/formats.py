"""The three Amazon product-metadata formats: parsing a line, detecting the format, normalising.

- **2014** (``meta_<Category>.json.gz``): one Python dict literal per line (single quotes), read
  with :func:`ast.literal_eval`, never ``eval``. ``asin``, ``title``, ``description``, ``price``,
  ``brand``, ``categories`` (list of lists), ``related`` with ``also_bought``, ``also_viewed``,
  ``bought_together``, ``buy_after_viewing``. A "strict JSON" re-release of the same records
  exists; it is recognised by its fields.
- **2018**: JSON lines. ``asin``, ``title``, ``description`` (list), ``feature`` (list),
  ``brand``, ``category`` (list), ``also_buy``, ``also_view``, ``price`` (string such as "$12.99").
- **2023**: JSON lines keyed by ``parent_asin``. ``title``, ``features``, ``description``,
  ``categories``, ``main_category``, ``store``, ``details`` (may hold "Brand"), ``price``,
  ``bought_together`` (often empty).

Every record becomes one :class:`AmazonRecord`, so the converter never looks at format details.
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from rcml_st.data.amazon.cleaning import looks_like_junk_price, strip_markup

#: The formats the converter reads, by the year of their release.
FORMATS = ("2014", "2018", "2023")

#: The key holding the product id in each format.
ID_FIELD = {"2014": "asin", "2018": "asin", "2023": "parent_asin"}

#: The relation lists of each format, in the order they are read (and written).
RELATION_FIELDS = {
    "2014": ("also_bought", "also_viewed", "bought_together", "buy_after_viewing"),
    "2018": ("also_buy", "also_view"),
    "2023": ("bought_together",),
}

# Fields that only one generation of the data has: they decide the format of the first record.
_FIELDS_2014 = frozenset({"related", "imUrl", "salesRank"})
_FIELDS_2018 = frozenset({"also_buy", "also_view", "category", "feature", "imageURL", "imageURLHighRes"})

# Descriptions can be tens of kilobytes of HTML; only their start can reach the item text, so
# cleaning more than this many characters is wasted work.
_RAW_DESCRIPTION_CHARS = 4000

_PRICE_RE = re.compile(r"^(?:US)?\s*[$£€]?\s*([0-9][0-9,]*(?:\.[0-9]+)?)\s*$")


class RecordError(Exception):
    """One bad record: a short reason key (for counting with ``--skip-invalid``) and the problem.

    Example:
        >>> str(RecordError("missing ASIN", "missing 'asin'"))
        "missing 'asin'"
    """

    def __init__(self, reason: str, problem: str) -> None:
        super().__init__(problem)
        self.reason = reason
        self.problem = problem


# Reasons a record is rejected (keys of the summary's "skipped" counts).
MALFORMED = "malformed line"
MISSING_ASIN = "missing ASIN"
WRONG_TYPE = "wrong field type"


@dataclass
class AmazonRecord:
    """One product, whatever format it came from.

    Attributes:
        asin: the product id (``asin``, or ``parent_asin`` in the 2023 format).
        title: the cleaned title ("" when absent).
        brand: the brand (2023: ``details["Brand"]`` or the ``store``), "" when absent.
        description: the cleaned description, or the features when there is no description.
        price: the price as a number, ``None`` when absent or not a single number.
        price_unparsed: whether a price was present but could not be read as a number.
        categories: category names, flattened and de-duplicated in order of appearance.
        relations: raw relation name (``also_bought``...) -> target ASINs, as in the file.

    Example:
        >>> rec = normalise({"asin": "B1", "title": "Bib", "price": "$3.50"}, "2018")
        >>> rec.asin, rec.title, rec.price
        ('B1', 'Bib', 3.5)
    """

    asin: str
    title: str = ""
    brand: str = ""
    description: str = ""
    price: float | None = None
    price_unparsed: bool = False
    categories: list[str] = field(default_factory=list)
    relations: dict[str, list[str]] = field(default_factory=dict)


# --------------------------------------------------------------------------- parsing


def parse_line(raw: bytes, fmt: str | None, first: bool = False) -> tuple[dict[str, Any], str]:
    """Parses one line into a dict.

    JSON is tried first when the line looks like JSON (all 2018 and 2023 lines, and the strict
    re-release of 2014); a Python dict literal (the original 2014 format) is read with
    :func:`ast.literal_eval`, which evaluates literals only and never runs code.

    Args:
        raw: the line's bytes (UTF-8).
        fmt: the forced or detected format, or ``None`` while detecting. Python literals are
            accepted only for ``"2014"`` and ``None``.
        first: whether this is the file's first line (a UTF-8 byte-order mark is allowed).

    Returns:
        The parsed dict and its syntax, ``"json"`` or ``"python"``.

    Raises:
        RecordError: when the line is neither, or is not a dict.

    Example:
        >>> parse_line(b"{'asin': 'B1', 'title': 'Bib'}", None)
        ({'asin': 'B1', 'title': 'Bib'}, 'python')
    """
    try:
        text = raw.decode("utf-8-sig" if first else "utf-8").strip()
    except UnicodeDecodeError as exc:
        raise RecordError(MALFORMED, f"not UTF-8 (byte {exc.start + 1} of the line)") from None
    python_ok = fmt in (None, "2014")
    value: Any
    syntax = "json"
    if text.startswith('{"') or not python_ok:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as exc:
            if not python_ok:
                detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                raise RecordError(MALFORMED, f"bad JSON: {detail}") from None
            value, syntax = _literal(text), "python"
    else:
        value, syntax = _literal(text), "python"
    if not isinstance(value, dict):
        raise RecordError(MALFORMED, f"expected a product record (a dict), got {type(value).__name__}")
    return value, syntax


def _literal(text: str) -> Any:
    try:
        with warnings.catch_warnings():
            # Odd escapes in a broken line would print SyntaxWarnings; the line is rejected anyway.
            warnings.simplefilter("ignore")
            return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, SyntaxError) and exc.msg else type(exc).__name__
        raise RecordError(MALFORMED, f"not a JSON object nor a Python dict literal ({detail})") from None


def detect_format(record: dict[str, Any], syntax: str) -> str | None:
    """Says which format a record belongs to, from its fields (and its syntax as a tie-breaker).

    Args:
        record: a parsed line.
        syntax: ``"json"`` or ``"python"`` (from :func:`parse_line`).

    Returns:
        ``"2014"``, ``"2018"`` or ``"2023"``; ``None`` when the record has no product id at all.

    Example:
        >>> detect_format({"parent_asin": "B1", "title": "Bib"}, "json")
        '2023'
        >>> detect_format({"asin": "B1", "also_buy": []}, "json")
        '2018'
    """
    if "parent_asin" in record:
        return "2023"
    if syntax == "python" or not _FIELDS_2014.isdisjoint(record):
        return "2014"
    if not _FIELDS_2018.isdisjoint(record) or "asin" in record:
        return "2018"
    return None


# --------------------------------------------------------------------------- normalising


def clean_text(value: Any) -> str:
    """Turns a field into one line of plain text: lists joined, markup and entities removed.

    See :func:`~rcml_st.data.amazon.cleaning.strip_markup` (tags cut short, escaped tags, CSS).

    Example:
        >>> clean_text(["<b>Soft</b> &amp; warm", "", "machine   washable"])
        'Soft & warm machine washable'
    """
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = " ".join(str(part) for part in value if isinstance(part, (str, int, float)))
    elif not isinstance(value, str):
        value = str(value)
    return strip_markup(value)


def parse_price(value: Any) -> float | None:
    """Reads a price as a number: ``12.5``, ``"$12.50"``, ``"1,299.00"``; ``None`` otherwise.

    Ranges ("$5.99 - $9.99") and free text are not a single price and give ``None``.

    Example:
        >>> parse_price("$1,299.00"), parse_price(4), parse_price("$5 - $9"), parse_price("None")
        (1299.0, 4.0, None, None)
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        match = _PRICE_RE.match(value.strip())
        if not match:
            return None
        number = float(match.group(1).replace(",", ""))
    else:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _has_price(value: Any) -> bool:
    # CSS, markup or blanks where a price should be are no price at all, not an unreadable one.
    if isinstance(value, str):
        return value.strip() not in ("None", "null") and not looks_like_junk_price(value)
    return value is not None and not isinstance(value, bool)


def _categories(record: dict[str, Any], fmt: str) -> list[str]:
    if fmt == "2014":
        raw: Any = record.get("categories") or []
        # A list of category paths (lists); tolerate a flat list too.
        paths = [p if isinstance(p, (list, tuple)) else [p] for p in raw] if isinstance(raw, list) else []
    elif fmt == "2018":
        raw = record.get("category") or []
        paths = [raw] if isinstance(raw, list) else []
    else:
        raw = record.get("categories") or []
        paths = [raw] if isinstance(raw, list) else []
        main = record.get("main_category")
        if isinstance(main, str) and main.strip():
            paths.insert(0, [main])
    seen: dict[str, None] = {}
    for path in paths:
        for name in path:
            if isinstance(name, str):
                name = clean_text(name)
                if name:
                    seen.setdefault(name, None)
    return list(seen)


def _relations(record: dict[str, Any], fmt: str, asin: str) -> dict[str, list[str]]:
    source = record.get("related") if fmt == "2014" else record
    if source is None:
        return {}
    if not isinstance(source, dict):
        raise RecordError(
            WRONG_TYPE, f"product {asin!r}: 'related' must be a dict, got {type(source).__name__}"
        )
    relations: dict[str, list[str]] = {}
    for name in RELATION_FIELDS[fmt]:
        targets = source.get(name)
        if targets is None:
            continue
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise RecordError(
                WRONG_TYPE,
                f"product {asin!r}: {name!r} must be a list of ASIN strings, got {_short(targets)}",
            )
        if targets:
            relations[name] = targets
    return relations


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _brand(record: dict[str, Any], fmt: str) -> str:
    brand: Any = record.get("brand")
    if fmt == "2023":
        details = record.get("details")
        brand = details.get("Brand") if isinstance(details, dict) else None
        brand = brand or record.get("store")
    return clean_text(brand) if isinstance(brand, str) else ""


def _description(record: dict[str, Any], fmt: str) -> str:
    description: Any = record.get("description")
    if isinstance(description, str):
        description = description[:_RAW_DESCRIPTION_CHARS]
    elif isinstance(description, list):
        description = [d[:_RAW_DESCRIPTION_CHARS] for d in description if isinstance(d, str)]
    text = clean_paragraphs(description)
    if not text:
        # Many products describe themselves only through feature bullets.
        features = record.get("features" if fmt == "2023" else "feature")
        if isinstance(features, list):
            text = clean_paragraphs([f[:_RAW_DESCRIPTION_CHARS] for f in features if isinstance(f, str)])
    return text


def clean_paragraphs(value: Any) -> str:
    """Like :func:`clean_text`, but each list element (a paragraph or bullet) ends a sentence.

    So a notice pasted in as its own paragraph stays a sentence of its own, which the
    boilerplate detection can recognise.

    Example:
        >>> clean_paragraphs(["Soft cotton", "<a href='/x'>Learn more</a> about renewals", ""])
        'Soft cotton. Learn more about renewals'
    """
    if not isinstance(value, (list, tuple)):
        return clean_text(value)
    parts = [clean_text(part) for part in value if isinstance(part, (str, int, float))]
    parts = [part for part in parts if part]
    return " ".join(
        part if i == len(parts) - 1 or part[-1] in ".!?:;" else part + "." for i, part in enumerate(parts)
    )


def normalise(record: dict[str, Any], fmt: str) -> AmazonRecord:
    """Turns one parsed record of a known format into an :class:`AmazonRecord`.

    Args:
        record: the parsed line.
        fmt: ``"2014"``, ``"2018"`` or ``"2023"``.

    Raises:
        RecordError: when the product id is missing or not a string, or a relation list is not
            a list of strings.

    Example:
        >>> rec = normalise({"asin": "B1", "related": {"also_bought": ["B2"]}}, "2014")
        >>> rec.relations
        {'also_bought': ['B2']}
    """
    key = ID_FIELD[fmt]
    asin = record.get(key)
    if asin is None:
        raise RecordError(MISSING_ASIN, f"missing {key!r} (the {fmt} format's product id)")
    if not isinstance(asin, str):
        raise RecordError(WRONG_TYPE, f"{key!r} must be a string, got {_short(asin)}")
    asin = asin.strip()
    if not asin:
        raise RecordError(MISSING_ASIN, f"empty {key!r}")
    title = record.get("title")
    raw_price = record.get("price")
    price = parse_price(raw_price)
    return AmazonRecord(
        asin=asin,
        title=clean_text(title) if isinstance(title, (str, list)) else "",
        brand=_brand(record, fmt),
        description=_description(record, fmt),
        price=price,
        price_unparsed=price is None and _has_price(raw_price),
        categories=_categories(record, fmt),
        relations=_relations(record, fmt, asin),
    )


def item_text(record: AmazonRecord, max_chars: int) -> str | None:
    """Builds an item's text: title, then the brand (unless the title names it), then description.

    Without a title (real records whose title was a cut-off tag) the brand leads the text. The
    result is cut at a word boundary to at most ``max_chars`` characters (CLIP's text tower
    reads 77 tokens, about 300 characters). A brand alone is not product text: without a title
    and a description there is no text.

    Example:
        >>> rec = AmazonRecord("B1", title="Nursing pillow", brand="Acme", description="Soft cotton.")
        >>> item_text(rec, 300)
        'Nursing pillow, by Acme. Soft cotton.'
        >>> item_text(rec, 25)
        'Nursing pillow, by Acme'
        >>> item_text(AmazonRecord("B2", brand="Reason Magazine", description="Economics."), 300)
        'Reason Magazine. Economics.'
    """
    if not record.title and not record.description:
        return None
    head = record.title
    if head and record.brand and record.brand.lower() not in head.lower():
        head = f"{head}, by {record.brand}"
    elif not head and record.brand and not record.description.lower().startswith(record.brand.lower()):
        head = record.brand
    if head and record.description:
        text = head + (" " if head[-1] in ".!?" else ". ") + record.description
    else:
        text = head or record.description
    return trim(text, max_chars)


def trim(text: str, max_chars: int) -> str:
    """Cuts text to at most ``max_chars`` characters, at a word boundary when one is near.

    Example:
        >>> trim("soft organic cotton bib", 15)
        'soft organic'
    """
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    if space >= max_chars // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-.")

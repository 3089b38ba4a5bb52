"""Reading interaction logs: (who, item, when) rows from CSV, TSV or JSON Lines, gzip or not.

"Who" is whatever groups the items that co-occur: a customer, an order or a session id. Columns
are named by the caller; the time column is optional. Each bad row is one
:class:`~rcml_st.errors.InputDataError` (``file:line: problem``), or, with ``skip_invalid``,
counted in :class:`LogStats` and skipped.

Times are numbers (Unix seconds, or milliseconds: a number above 10^11 is read as ms, as in the
Amazon 2023 reviews) or ISO 8601 strings (``2024-03-01T12:30:00Z``); they come out in seconds.
"""

from __future__ import annotations

import collections
import csv
import gzip
import io
import json
import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from rcml_st.data.amazon.reader import check_input, is_gzip
from rcml_st.errors import InputDataError, UsageError

#: The log formats :func:`iter_log` reads.
LOG_FORMATS = ("csv", "tsv", "jsonl")

_MS_THRESHOLD = 1e11  # 1e11 seconds is the year 5138; a larger number is milliseconds


class Interaction(NamedTuple):
    """One row of a log: who touched which item, and when (seconds, ``None`` without a time column)."""

    user: str
    item: str
    time: float | None


@dataclass
class LogColumns:
    """The names of a log's columns (CSV/TSV header names or JSON keys).

    Example:
        >>> LogColumns(user="order_id", item="sku").time is None
        True
    """

    user: str = "user_id"
    item: str = "item_id"
    time: str | None = None


@dataclass
class LogStats:
    """What reading a log did.

    Attributes:
        rows: rows read (header and blank lines excluded).
        skipped: reason -> rows skipped (bad rows, only with ``skip_invalid``; rows filtered out).
        skip_examples: reason -> where the first such row was (``file:line: problem``).
    """

    rows: int = 0
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    skip_examples: dict[str, str] = field(default_factory=dict)

    def skip(self, reason: str, where: str) -> None:
        """Counts one row left out, remembering where the first of its kind was."""
        self.skipped[reason] += 1
        self.skip_examples.setdefault(reason, where)


class RowError(Exception):
    """A bad row: a short reason (for counting) and the problem (for the message)."""

    def __init__(self, reason: str, problem: str) -> None:
        super().__init__(problem)
        self.reason = reason
        self.problem = problem


def detect_log_format(path: str | os.PathLike[str]) -> str:
    """The format of a log from its name (``.csv``, ``.tsv``, ``.jsonl``/``.json``, maybe ``.gz``).

    Example:
        >>> detect_log_format("orders.tsv.gz"), detect_log_format("reviews.jsonl")
        ('tsv', 'jsonl')
    """
    suffixes = [s.lower() for s in Path(path).suffixes if s.lower() not in (".gz", ".gzip")]
    last = suffixes[-1] if suffixes else ""
    if last in (".csv",):
        return "csv"
    if last in (".tsv", ".tab"):
        return "tsv"
    if last in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    raise UsageError(f"cannot tell the format of {path} from its name: give --log-format csv, tsv or jsonl")


def parse_time(value: Any) -> float:
    """A time in seconds from a number (s, or ms above 10^11) or an ISO 8601 string.

    Raises:
        ValueError: for anything else.

    Example:
        >>> parse_time(1700000000), parse_time("1700000000000"), parse_time("2023-11-14T22:13:20Z")
        (1700000000.0, 1700000000.0, 1700000000.0)
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"not a time (a number or ISO 8601): {value!r}") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            return moment.timestamp()
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        raise ValueError(f"not a time: {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"not a time: {value!r}")
    return number / 1000.0 if abs(number) > _MS_THRESHOLD else number


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: str) -> float:
    """Seconds from a duration: ``90``, ``90s``, ``30m``, ``2h``, ``7d`` or ``2w``.

    Raises:
        ValueError: for anything else, or a negative duration.

    Example:
        >>> parse_duration("30m"), parse_duration("7d"), parse_duration("45")
        (1800.0, 604800.0, 45.0)
    """
    text = value.strip().lower()
    unit = _DURATION_UNITS.get(text[-1:]) if text else None
    number_text = text[:-1] if unit is not None else text
    try:
        number = float(number_text)
    except ValueError:
        raise ValueError(f"not a duration: {value!r} (e.g. 90s, 30m, 2h, 7d)") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"not a duration: {value!r} (must be 0 or more)")
    return number * (unit or 1.0)


def _open_text(path: Path) -> io.TextIOBase:
    raw = open(path, "rb")  # noqa: SIM115 - closed with the wrapper
    stream: Any = gzip.GzipFile(fileobj=raw, mode="rb") if is_gzip(path) else raw
    return io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")


def _id(value: Any, column: str) -> str:
    if isinstance(value, bool) or value is None:
        raise RowError(f"missing {column}", f"missing {column!r}")
    if isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        raise RowError(
            "wrong field type", f"{column!r} must be a string or a number, got {type(value).__name__}"
        )
    value = value.strip()
    if not value:
        raise RowError(f"missing {column}", f"empty {column!r}")
    return value


def iter_records(
    path: str | os.PathLike[str], fmt: str | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yields ``(line number, record)`` for every row of a CSV, TSV or JSON Lines file, streaming.

    A CSV/TSV file's first row names the columns. Gzip is recognised by its magic bytes.

    Raises:
        InputDataError: ``file:line: problem`` for bad JSON, a JSON line that is not an object,
            a row with the wrong number of fields, undecodable text or a damaged gzip stream.
    """
    path = check_input(path)
    fmt = fmt or detect_log_format(path)
    if fmt not in LOG_FORMATS:
        raise UsageError(f"unknown log format {fmt!r} (use one of {', '.join(LOG_FORMATS)})")
    where = str(path)
    number = 0
    try:
        with _open_text(path) as fh:
            if fmt == "jsonl":
                for number, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except (ValueError, RecursionError) as exc:
                        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                        raise InputDataError(f"bad JSON: {detail}", path=where, line=number) from None
                    if not isinstance(record, dict):
                        problem = f"expected a JSON object, got {type(record).__name__}"
                        raise InputDataError(problem, path=where, line=number)
                    yield number, record
                return
            reader = csv.reader(fh, delimiter="," if fmt == "csv" else "\t")
            header = next(reader, None)
            if header is None:
                return
            header = [name.strip() for name in header]
            for fields in reader:
                number = reader.line_num
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                if len(fields) != len(header):
                    problem = f"{len(fields)} fields, the header has {len(header)}"
                    raise InputDataError(problem, path=where, line=number)
                yield number, dict(zip(header, fields, strict=True))
    except UnicodeDecodeError as exc:
        raise InputDataError(f"not UTF-8 text ({exc.reason})", path=where, line=number + 1) from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        problem = f"corrupt gzip data ({exc}); the file is damaged or truncated"
        raise InputDataError(problem, path=where, line=number + 1) from None
    except csv.Error as exc:
        raise InputDataError(f"bad CSV: {exc}", path=where, line=number + 1) from None


def iter_log(
    path: str | os.PathLike[str],
    columns: LogColumns | None = None,
    *,
    fmt: str | None = None,
    skip_invalid: bool = False,
    stats: LogStats | None = None,
) -> Iterator[Interaction]:
    """Yields the :class:`Interaction` of every row of a log, streaming.

    Args:
        path: a ``.csv``, ``.tsv`` or ``.jsonl`` file, gzip or not.
        columns: the column names (default ``user_id``, ``item_id``, no time).
        fmt: ``"csv"``, ``"tsv"`` or ``"jsonl"``; from the file name when ``None``.
        skip_invalid: skip and count bad rows (missing or empty ids, bad times) instead of failing.
        stats: filled in as rows are read.

    Raises:
        InputDataError: ``file:line: problem`` on the first bad row (unless ``skip_invalid``;
            unreadable lines and a missing column in the header always stop).

    Example:
        >>> import pathlib, tempfile
        >>> log = pathlib.Path(tempfile.mkdtemp()) / "orders.csv"
        >>> _ = log.write_text("order,sku,when\\no1,A,1700000000\\no1,B,1700000060\\n")
        >>> list(iter_log(log, LogColumns("order", "sku", "when")))[1]
        Interaction(user='o1', item='B', time=1700000060.0)
    """
    columns = columns or LogColumns()
    stats = stats if stats is not None else LogStats()
    where = str(path)
    checked_header = False
    for number, record in iter_records(path, fmt):
        if not checked_header:
            missing = [
                c for c in (columns.user, columns.item, columns.time) if c is not None and c not in record
            ]
            if missing and (fmt or detect_log_format(path)) != "jsonl":
                have = ", ".join(record) or "none"
                problem = f"no column {missing[0]!r} in the header (columns: {have})"
                raise InputDataError(problem, path=where, line=1)
            checked_header = True
        stats.rows += 1
        try:
            # Fast paths for the common case (clean strings, numeric times); the checks after them.
            user = record.get(columns.user)
            if not (type(user) is str and user and not user[0].isspace() and not user[-1].isspace()):
                user = _id(user, columns.user)
            item = record.get(columns.item)
            if not (type(item) is str and item and not item[0].isspace() and not item[-1].isspace()):
                item = _id(item, columns.item)
            time = None
            if columns.time is not None:
                value = record.get(columns.time)
                try:
                    time = float(value) if type(value) in (str, int, float) else None
                except ValueError:
                    time = None
                if time is None or not -_MS_THRESHOLD <= time <= _MS_THRESHOLD:  # ms, ISO 8601, bad
                    try:
                        time = parse_time(value)
                    except ValueError as exc:
                        raise RowError("bad time", f"{columns.time!r}: {exc}") from None
        except RowError as bad:
            error = InputDataError(bad.problem, path=where, line=number)
            if not skip_invalid:
                raise error from None
            stats.skip(bad.reason, str(error))
            continue
        yield Interaction(user, item, time)

"""Reading interaction logs with DuckDB: (who, item, when) rows from CSV, TSV, JSON Lines or Parquet.

"Who" is whatever groups the items that co-occur: a customer, an order or a session id. A log is
one file or a glob of files (``orders/*.parquet``), gzip or not. The rows become a DuckDB view
``events`` of (user hash, catalogue item number, time in seconds); each bad row is one
:class:`~rcml_st.errors.InputDataError` (``file:line: problem``; ``file: row N: problem`` for
Parquet) or, with ``skip_invalid``, counted in :class:`LogStats` and left out.

Times are numbers (Unix seconds, or milliseconds: a number above 10^11 is read as ms, as in the
Amazon 2023 reviews), ISO 8601 strings (``2024-03-01T12:30:00Z``, UTC when no zone is given) or
Parquet timestamps; they come out in seconds.
"""

from __future__ import annotations

import collections
import csv
import glob
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from rcml_st.data.amazon.reader import check_input, iter_lines
from rcml_st.errors import InputDataError, UsageError

#: The log formats :func:`read_log` reads.
LOG_FORMATS = ("csv", "tsv", "jsonl", "parquet")
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
_SUFFIXES |= {".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class LogColumns:
    """The names of a log's columns (CSV/TSV header names, JSON keys or Parquet columns).

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
        rows: rows read.
        skipped: reason -> rows left out (bad rows with ``skip_invalid``, rows filtered out).
        skip_examples: reason -> where the first bad row of that kind was (``file:line: problem``).
        unknown_items: rows whose item is not in the catalogue (left out).
        unknown_example: the item of one of them.
    """

    rows: int = 0
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    skip_examples: dict[str, str] = field(default_factory=dict)
    unknown_items: int = 0
    unknown_example: str | None = None


def detect_log_format(path: str | os.PathLike[str]) -> str:
    """The format of a log from its name (``.csv``, ``.tsv``, ``.jsonl``, ``.parquet``, maybe ``.gz``).

    Example:
        >>> detect_log_format("orders.tsv.gz"), detect_log_format("logs/*.parquet")
        ('tsv', 'parquet')
    """
    suffixes = [s.lower() for s in Path(path).suffixes if s.lower() not in (".gz", ".gzip")]
    fmt = _SUFFIXES.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise UsageError(f"cannot tell the format of {path} from its name: give --log-format")
    return fmt


def parse_duration(value: str) -> float:
    """Seconds from a duration: ``90``, ``90s``, ``30m``, ``2h``, ``7d`` or ``2w``.

    Raises:
        ValueError: for anything else, or a negative duration.

    Example:
        >>> parse_duration("30m"), parse_duration("7d"), parse_duration("45")
        (1800.0, 604800.0, 45.0)
    """
    text = value.strip().lower()
    unit = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}.get(text[-1:]) if text else None
    try:
        number = float(text[:-1] if unit is not None else text)
    except ValueError:
        raise ValueError(f"not a duration: {value!r} (e.g. 90s, 30m, 2h, 7d)") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"not a duration: {value!r} (must be 0 or more)")
    return number * (unit or 1.0)


def sql_string(text: str) -> str:
    """A SQL string literal.

    Example:
        >>> sql_string("it's")
        "'it''s'"
    """
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A quoted SQL identifier (a column name as the log spells it)."""
    return '"' + name.replace('"', '""') + '"'


def time_sql(expr: str, column_type: str = "VARCHAR") -> str:
    """SQL for seconds from a time column: numbers (s, or ms above 10^11), ISO 8601, timestamps; else NULL."""
    if column_type.startswith(("TIMESTAMP", "DATE")):
        return f"epoch({expr}::TIMESTAMPTZ)"
    number, text = f"TRY_CAST(CAST({expr} AS VARCHAR) AS DOUBLE)", f"CAST({expr} AS VARCHAR)"
    return (
        f"CASE WHEN isfinite({number}) THEN (CASE WHEN abs({number}) > 1e11 THEN {number} / 1000.0 "
        f"ELSE {number} END) ELSE epoch(TRY_CAST({text} AS TIMESTAMPTZ)) END"
    )


def scan_sql(files: list[Path], fmt: str, columns: list[str]) -> str:
    """The DuckDB table function reading ``columns`` (all as text, but Parquet's own types)."""
    names = "[" + ", ".join(sql_string(str(f)) for f in files) + "]"
    if fmt == "parquet":
        return f"read_parquet({names})"
    types = "{" + ", ".join(f"{sql_string(c)}: 'VARCHAR'" for c in columns) + "}"
    if fmt == "jsonl":
        return f"read_json({names}, format='newline_delimited', columns={types})"
    sep = "," if fmt == "csv" else "\t"
    header = [name.strip() for name in next(csv.reader(_text(files[0]), delimiter=sep), [])]
    missing = [c for c in columns if c not in header]
    if missing:
        problem = f"no column {missing[0]!r} in the header (columns: {', '.join(header) or 'none'})"
        raise InputDataError(problem, path=str(files[0]), line=1)
    types = "{" + ", ".join(f"{sql_string(c)}: 'VARCHAR'" for c in header) + "}"
    return (
        f"read_csv({names}, columns={types}, auto_detect=false, skip=1, header=false, delim=E'{sep}', "
        "quote='\"', escape='\"', strict_mode=true)"
    )


def _text(path: Path) -> Iterator[str]:
    return (raw.decode("utf-8-sig" if n == 1 else "utf-8", "replace") for n, raw in iter_lines(path))


def line_numbers(path: Path, rows: list[int], fmt: str = "jsonl") -> list[int]:
    """The line numbers of data rows (0-based, in file order; blank lines and a CSV header skipped)."""
    if fmt == "jsonl":
        lines = (number for number, raw in iter_lines(path) if raw.strip())
    else:
        reader = csv.reader(_text(path), delimiter="," if fmt == "csv" else "\t")
        lines = (reader.line_num for fields in reader if any(f.strip() for f in fields))
        next(lines, None)
    wanted, found = set(rows), {}
    for row, line in enumerate(lines):
        if row in wanted:
            found[row] = line
            if len(found) == len(wanted):
                break
    return [found[row] for row in rows]


def input_error(exc: duckdb.Error, files: list[Path]) -> InputDataError:
    """A DuckDB reading error as ``file:line: problem`` (a JSON error's line found again here)."""
    message = str(exc)
    json_error = re.search(r'Malformed JSON in file "(.*?)", at byte \d+ in line \d+: (.*)', message)
    if json_error:
        path = Path(json_error.group(1))
        for number, raw in iter_lines(path):
            try:
                json.loads(raw) if raw.strip() else None
            except ValueError as bad:
                problem = "not UTF-8" if isinstance(bad, UnicodeDecodeError) else f"bad JSON: {bad}"
                return InputDataError(problem, path=str(path), line=number)
        return InputDataError(f"bad JSON: {json_error.group(2).strip()}", path=str(path))
    line = re.search(r"CSV Error on Line: (\d+)", message)
    where = re.search(r"\n\s*file = (.*)\n", message)
    columns = re.search(r"\nExpected Number of Columns: (\d+) Found: (\d+)", message)
    problem = message.split(": ", 1)[-1].strip().splitlines()[0]
    if columns:
        problem = f"{columns.group(2)} fields, the header has {columns.group(1)}"
    path = where.group(1) if where else str(files[0])
    return InputDataError(problem, path=path, line=int(line.group(1)) if line else None)


def connect(
    memory_mb: float, threads: int | None, temp_dir: str | os.PathLike[str]
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection limited to ``memory_mb`` that spills to ``temp_dir`` past it."""
    con = duckdb.connect(config={"memory_limit": f"{int(memory_mb)}MB", "temp_directory": str(temp_dir)})
    con.execute(f"SET threads = {threads or os.cpu_count() or 1}; SET preserve_insertion_order = false")
    con.execute("SET TimeZone = 'UTC'")
    return con


def load_events(
    con: duckdb.DuckDBPyConnection, parsed: str, fmt: str, skip_invalid: bool, stats: LogStats
) -> None:
    """Makes the view ``events`` (u, item, time) of the rows of ``parsed`` whose item is in ``items``.

    ``parsed`` has the columns ``filename``, ``u`` and ``it`` (text), ``tm`` (seconds or NULL),
    ``reason`` (NULL for a row to keep), ``bad`` (a bad row, not one filtered out by an option)
    and ``problem``. Rows of items not in ``items`` are left out and counted.

    Raises:
        InputDataError: ``file:line: problem`` for the first bad row, unless ``skip_invalid``.
    """
    con.execute(f"""CREATE OR REPLACE TEMP TABLE log_rows AS
        SELECT hash(u) AS u, num AS item, coalesce(tm, 0.0) AS time, reason, bad,
               CASE WHEN num IS NULL AND reason IS NULL THEN it END AS unknown
        FROM ({parsed}) p LEFT JOIN items ON p.it = items.id""")
    counts = con.execute("SELECT reason, bool_or(bad), count(*) FROM log_rows GROUP BY reason").fetchall()
    stats.rows += sum(n for *_, n in counts)
    stats.skipped.update({reason: n for reason, _, n in counts if reason is not None})
    stats.unknown_items, stats.unknown_example = con.execute(
        "SELECT count(unknown), min(unknown) FROM log_rows"
    ).fetchone()
    bad = {reason for reason, is_bad, _ in counts if reason is not None and is_bad}
    if bad:  # the first bad row of each kind, in file order: its row in its file, then its line
        con.execute("SET preserve_insertion_order = true")
        rows: collections.Counter[str] = collections.Counter()
        found: dict[str, tuple[str, int, str]] = {}
        for batch in con.sql(f"SELECT filename, reason, problem FROM ({parsed})").to_arrow_reader(1 << 16):
            for name, reason, problem in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                rows[name] += 1
                if reason in bad and reason not in found:
                    found[reason] = (name, rows[name] - 1, problem)
            if len(found) == len(bad):
                break
        con.execute("SET preserve_insertion_order = false")
        for reason, (name, row, problem) in found.items():
            if fmt == "parquet":
                error = InputDataError(f"row {row + 1}: {problem}", path=name)
            else:
                error = InputDataError(problem, path=name, line=line_numbers(Path(name), [row], fmt)[0])
            if not skip_invalid:
                raise error
            stats.skip_examples[reason] = str(error)
    con.execute(
        "CREATE OR REPLACE TEMP VIEW events AS SELECT u, item, time FROM log_rows WHERE reason IS NULL AND item IS NOT NULL"
    )


def read_log(
    con: duckdb.DuckDBPyConnection,
    path: str | os.PathLike[str],
    columns: LogColumns,
    *,
    fmt: str | None = None,
    skip_invalid: bool = False,
    stats: LogStats,
) -> None:
    """Reads a log (a file or a glob) into the view ``events``, joined to the table ``items`` (id, num).

    Raises:
        InputDataError: ``file:line: problem`` for a bad row (unless ``skip_invalid``), a bad
            line or a missing column.
    """
    files = (
        [check_input(p) for p in sorted(glob.glob(str(path)))]
        if glob.has_magic(str(path))
        else [check_input(path)]
    )
    if not files:
        raise InputDataError("no file matches this pattern", path=str(path))
    fmt = fmt or detect_log_format(files[0])
    if fmt not in LOG_FORMATS:
        raise UsageError(f"unknown log format {fmt!r} (use one of {', '.join(LOG_FORMATS)})")
    wanted = [c for c in (columns.user, columns.item, columns.time) if c is not None]
    scan = scan_sql(files, fmt, wanted)
    schema = dict.fromkeys(wanted, "VARCHAR")
    if fmt == "parquet":
        schema = {name: kind for name, kind, *_ in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
        missing = [c for c in wanted if c not in schema]
        if missing:
            raise InputDataError(
                f"no column {missing[0]!r} (columns: {', '.join(schema)})", path=str(files[0])
            )
    user, item = (f"nullif(trim(CAST({ident(c)} AS VARCHAR)), '')" for c in (columns.user, columns.item))
    tm, raw, time_reason = "0.0", "NULL", ""
    if columns.time is not None:
        tm, raw = (
            time_sql(ident(columns.time), schema[columns.time]),
            f"CAST({ident(columns.time)} AS VARCHAR)",
        )
        time_reason = "WHEN tm IS NULL THEN 'bad time'"
    missing_user, missing_item = (sql_string(f"missing {c}") for c in (columns.user, columns.item))
    empty_user, empty_item = (sql_string(f"empty or missing {c!r}") for c in (columns.user, columns.item))
    not_a_time = sql_string(f"{columns.time!r}: not a time (a number or ISO 8601): ")
    parsed = f"""SELECT filename, u, it, tm, reason, TRUE AS bad, CASE WHEN u IS NULL THEN {empty_user}
            WHEN it IS NULL THEN {empty_item} ELSE {not_a_time} || coalesce(raw, 'none') END AS problem
        FROM (SELECT *, CASE WHEN u IS NULL THEN {missing_user} WHEN it IS NULL THEN {missing_item} {time_reason} END
              AS reason FROM (SELECT filename, {user} AS u, {item} AS it, {tm} AS tm, {raw} AS raw FROM {scan}))"""
    try:
        load_events(con, parsed, fmt, skip_invalid, stats)
    except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
        raise input_error(exc, files) from None

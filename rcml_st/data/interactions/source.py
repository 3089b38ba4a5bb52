"""Reading interaction logs with DuckDB: (who, item, when) rows from CSV, TSV, JSON Lines or Parquet.

"Who" is whatever groups the items that co-occur: a customer, an order or a session id. A log is
one file or a glob of files (``orders/*.parquet``), gzip or not. The rows become a DuckDB table
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
import gzip
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from rcml_st.data.amazon.reader import check_input, is_gzip
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
    """SQL for seconds from a time column: numbers (s, or ms above 10^11), ISO 8601, timestamps.

    NULL where the value is none of these. Example: ``time_sql('"ts"')``.
    """
    if column_type.startswith(("TIMESTAMP", "DATE")):
        return f"epoch({expr}::TIMESTAMPTZ)"
    number = f"TRY_CAST(CAST({expr} AS VARCHAR) AS DOUBLE)"
    return (
        f"CASE WHEN isfinite({number}) THEN (CASE WHEN abs({number}) > 1e11 THEN {number} / 1000.0 "
        f"ELSE {number} END) ELSE epoch(TRY_CAST(CAST({expr} AS VARCHAR) AS TIMESTAMPTZ)) END"
    )


def log_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files of a log: one path, or the sorted matches of a glob pattern."""
    if glob.has_magic(str(path)):
        files = sorted(Path(p) for p in glob.glob(str(path)))
        if not files:
            raise InputDataError("no file matches this pattern", path=str(path))
        return [check_input(p) for p in files]
    return [check_input(path)]


def scan_sql(files: list[Path], fmt: str, columns: list[str]) -> str:
    """The DuckDB table function reading ``columns`` (all as text, but Parquet's own types)."""
    names = "[" + ", ".join(sql_string(str(f)) for f in files) + "]"
    if fmt == "parquet":
        return f"read_parquet({names})"
    types = "{" + ", ".join(f"{sql_string(c)}: 'VARCHAR'" for c in columns) + "}"
    if fmt == "jsonl":
        return f"read_json({names}, format='newline_delimited', columns={types})"
    header = _csv_header(files[0], fmt)
    missing = [c for c in columns if c not in header]
    if missing:
        problem = f"no column {missing[0]!r} in the header (columns: {', '.join(header) or 'none'})"
        raise InputDataError(problem, path=str(files[0]), line=1)
    types = "{" + ", ".join(f"{sql_string(c)}: 'VARCHAR'" for c in header) + "}"
    delim = "," if fmt == "csv" else "\\t"
    return (
        f"read_csv({names}, columns={types}, auto_detect=false, skip=1, header=false, delim=E'{delim}', "
        "quote='\"', escape='\"', strict_mode=true)"
    )


def _csv_header(path: Path, fmt: str) -> list[str]:
    with _open_text(path) as fh:
        header = next(csv.reader(fh, delimiter="," if fmt == "csv" else "\t"), [])
    return [name.strip() for name in header]


def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")  # noqa: SIM115 - closed with it
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def check_rows(
    con: duckdb.DuckDBPyConnection, table: str, scan: str, fmt: str, skip_invalid: bool, stats: LogStats
) -> None:
    """Counts the rows of ``table`` (from ``scan``) by ``reason``; the first bad row stops the run.

    ``table`` has a ``reason`` column (NULL for a good row) and a ``bad`` flag (a bad row, not
    one filtered out by an option). Bad rows are found again in ``scan`` (columns ``filename``,
    ``reason``, ``problem``, in file order) to say where the first of each kind is.

    Raises:
        InputDataError: ``file:line: problem`` for the first bad row, unless ``skip_invalid``.
    """
    counts = con.execute(f"SELECT reason, bool_or(bad), count(*) FROM {table} GROUP BY reason").fetchall()
    stats.rows += sum(n for _, _, n in counts)
    bad = {reason for reason, is_bad, _ in counts if reason is not None and is_bad}
    stats.skipped.update({reason: n for reason, _, n in counts if reason is not None})
    if not bad:
        return
    con.execute("SET preserve_insertion_order = true")
    rows: collections.Counter[str] = collections.Counter()
    found: dict[str, str] = {}
    for batch in con.sql(f"SELECT filename, reason, problem FROM {scan}").to_arrow_reader(1 << 16):
        for name, reason, problem in zip(*(c.to_pylist() for c in batch.columns), strict=True):
            rows[name] += 1
            if reason in bad and reason not in found:
                error = _row_error(Path(name), fmt, rows[name], problem)
                if not skip_invalid:
                    raise error
                found[reason] = str(error)
        if len(found) == len(bad):
            break
    con.execute("SET preserve_insertion_order = false")
    stats.skip_examples.update(found)


def _row_error(path: Path, fmt: str, row: int, problem: str) -> InputDataError:
    """``file:line: problem`` for data row ``row`` (1-based) of a file; ``file: row N`` for Parquet."""
    if fmt == "parquet":
        return InputDataError(f"row {row}: {problem}", path=str(path))
    with _open_text(path) as fh:
        if fmt == "jsonl":
            lines = (n for n, line in enumerate(fh, 1) if line.strip())
            return InputDataError(
                problem, path=str(path), line=next(n for i, n in enumerate(lines, 1) if i == row)
            )
        reader = csv.reader(fh, delimiter="," if fmt == "csv" else "\t")
        data = (reader.line_num for fields in reader if any(f.strip() for f in fields))
        return InputDataError(problem, path=str(path), line=next(n for i, n in enumerate(data) if i == row))


def input_error(exc: duckdb.Error, files: list[Path]) -> InputDataError:
    """A DuckDB reading error as ``file:line: problem``.

    A CSV error names its line; for a JSON error, the first line of the file that is not JSON is
    found again here (DuckDB's own line number is off by one in some versions).
    """
    message = str(exc)
    first = message.split(": ", 1)[-1].strip().splitlines()[0]
    json_error = re.search(r'Malformed JSON in file "(.*?)", at byte \d+ in line \d+: (.*)', message)
    if json_error:
        path = Path(json_error.group(1))
        with _open_text(path) as fh:
            for number, raw in enumerate(fh, 1):
                try:
                    json.loads(raw) if raw.strip() else None
                except ValueError as bad:
                    return InputDataError(f"bad JSON: {bad}", path=str(path), line=number)
        return InputDataError(f"bad JSON: {json_error.group(2).strip()}", path=str(path))
    csv_line = re.search(r"CSV Error on Line: (\d+)", message)
    where = re.search(r"\n\s*file = (.*)\n", message)
    path = where.group(1) if where else str(files[0])
    columns = re.search(r"\nExpected Number of Columns: (\d+) Found: (\d+)", message)
    if columns:
        first = f"{columns.group(2)} fields, the header has {columns.group(1)}"
    return InputDataError(first, path=path, line=int(csv_line.group(1)) if csv_line else None)


def connect(
    memory_mb: float, threads: int | None, temp_dir: str | os.PathLike[str]
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection limited to ``memory_mb`` that spills to ``temp_dir`` past it."""
    con = duckdb.connect(config={"memory_limit": f"{int(memory_mb)}MB", "temp_directory": str(temp_dir)})
    con.execute(f"SET threads = {threads or os.cpu_count() or 1}; SET preserve_insertion_order = false")
    con.execute("SET TimeZone = 'UTC'")
    return con


def load_items(con: duckdb.DuckDBPyConnection, ids: list[str]) -> None:
    """The table ``items`` (``id``, ``num``: the catalogue order) the log's item ids are joined to."""
    import pyarrow as pa

    con.register("item_ids", pa.table({"id": ids, "num": pa.array(range(len(ids)), pa.int32())}))
    con.execute("CREATE OR REPLACE TEMP TABLE items AS SELECT * FROM item_ids")
    con.unregister("item_ids")


def load_events(
    con: duckdb.DuckDBPyConnection, parsed: str, fmt: str, skip_invalid: bool, stats: LogStats
) -> None:
    """Makes the view ``events`` (u, item, time) from ``parsed``, a query of rows in file order.

    ``parsed`` has the columns ``filename``, ``u`` and ``it`` (text, NULL when missing), ``tm``
    (seconds or NULL), ``reason`` (NULL for a good row), ``bad`` and ``problem``
    (see :func:`check_rows`). Rows of items not in ``items`` are left out and counted.
    """
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE log_rows AS
        SELECT hash(u) AS u, num AS item, coalesce(tm, 0.0) AS time, reason, bad,
               CASE WHEN num IS NULL AND reason IS NULL THEN it END AS unknown
        FROM ({parsed}) p LEFT JOIN items ON p.it = items.id""")
    check_rows(con, "log_rows", f"({parsed})", fmt, skip_invalid, stats)
    unknown, example = con.execute("SELECT count(unknown), min(unknown) FROM log_rows").fetchone()
    stats.unknown_items, stats.unknown_example = unknown, example
    con.execute(
        "CREATE OR REPLACE TEMP VIEW events AS "
        "SELECT u, item, time FROM log_rows WHERE reason IS NULL AND item IS NOT NULL"
    )


def read_log(
    con: duckdb.DuckDBPyConnection,
    path: str | os.PathLike[str],
    columns: LogColumns,
    *,
    fmt: str | None = None,
    skip_invalid: bool = False,
    stats: LogStats,
) -> list[Path]:
    """Reads a log (a file or a glob) into the view ``events``; returns its files.

    Raises:
        InputDataError: ``file:line: problem`` for a bad row (unless ``skip_invalid``), a bad
            line or a missing column.
    """
    files = log_files(path)
    fmt = fmt or detect_log_format(files[0])
    if fmt not in LOG_FORMATS:
        raise UsageError(f"unknown log format {fmt!r} (use one of {', '.join(LOG_FORMATS)})")
    wanted = [c for c in (columns.user, columns.item, columns.time) if c is not None]
    scan = scan_sql(files, fmt, wanted)
    time_type = "VARCHAR"
    if fmt == "parquet":
        schema = {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
        missing = [c for c in wanted if c not in schema]
        if missing:
            problem = f"no column {missing[0]!r} (columns: {', '.join(schema) or 'none'})"
            raise InputDataError(problem, path=str(files[0]))
        time_type = schema.get(columns.time or "", "VARCHAR")
    user, item = (f"nullif(trim(CAST({ident(c)} AS VARCHAR)), '')" for c in (columns.user, columns.item))
    if columns.time is None:
        tm, time_reason, raw = "0.0", "", "NULL"
    else:
        tm, raw = time_sql(ident(columns.time), time_type), f"CAST({ident(columns.time)} AS VARCHAR)"
        time_reason = "WHEN tm IS NULL THEN 'bad time'"
    not_a_time = sql_string(f"{columns.time!r}: not a time (a number or ISO 8601): ")
    problem = (
        f"CASE WHEN u IS NULL THEN {sql_string(f'empty or missing {columns.user!r}')} "
        f"WHEN it IS NULL THEN {sql_string(f'empty or missing {columns.item!r}')} "
        f"ELSE {not_a_time} || coalesce(raw, 'none') END"
    )
    missing_user, missing_item = (sql_string(f"missing {c}") for c in (columns.user, columns.item))
    parsed = f"""
        SELECT filename, u, it, tm, reason, TRUE AS bad,
               CASE WHEN reason IS NOT NULL THEN {problem} END AS problem
        FROM (SELECT *, CASE WHEN u IS NULL THEN {missing_user}
                             WHEN it IS NULL THEN {missing_item} {time_reason} END AS reason
              FROM (SELECT filename, {user} AS u, {item} AS it, {tm} AS tm, {raw} AS raw FROM {scan}))"""
    try:
        load_events(con, parsed, fmt, skip_invalid, stats)
    except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
        raise input_error(exc, files) from None
    return files

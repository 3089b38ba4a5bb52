"""Reading (who, item, when) logs with DuckDB: CSV, TSV, JSON Lines (gzip or not), Parquet; a file or a glob.

Times are Unix seconds or ms (a number above 10^11), ISO 8601 (UTC by default) or Parquet timestamps.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import glob
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from rcml_st.data.amazon.reader import check_input, iter_lines
from rcml_st.errors import InputDataError, UsageError

LOG_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
LOG_FORMATS |= {".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class LogColumns:
    """The names of a log's user, item and (optional) time columns (header names, JSON keys...)."""

    user: str = "user_id"
    item: str = "item_id"
    time: str | None = None


@dataclass
class LogStats:
    """Rows read; rows ``skipped`` by reason (with ``skip_examples``: where the first bad one was);
    rows naming ``unknown_items`` (not in the catalogue, e.g. ``unknown_example``)."""

    rows: int = 0
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    skip_examples: dict[str, str] = field(default_factory=dict)
    unknown_items: int = 0
    unknown_example: str | None = None


def parse_duration(value: str) -> float:
    """Seconds from a duration: ``90``, ``90s``, ``30m``, ``2h``, ``7d`` or ``2w`` (ValueError else).

    Example:
        >>> parse_duration("30m"), parse_duration("7d"), parse_duration("45")
        (1800.0, 604800.0, 45.0)
    """
    if not (match := re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhdw]?)\s*", value.lower())):
        raise ValueError(f"not a duration: {value!r} (e.g. 90s, 30m, 2h, 7d)")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match[2]]


def sql(text: str, quote: str = "'") -> str:
    """A SQL string literal (or, with ``quote='"'``, a quoted name)."""
    return quote + text.replace(quote, quote * 2) + quote


@contextlib.contextmanager
def session(memory_mb: float, threads: int | None, folder: str | os.PathLike[str] | None) -> Iterator:
    """A DuckDB connection limited to ``memory_mb``, spilling past it to a temporary folder in ``folder``."""
    spill = tempfile.TemporaryDirectory(prefix=".rcml-duckdb-", dir=folder, ignore_cleanup_errors=True)
    with (
        spill,
        duckdb.connect(config={"memory_limit": f"{int(memory_mb)}MB", "temp_directory": spill.name}) as con,
    ):
        con.execute(f"SET threads = {threads or os.cpu_count() or 1}; SET TimeZone = 'UTC'")
        con.execute("SET preserve_insertion_order = false")
        yield con


def line_numbers(path: Path, rows: list[int], fmt: str = "jsonl") -> list[int]:
    """The line numbers of data rows (0-based, in file order; blank lines and a CSV header skipped)."""
    if fmt == "jsonl":
        lines: Iterator[int] = (number for number, raw in iter_lines(path) if raw.strip())
    else:
        text = (raw.decode("utf-8", "replace") for _, raw in iter_lines(path))
        reader = csv.reader(text, delimiter="," if fmt == "csv" else "\t")
        lines = (reader.line_num for fields in reader if any(f.strip() for f in fields))
        next(lines, None)
    found = {row: line for row, line in zip(range(max(rows) + 1), lines, strict=False) if row in rows}
    return [found[row] for row in rows]


def input_error(exc: duckdb.Error, files: list[Path]) -> InputDataError:
    """A DuckDB reading error as ``file:line: problem`` (a JSON error's line found again here)."""
    message = str(exc)
    json_error = re.search(r'Malformed JSON in file "(.*?)", at byte \d+ in line \d+: (.*)', message)
    if json_error:
        for number, raw in iter_lines(json_error.group(1)):
            try:
                json.loads(raw) if raw.strip() else None
            except ValueError as bad:
                problem = "not UTF-8" if isinstance(bad, UnicodeDecodeError) else f"bad JSON: {bad}"
                return InputDataError(problem, path=json_error.group(1), line=number)
    line = re.search(r"CSV Error on Line: (\d+)", message)
    where = re.search(r"\n\s*file = (.*)\n", message)
    problem = message.split(": ", 1)[-1].strip().splitlines()[0]
    if columns := re.search(r"\nExpected Number of Columns: (\d+) Found: (\d+)", message):
        problem = f"{columns.group(2)} fields, the header has {columns.group(1)}"
    path = where.group(1) if where else str(files[0])
    return InputDataError(problem, path=path, line=line and int(line[1]))


def _scan(files: list[Path], fmt: str, wanted: list[str]) -> str:
    """The rows of ``files`` as a relation with ``filename`` and the ``wanted`` columns."""
    names = "[" + ", ".join(sql(str(f)) for f in files) + "]"
    if fmt == "jsonl":  # each line's JSON object; missing keys are NULL
        keys = ", ".join(f"json ->> {sql('$.' + sql(c, chr(34)))} AS {sql(c, chr(34))}" for c in wanted)
        return f"""(SELECT filename, {keys}
            FROM read_json_objects({names}, format='newline_delimited', filename=true))"""
    if fmt == "parquet":
        return f"read_parquet({names})"
    sep = "," if fmt == "csv" else "\t"
    first = next(iter_lines(files[0]), (0, b""))[1].decode("utf-8-sig")
    types = ", ".join(f"{sql(c.strip())}: 'VARCHAR'" for c in next(csv.reader([first], delimiter=sep), []))
    return f"""read_csv({names}, columns={{{types}}}, auto_detect=false, skip=1, header=false,
        delim={sql(sep)}, quote='"', escape='"', strict_mode=true)"""


def read_log(
    con: duckdb.DuckDBPyConnection,
    path: str | os.PathLike[str],
    columns: LogColumns,
    stats: LogStats,
    *,
    fmt: str | None = None,
    skip_invalid: bool = False,
    filters: dict[str, tuple[str, str]] | None = None,
) -> None:
    """Reads a log into the view ``events`` (``u``, ``item``: its ``num`` in the table ``items``, ``time``).

    Rows of items not in ``items``, and rows left out by ``filters`` (reason -> (column, SQL test
    of ``{}``)), are counted in ``stats``.

    Raises:
        InputDataError: ``file:line: problem`` (``file: row N: problem`` for Parquet) for a bad row
            (unless ``skip_invalid``), a bad line or a missing column.
    """
    files = sorted(glob.glob(str(path))) if glob.has_magic(str(path)) else [path]
    if not files:
        raise InputDataError("no file matches this pattern", path=str(path))
    files = [check_input(f) for f in files]
    suffixes = [s.lower() for s in files[0].suffixes if s.lower() not in (".gz", ".gzip")]
    fmt = fmt or LOG_FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt not in LOG_FORMATS.values():
        raise UsageError(f"cannot tell the format of {path}: give --log-format (csv, tsv, jsonl or parquet)")
    filters = filters or {}
    wanted = [c for c in (columns.user, columns.item, columns.time) if c] + [c for c, _ in filters.values()]
    scan = _scan(files, fmt, wanted)
    try:
        schema = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE FROM {scan})").fetchall())
    except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
        raise input_error(exc, files) from None
    if missing := [c for c in wanted if c not in schema]:
        where = " in the header" * (fmt != "parquet")
        problem = f"no column {missing[0]!r}{where} (columns: {', '.join(schema)})"
        raise InputDataError(problem, path=str(files[0]), line=1 if fmt != "parquet" else None)
    q = {c: sql(c, '"') for c in wanted}  # the columns as SQL names
    user, item = (f"nullif(trim({q[c]}::VARCHAR), '')" for c in (columns.user, columns.item))
    reasons = [f"WHEN u IS NULL THEN {sql(f'empty or missing {columns.user!r}')}"]
    reasons.append(f"WHEN it IS NULL THEN {sql(f'empty or missing {columns.item!r}')}")
    tm, raw = "0.0", "NULL"
    if columns.time:  # seconds: numbers (s, or ms above 10^11), ISO 8601 or timestamps; else NULL
        raw, number = f"{q[columns.time]}::VARCHAR", f"TRY_CAST({q[columns.time]}::VARCHAR AS DOUBLE)"
        tm = f"""CASE WHEN isfinite({number}) THEN {number} / (CASE WHEN abs({number}) > 1e11 THEN 1000
            ELSE 1 END) ELSE epoch(TRY_CAST({raw} AS TIMESTAMPTZ)) END"""
        if schema[columns.time].startswith(("TIMESTAMP", "DATE")):
            tm = f"epoch({q[columns.time]}::TIMESTAMPTZ)"
    reasons.append(f"WHEN tm IS NULL THEN {sql(f'{columns.time!r}: not a time (a number or ISO 8601)')}")
    tests = "".join(f", {test.format(q[c])} AS f{i}" for i, (c, test) in enumerate(filters.values()))
    reasons += [f"WHEN f{i} THEN {sql(reason)}" for i, reason in enumerate(filters)]
    parsed = f"""SELECT *, CASE {" ".join(reasons)} END AS reason FROM (
        SELECT filename, {user} AS u, {item} AS it, {tm} AS tm, {raw} AS raw{tests} FROM {scan})"""
    try:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE log_rows AS
            SELECT hash(u) AS u, num AS item, coalesce(tm, 0.0) AS time, reason,
                   CASE WHEN num IS NULL AND reason IS NULL THEN it END AS unknown
            FROM ({parsed}) LEFT JOIN items ON it = id""")
        counts = dict(con.execute("SELECT reason, count(*) FROM log_rows GROUP BY reason").fetchall())
        stats.rows += sum(counts.values())
        stats.skipped.update({reason: n for reason, n in counts.items() if reason is not None})
        unknown = con.execute("SELECT count(unknown), min(unknown) FROM log_rows").fetchone()
        stats.unknown_items, stats.unknown_example = unknown
        if bad := {reason for reason in counts if reason is not None and reason not in filters}:
            _find_bad_rows(con, parsed, bad, fmt, skip_invalid, stats)
    except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
        raise input_error(exc, files) from None
    con.execute("CREATE OR REPLACE TEMP VIEW events AS FROM log_rows WHERE reason IS NULL AND item >= 0")


def _find_bad_rows(con, parsed: str, bad: set[str], fmt: str, skip_invalid: bool, stats: LogStats) -> None:
    """Finds the first bad row of each kind (in file order: its row in its file, then its line)."""
    con.execute("SET preserve_insertion_order = true")
    rows: collections.Counter[str] = collections.Counter()
    found: dict[str, tuple[str, int, str]] = {}
    for batch in con.sql(f"SELECT filename, reason, raw FROM ({parsed})").to_arrow_reader(1 << 16):
        for name, reason, raw in zip(*(c.to_pylist() for c in batch.columns), strict=True):
            rows[name] += 1
            if reason in bad and reason not in found:
                found[reason] = (name, rows[name] - 1, reason + f": {raw}" * ("not a time" in reason))
        if len(found) == len(bad):
            break
    con.execute("SET preserve_insertion_order = false")
    for reason, (name, row, problem) in found.items():
        line = line_numbers(Path(name), [row], fmt)[0] if fmt != "parquet" else None
        error = InputDataError(f"row {row + 1}: {problem}" if line is None else problem, path=name, line=line)
        if not skip_invalid:
            raise error
        stats.skip_examples[reason] = str(error)

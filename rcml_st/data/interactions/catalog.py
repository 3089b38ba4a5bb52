"""Adding co-occurrence relations from an interaction log to a catalogue file, in DuckDB.

DuckDB reads the catalogue (each record kept as its JSON text, numbered in file order), the log
and the pairs (:mod:`~rcml_st.data.interactions.cooccurrence`), then writes each record with its
new relation lists merged in (``json_merge_patch``) to a temporary file, renamed at the end: a
failure (a full disk included) leaves no half file and stops with an error. Python holds no
record or edge, except the edges and one short document per item for ``cluster``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from rcml_st.data.amazon.clustering import cluster_edges
from rcml_st.data.amazon.reader import check_input
from rcml_st.data.interactions.cooccurrence import CooccurrenceStats, count_pairs
from rcml_st.data.interactions.source import (
    LogColumns,
    LogStats,
    connect,
    input_error,
    line_numbers,
    read_log,
)
from rcml_st.data.interactions.source import sql_string as sql
from rcml_st.errors import InputDataError, ServiceError, UsageError

#: The relation description used when none is given.
DEFAULT_LOG_RELATION = "bought by the same customers"


@dataclass
class LogRelationsSummary:
    """What :func:`add_log_relations` did.

    Attributes:
        catalog: the catalogue read.
        log: the interaction log read.
        output: the data file written.
        items: items written.
        log_stats: rows read, skipped (by reason) and naming items not in the catalogue.
        counting: the pair counting's :class:`CooccurrenceStats`.
        edges: relation description -> edges written (new ones, after merging).
        relation_types: ``(name, edges)`` of each type made by ``cluster``.
        memory_bound: the stated memory bound of the run.
    """

    catalog: Path
    log: Path
    output: Path
    items: int = 0
    log_stats: LogStats = field(default_factory=LogStats)
    counting: CooccurrenceStats = field(default_factory=CooccurrenceStats)
    edges: dict[str, int] = field(default_factory=dict)
    relation_types: list[tuple[str, int]] = field(default_factory=list)
    memory_bound: str = ""


def add_log_relations(
    catalog: str | os.PathLike[str],
    log: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    columns: LogColumns | None = None,
    log_format: str | None = None,
    relation: str = DEFAULT_LOG_RELATION,
    top_k: int = 10,
    score: str = "count",
    min_count: int = 1,
    window: float | None = None,
    max_items_per_user: int = 100,
    memory_mb: float = 1024,
    threads: int | None = None,
    cluster: int | None = None,
    seed: int = 0,
    skip_invalid: bool = False,
) -> LogRelationsSummary:
    """Writes ``catalog`` to ``output`` with a relation from items the same users touched in ``log``.

    Args:
        catalog: an rcml-st data file (JSON Lines); its records are kept as they are.
        log: the interaction log (``.csv``, ``.tsv``, ``.jsonl``, gzip or not, or ``.parquet``),
            or a glob of such files (``orders/*.parquet``).
        output: the data file to write (may be ``catalog`` itself: it is replaced at the end).
        columns: the log's user (customer, order or session), item and optional time columns.
        log_format: ``"csv"``, ``"tsv"``, ``"jsonl"`` or ``"parquet"``; from the name when ``None``.
        relation: the relation description of the new edges (merged with an existing relation
            of the same name), or, with ``cluster``, the start of each type's name.
        top_k: partners kept per item, strongest first (0: all).
        score: ranks partners: ``"count"``, ``"jaccard"`` or ``"pmi"``.
        min_count: pairs touched by fewer users are left out.
        window: seconds; items pair up only when touched within this time of each other.
        max_items_per_user: users with more items keep their most recent ones.
        memory_mb: DuckDB's memory limit (past it, it spills to a temporary folder next to
            ``output``); the sparse product of the pair counting uses up to 3/4 of it besides.
        threads: DuckDB's threads (default: one per CPU).
        cluster: group the new edges into this many relation types named from what the
            linked items share (their ``categories`` and text).
        seed: seeds the clustering.
        skip_invalid: skip bad log rows (counted) instead of stopping at the first.

    Raises:
        InputDataError: a missing or bad catalogue or log (``file:line: problem``), or no edges
            at all (saying how many rows named items not in the catalogue).
        UsageError: bad option values.
        ServiceError: DuckDB or the disk failed (out of memory or disk space); nothing is written.

    Example:
        >>> import pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "items.jsonl").write_text('{"id": "A", "text": "tent"}\\n'
        ...                                    '{"id": "B", "text": "stove"}\\n')
        >>> _ = (d / "orders.csv").write_text("customer,sku\\nc1,A\\nc1,B\\nc2,A\\n")
        >>> summary = add_log_relations(d / "items.jsonl", d / "orders.csv", d / "out.jsonl",
        ...                             columns=LogColumns("customer", "sku"))
        >>> (d / "out.jsonl").read_text().splitlines()[0]
        '{"id":"A","text":"tent","relations":{"bought by the same customers":["B"]}}'
    """
    catalog, output = check_input(catalog), Path(output)
    if not isinstance(relation, str) or not relation.strip():
        raise UsageError("the relation description must be a non-empty string")
    if cluster is not None and cluster < 1:
        raise UsageError("--cluster must be at least 1")
    if output.is_dir():
        raise UsageError(f"--output {output} is a folder; give a .jsonl file path")
    if Path(log).exists() and output.resolve() == Path(log).resolve():
        raise UsageError("--output must not be the log itself")
    summary = LogRelationsSummary(catalog=catalog, log=Path(log), output=output)
    summary.memory_bound = describe_memory_bound(memory_mb)
    output.parent.mkdir(parents=True, exist_ok=True)
    spill = Path(tempfile.mkdtemp(prefix=".rcml-duckdb-", dir=output.parent))
    fd, staged = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    try:
        with connect(memory_mb, threads, spill) as con:
            summary.items = load_catalog(con, catalog)
            read_log(
                con,
                log,
                columns or LogColumns(),
                fmt=log_format,
                skip_invalid=skip_invalid,
                stats=summary.log_stats,
            )
            options = {"top_k": top_k, "score": score, "min_count": min_count, "window": window}
            summary.counting = count_pairs(
                con, max_items_per_user=max_items_per_user, memory_mb=memory_mb, **options
            )
            if not summary.counting.edges:
                raise InputDataError(_why_no_edges(summary, min_count), path=str(log))
            _name_edges(con, relation.strip(), cluster, seed)
            summary.edges = _write(con, staged)
        os.chmod(staged, 0o666 & ~_umask())
        os.replace(staged, output)
    except ValueError as exc:
        if isinstance(exc, InputDataError):
            raise
        raise UsageError(str(exc)) from None
    except (duckdb.IOException, OSError) as exc:
        raise ServiceError(f"cannot write {output}: {_first_line(exc)}; nothing was written") from None
    except duckdb.Error as exc:
        raise ServiceError(
            f"DuckDB failed: {_first_line(exc)} (--memory-mb {memory_mb:g}, spilling to {spill})"
        ) from None
    finally:
        shutil.rmtree(spill, ignore_errors=True)
        Path(staged).unlink(missing_ok=True)
    summary.relation_types = list(summary.edges.items()) if cluster else []
    return summary


def load_catalog(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """The tables ``catalog`` (``record`` JSON, ``num`` in file order) and ``items`` (``id``, ``num``).

    Raises:
        InputDataError: ``file:line: problem`` for bad JSON, a record that is not an object,
            without a non-empty string ``id`` or with an ``id`` seen before, or no records at all.
    """
    con.execute("SET preserve_insertion_order = true")  # rowid: the file order
    try:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE catalog AS SELECT json AS record
            FROM read_json_objects({sql(str(path))}, format='newline_delimited')""")
    except duckdb.InvalidInputException as exc:
        raise input_error(exc, [path]) from None
    con.execute("""CREATE OR REPLACE TEMP TABLE items AS SELECT record ->> 'id' AS id, rowid::INTEGER AS num,
        CASE WHEN json_type(record) <> 'OBJECT' THEN 'expected a JSON object, got ' || lower(json_type(record))
             WHEN json_type(record, 'id') IS DISTINCT FROM 'VARCHAR' OR trim(id) = ''
             THEN 'missing or empty ''id'' (a non-empty string)' END AS problem FROM catalog""")
    con.execute("SET preserve_insertion_order = false")
    bad = con.execute(
        "SELECT num, problem FROM items WHERE problem IS NOT NULL ORDER BY num LIMIT 1"
    ).fetchone()
    if bad:
        raise InputDataError(bad[1], path=str(path), line=line_numbers(path, [bad[0]])[0])
    twice = con.execute("""SELECT id, list(num ORDER BY num)[1:2] AS n FROM items GROUP BY id
        HAVING count(*) > 1 ORDER BY n[2] LIMIT 1""").fetchone()
    if twice:
        first, again = line_numbers(path, twice[1])
        raise InputDataError(
            f"duplicate id {twice[0]!r} (first seen on line {first})", path=str(path), line=again
        )
    items = con.execute("SELECT count(*) FROM items").fetchone()[0]
    if not items:
        raise InputDataError("no items (the file is empty)", path=str(path))
    return items


def _name_edges(con: duckdb.DuckDBPyConnection, relation: str, cluster: int | None, seed: int) -> None:
    """The table ``named`` (``src``, ``dst``, ``rank``, ``name``): ``edges`` under their relation names."""
    if not cluster:
        con.execute(f"CREATE OR REPLACE TEMP TABLE named AS SELECT *, {sql(relation)} AS name FROM edges")
        return
    documents = [
        d
        for (d,) in con.execute("""SELECT coalesce(lower(array_to_string(
        json_extract_string(record, '$.categories[*]'), chr(31))), '') || chr(30) ||
        coalesce(left(json_extract_string(record, '$.text'), 200), '') FROM catalog ORDER BY rowid""").fetchall()
    ]
    edges = con.execute("SELECT src, dst, rank FROM edges ORDER BY src, rank").fetchnumpy()
    types = cluster_edges(documents, edges["src"], edges["dst"], cluster, seed=seed, prefix=relation)
    edges["name"] = pa.DictionaryArray.from_arrays(pa.array(types.labels), pa.array(types.names))
    con.register("labelled", pa.table(edges))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE named AS SELECT src, dst, rank, name::VARCHAR AS name FROM labelled"
    )
    con.unregister("labelled")


def _write(con: duckdb.DuckDBPyConnection, path: str) -> dict[str, int]:
    """Writes every ``catalog`` record, in order, with the ``named`` edges merged into its relations.

    Returns:
        Relation name -> edges written (targets already listed under the name are not repeated).
    """
    con.execute("""CREATE OR REPLACE TEMP TABLE merged AS
        SELECT src, name, coalesce(TRY_CAST(json_extract(record, '/relations/' ||
               replace(replace(name, '~', '~0'), '/', '~1')) AS VARCHAR[]), []) AS old, list(id ORDER BY rank) AS new
        FROM named JOIN items ON num = dst JOIN catalog ON catalog.rowid = src GROUP BY src, name, record""")
    con.execute("""CREATE OR REPLACE TEMP TABLE patches AS SELECT src, json_object('relations',
        json_group_object(name, list_concat(old, list_filter(new, lambda t: NOT list_contains(old, t))))) AS patch
        FROM merged GROUP BY src""")
    con.execute("SET preserve_insertion_order = true")
    con.execute(f"""COPY (SELECT coalesce(json_merge_patch(record, patch), record) FROM catalog
        LEFT JOIN patches ON src = catalog.rowid ORDER BY catalog.rowid)
        TO {sql(path)} (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x1f')""")
    written = con.execute("""SELECT name, sum(len(list_filter(new, lambda t: NOT list_contains(old, t))))::BIGINT
        AS n FROM merged GROUP BY name ORDER BY n DESC, name""").fetchall()
    return dict(written)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _first_line(exc: Exception) -> str:
    errno = re.search(r'"errno":"(\d+)"', str(exc))  # DuckDB's I/O errors: the system's reason
    text = os.strerror(int(errno.group(1))) if errno else getattr(exc, "strerror", None) or str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _why_no_edges(summary: LogRelationsSummary, min_count: int) -> str:
    stats, counting = summary.log_stats, summary.counting
    why = f"no relations: of {stats.rows:,} rows, {stats.unknown_items:,} name items not in the catalogue"
    if stats.unknown_example is not None:
        why += f" (e.g. {stats.unknown_example!r}: check --item-column and --catalog)"
    skipped = sum(stats.skipped.values())
    why += f", {skipped:,} were skipped" if skipped else ""
    return why + f"; {counting.users:,} customers made {counting.pairs:,} pairs (--min-count {min_count})"


def describe_memory_bound(memory_mb: float) -> str:
    """A sentence stating the memory bound of a run (for reports and ``--help``).

    DuckDB stays within ``memory_mb`` (it spills to disk past it); the sparse product of the pair
    counting holds at most 3/4 of it besides, and there are about 250 MB of modules and DuckDB's
    own bookkeeping.

    Example:
        >>> print(describe_memory_bound(1024))
        about 2,042 MB: 1,024 MB for DuckDB + 768 MB for the sparse product + 250 MB of runtime
    """
    total = int(memory_mb * 1.75) + 250
    return f"about {total:,} MB: {memory_mb:,g} MB for DuckDB + {memory_mb * 0.75:,g} MB for the sparse product + 250 MB of runtime"

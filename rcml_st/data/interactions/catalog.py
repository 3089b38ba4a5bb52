"""Adding relations from an interaction log to a catalogue: DuckDB reads the records (as JSON text, in
file order) and writes them with the new relation lists merged in (``COPY`` through a temporary file)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from rcml_st.data.amazon.clustering import cluster_edges
from rcml_st.data.amazon.reader import check_input
from rcml_st.data.interactions import source
from rcml_st.data.interactions.cooccurrence import CooccurrenceStats, count_pairs
from rcml_st.data.interactions.source import LogColumns, LogStats, sql
from rcml_st.errors import InputDataError, ServiceError, UsageError


@dataclass
class LogRelationsSummary:
    """What :func:`add_log_relations` read, counted (``log_stats``, ``counting``) and wrote: ``items``,
    ``edges`` per relation name (new ones), ``relation_types`` made by ``cluster``, ``memory_bound``."""

    catalog: Path
    log: Path
    output: Path
    items: int = 0
    log_stats: LogStats = field(default_factory=LogStats)
    counting: CooccurrenceStats = field(default_factory=CooccurrenceStats)
    edges: dict[str, int] = field(default_factory=dict)
    relation_types: list[tuple[str, int]] = field(default_factory=list)
    memory_bound: str = ""

    def rows(self) -> list[tuple[str, str, str]]:
        """The closing report as ``(what, count, details)`` rows (``rcml-st prepare log`` prints them).

        Example:
            >>> [row[0] for row in LogRelationsSummary(Path("c"), Path("l"), Path("o")).rows()]
            ['log rows read', 'rows dropped', 'customers', 'pairs counted', 'items written', 'memory bound']
        """
        stats, counting = self.log_stats, self.counting
        unknown = f" (e.g. {stats.unknown_example!r})" if stats.unknown_example else ""
        return [
            ("log rows read", f"{stats.rows:,}", ""),
            *(
                ("rows skipped", f"{count:,}", f"{reason} (first: {stats.skip_examples.get(reason, '')})")
                for reason, count in stats.skipped.most_common()
            ),
            ("rows dropped", f"{stats.unknown_items:,}", f"item not in the catalogue{unknown}"),
            ("customers", f"{counting.users:,}", f"{counting.capped_users:,} cut to --max-items-per-user"),
            ("pairs counted", f"{counting.pairs:,}", "distinct (item, partner) pairs"),
            *(("edges", f"{count:,}", name) for name, count in self.edges.items()),
            ("items written", f"{self.items:,}", ""),
            ("memory bound", "", self.memory_bound),
        ]


def add_log_relations(
    catalog: str | os.PathLike[str],
    log: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    columns: LogColumns | None = None,
    log_format: str | None = None,
    relation: str = "bought by the same customers",
    memory_mb: float = 1024,
    threads: int | None = None,
    cluster: int | None = None,
    seed: int = 0,
    skip_invalid: bool = False,
    **options: object,
) -> LogRelationsSummary:
    """Writes ``catalog`` to ``output`` with a relation from items the same users touched in ``log``.

    Args:
        catalog: an rcml-st data file; its records are kept as they are (``output`` may be it).
        log: the log (``.csv``, ``.tsv``, ``.jsonl``, gzip or not, ``.parquet``; or ``log_format``),
            or a glob of such files, with the user, item and (optional) time ``columns``.
        relation: the description of the new edges (merged with an existing relation of that
            name), or, with ``cluster`` K, the start of the names of K relation types named from
            what the linked items share (their ``categories`` and text), seeded by ``seed``.
        memory_mb: DuckDB's memory limit (past it, it spills next to ``output``); the sparse
            product of the pair counting uses up to 3/4 of it besides. ``threads``: DuckDB's.
        skip_invalid: skip bad log rows (counted) instead of stopping at the first.
        options: ``max_items_per_user``, ``top_k``, ``score``, ``min_count``, ``window`` of
            :func:`~rcml_st.data.interactions.count_pairs`.

    Raises:
        InputDataError: a missing or bad catalogue or log (``file:line: problem``), or no edges.
        UsageError: bad option values.
        ServiceError: DuckDB or the disk failed (out of memory or disk space); nothing is written.

    Example:
        >>> import pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "items.jsonl").write_text('{"id": "A", "text": "tent"}\\n{"id": "B"}\\n')
        >>> _ = (d / "orders.csv").write_text("customer,sku\\nc1,A\\nc1,B\\nc2,A\\n")
        >>> summary = add_log_relations(d / "items.jsonl", d / "orders.csv", d / "out.jsonl",
        ...                             columns=LogColumns("customer", "sku"))
        >>> (d / "out.jsonl").read_text().splitlines()[0]
        '{"id":"A","text":"tent","relations":{"bought by the same customers":["B"]}}'
    """
    catalog, output = check_input(catalog), Path(output)
    if not isinstance(relation, str) or not relation.strip() or (cluster is not None and cluster < 1):
        raise UsageError("the relation description must be a non-empty string and --cluster at least 1")
    if output.is_dir() or (Path(log).exists() and output.resolve() == Path(log).resolve()):
        raise UsageError(f"--output {output} must be a .jsonl file path, not a folder or the log")
    summary = LogRelationsSummary(catalog=catalog, log=Path(log), output=output)
    summary.memory_bound = f"""about {memory_mb * 1.75 + 250:,.0f} MB: {memory_mb:,g} MB for DuckDB + {
        memory_mb * 0.75:,g} MB for the sparse product + 250 MB of runtime"""
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with source.session(memory_mb, threads, output.parent) as con:
            summary.items = load_catalog(con, catalog)
            stats, fmt = summary.log_stats, {"fmt": log_format, "skip_invalid": skip_invalid}
            source.read_log(con, log, columns or LogColumns(), stats, **fmt)
            summary.counting = counting = count_pairs(con, memory_mb=memory_mb, **options)
            if not counting.edges:
                x, n = stats.unknown_example, stats.unknown_items
                why = f"of {stats.rows:,} rows, {n:,} name items not in the catalogue"
                why += f" (e.g. {x!r}: check --item-column and --catalog)" * (n > 0)
                raise InputDataError(f"no relations: {why}; {counting.pairs:,} pairs counted", path=str(log))
            summary.edges = _write(con, output, relation.strip(), cluster, seed)
    except (duckdb.IOException, OSError) as exc:
        errno = re.search(r'"errno":"(\d+)"', str(exc))  # DuckDB's I/O errors: the system's reason
        reason = os.strerror(int(errno.group(1))) if errno else getattr(exc, "strerror", None) or exc
        raise ServiceError(f"cannot write {output}: {reason}; nothing was written") from None
    except duckdb.Error as exc:
        raise ServiceError(f"DuckDB failed: {str(exc).splitlines()[0]} (--memory-mb {memory_mb:g})") from None
    summary.relation_types = list(summary.edges.items()) if cluster else []
    return summary


def load_catalog(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Makes the tables ``catalog`` (``record``: JSON, in file order) and ``items`` (``id``, ``num``).

    Raises:
        InputDataError: ``file:line: problem`` for bad JSON, a non-object, a missing or repeated ``id``.
    """
    con.execute("SET preserve_insertion_order = true")  # rowid: the file order
    try:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE catalog AS
            SELECT json AS record FROM read_json_objects({sql(str(path))}, format='newline_delimited')""")
    except duckdb.InvalidInputException as exc:
        raise source.input_error(exc, [path]) from None
    con.execute("""CREATE OR REPLACE TEMP TABLE items AS SELECT record ->> 'id' AS id, rowid::INT AS num, CASE
        WHEN json_type(record) <> 'OBJECT' THEN 'expected a JSON object, got ' || lower(json_type(record))
        WHEN json_type(record, 'id') IS DISTINCT FROM 'VARCHAR' OR trim(id) = ''
        THEN 'missing or empty ''id'' (a non-empty string)' END AS problem FROM catalog""")
    con.execute("SET preserve_insertion_order = false")
    if bad := con.execute(
        "SELECT num, problem FROM items WHERE problem NOT NULL ORDER BY 1 LIMIT 1"
    ).fetchone():
        raise InputDataError(bad[1], path=str(path), line=source.line_numbers(path, [bad[0]])[0])
    if twice := con.execute("""SELECT id, list(num ORDER BY num)[1:2] AS n FROM items GROUP BY id
            HAVING count(*) > 1 ORDER BY n[2] LIMIT 1""").fetchone():
        first, again = source.line_numbers(path, twice[1])
        raise InputDataError(
            f"duplicate id {twice[0]!r} (first seen on line {first})", path=str(path), line=again
        )
    if not (items := con.execute("SELECT count(*) FROM items").fetchone()[0]):
        raise InputDataError("no items (the file is empty)", path=str(path))
    return items


def _write(con: duckdb.DuckDBPyConnection, path: Path, relation: str, cluster: int | None, seed: int) -> dict:
    """Writes the records with the ``edges`` merged in; relation name -> edges written (new ones)."""
    con.execute(f"CREATE OR REPLACE TEMP VIEW named AS SELECT *, {sql(relation)} AS name FROM edges")
    if cluster:
        documents = con.execute("""SELECT list(coalesce(lower(array_to_string(json_extract_string(record,
            '$.categories[*]'), chr(31))), '') || chr(30) || coalesce(left(record ->> 'text', 200), '')
            ORDER BY rowid) FROM catalog""").fetchone()[0]
        edges = con.execute("SELECT src, dst, rank FROM edges ORDER BY src, rank").fetchnumpy()
        types = cluster_edges(documents, edges["src"], edges["dst"], cluster, seed=seed, prefix=relation)
        edges["name"] = pa.DictionaryArray.from_arrays(pa.array(types.labels), pa.array(types.names))
        con.register("labelled", pa.table(edges))
        con.execute("""CREATE OR REPLACE TEMP TABLE labels AS SELECT src, dst, rank, name::VARCHAR AS name
            FROM labelled; CREATE OR REPLACE TEMP VIEW named AS FROM labels""")
    pointer = "'/relations/' || replace(replace(name, '~', '~0'), '/', '~1')"  # JSON pointer of the list
    con.execute(f"""CREATE OR REPLACE TEMP TABLE merged AS SELECT src, name, list_filter(new, lambda t: NOT
        list_contains(old, t)) AS added, list_concat(old, added) AS ids FROM (SELECT src, name, new,
        coalesce(TRY_CAST(json_extract(record, {pointer}) AS VARCHAR[]), []) AS old FROM catalog JOIN (SELECT
        src, name, list(id ORDER BY rank) AS new FROM named JOIN items ON num = dst GROUP BY ALL) n
        ON rowid = src)""")
    con.execute("SET preserve_insertion_order = true")
    con.execute(f"""COPY (SELECT coalesce(json_merge_patch(record, patch), record) FROM catalog LEFT JOIN (
        SELECT src, json_object('relations', json_group_object(name, ids)) AS patch FROM merged GROUP BY src)
        ON src = catalog.rowid ORDER BY catalog.rowid) TO {sql(str(path))}
        (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x1f', USE_TMP_FILE true)""")
    written = "SELECT name, sum(len(added))::INT AS n FROM merged GROUP BY name ORDER BY n DESC, name"
    return dict(con.execute(written).fetchall())

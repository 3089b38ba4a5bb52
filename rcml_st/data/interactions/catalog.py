"""Adding co-occurrence relations from an interaction log to a catalogue file.

Two streaming passes over the catalogue (ids first, then the records with their new relation
lists) around the pair counting of :mod:`~rcml_st.data.interactions.cooccurrence` in DuckDB.
Only the item ids (and, for ``cluster``, one short document per item) are held in Python. The
output is written to a temporary file and renamed at the end: a failure (a full disk included)
leaves no half file and stops with an error.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from rcml_st.data.amazon.clustering import cluster_edges
from rcml_st.data.amazon.reader import check_input, iter_lines
from rcml_st.data.catalog import write_catalog
from rcml_st.data.interactions.cooccurrence import CooccurrenceStats, cooccurrence_edges
from rcml_st.data.interactions.source import LogColumns, LogStats, connect, load_items, read_log
from rcml_st.errors import InputDataError, ServiceError, UsageError

#: The relation description used when none is given.
DEFAULT_LOG_RELATION = "bought by the same customers"

_TITLE_CHARS = 200


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
        memory_bound: the stated memory bound of the pair counting.
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
        memory_mb: DuckDB's memory limit; past it, it spills to a temporary folder next to ``output``.
        threads: DuckDB's threads (default: one per CPU).
        cluster: group the new edges into this many relation types named from what the
            linked items share (their ``categories`` and text).
        seed: seeds the clustering.
        skip_invalid: skip bad log rows (counted) instead of stopping at the first.

    Returns:
        A :class:`LogRelationsSummary`.

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
        '{"id": "A", "text": "tent", "relations": {"bought by the same customers": ["B"]}}'
    """
    catalog = check_input(catalog)
    output = Path(output)
    if not isinstance(relation, str) or not relation.strip():
        raise UsageError("the relation description must be a non-empty string")
    relation = relation.strip()
    if cluster is not None and cluster < 1:
        raise UsageError("--cluster must be at least 1")
    if output.exists() and output.is_dir():
        raise UsageError(f"--output {output} is a folder; give a .jsonl file path")
    if Path(log).exists() and output.resolve() == Path(log).resolve():
        raise UsageError("--output must not be the log itself")
    summary = LogRelationsSummary(catalog=catalog, log=Path(log), output=output)

    index, documents = _read_ids(catalog, with_documents=bool(cluster))
    summary.memory_bound = describe_memory_bound(len(index), top_k, memory_mb)
    output.parent.mkdir(parents=True, exist_ok=True)
    spill = Path(tempfile.mkdtemp(prefix=".rcml-duckdb-", dir=output.parent))
    try:
        with connect(memory_mb, threads, spill) as con:
            load_items(con, list(index))
            read_log(
                con,
                log,
                columns or LogColumns(),
                fmt=log_format,
                skip_invalid=skip_invalid,
                stats=summary.log_stats,
            )
            edges = cooccurrence_edges(
                con,
                "events",
                len(index),
                top_k=top_k,
                score=score,
                min_count=min_count,
                window=window,
                max_items_per_user=max_items_per_user,
            )
    except ValueError as exc:
        if isinstance(exc, InputDataError):
            raise
        raise UsageError(str(exc)) from None
    except duckdb.Error as exc:
        raise ServiceError(
            f"DuckDB failed: {_first_line(exc)} (--memory-mb {memory_mb:g}, spilling to {spill})"
        ) from None
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    summary.counting = edges.stats
    if not len(edges):
        raise InputDataError(_why_no_edges(summary, min_count), path=str(log))

    names: list[str] = [relation]
    labels = np.zeros(len(edges), dtype=np.int32)
    if cluster and len(edges):
        types = cluster_edges(documents, edges.sources, edges.targets, cluster, seed=seed, prefix=relation)
        names, labels = types.names, types.labels
    documents.clear()

    ids = list(index)
    starts = np.searchsorted(edges.sources, np.arange(len(ids) + 1))
    written: dict[str, int] = {}

    def records() -> Iterator[dict[str, Any]]:
        for number, record in enumerate(_records(catalog)):
            lo, hi = starts[number], starts[number + 1]
            if hi > lo:
                relations = record.get("relations")
                relations = dict(relations) if isinstance(relations, dict) else {}
                for target, label in zip(edges.targets[lo:hi].tolist(), labels[lo:hi].tolist(), strict=True):
                    name = names[label]
                    bucket = list(relations.get(name, []))
                    if ids[target] not in bucket:
                        bucket.append(ids[target])
                        written[name] = written.get(name, 0) + 1
                    relations[name] = bucket
                record["relations"] = relations
            summary.items += 1
            yield record

    try:
        write_catalog(records(), output)
    except OSError as exc:
        raise ServiceError(f"cannot write {output}: {exc.strerror or exc}; nothing was written") from None
    summary.edges = dict(sorted(written.items(), key=lambda kv: (-kv[1], kv[0])))
    if cluster:
        summary.relation_types = list(summary.edges.items())
    return summary


def _read_ids(catalog: Path, with_documents: bool) -> tuple[dict[str, int], list[str]]:
    """Pass 1: item id -> number, in file order (and one clustering document per item)."""
    index: dict[str, int] = {}
    first_line: dict[str, int] = {}
    documents: list[str] = []
    where = str(catalog)
    for number, raw in iter_lines(catalog):
        if not raw.strip():
            continue
        record = _parse(raw, where, number)
        item_id = record.get("id")
        if not isinstance(item_id, str) or not item_id.strip():
            raise InputDataError("missing or empty 'id' (a non-empty string)", path=where, line=number)
        if item_id in index:
            raise InputDataError(
                f"duplicate id {item_id!r} (first seen on line {first_line[item_id]})",
                path=where,
                line=number,
            )
        index[item_id] = len(index)
        first_line[item_id] = number
        if with_documents:
            documents.append(_document(record))
    if not index:
        raise InputDataError("no items (the file is empty)", path=where)
    return index, documents


def _records(catalog: Path) -> Iterator[dict[str, Any]]:
    where = str(catalog)
    for number, raw in iter_lines(catalog):
        if raw.strip():
            yield _parse(raw, where, number)


def _parse(raw: bytes, where: str, number: int) -> dict[str, Any]:
    try:
        record = json.loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
    except UnicodeDecodeError:
        raise InputDataError("not UTF-8", path=where, line=number) from None
    except (ValueError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise InputDataError(f"bad JSON: {detail}", path=where, line=number) from None
    if not isinstance(record, dict):
        raise InputDataError(f"expected a JSON object, got {type(record).__name__}", path=where, line=number)
    return record


def _document(record: dict[str, Any]) -> str:
    """The clustering document of a catalogue item: its categories and the start of its text."""
    categories = record.get("categories")
    names = [c.lower() for c in categories if isinstance(c, str)] if isinstance(categories, list) else []
    text = record.get("text") if isinstance(record.get("text"), str) else ""
    return "\x1f".join(names) + "\x1e" + text[:_TITLE_CHARS]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _why_no_edges(summary: LogRelationsSummary, min_count: int) -> str:
    stats, counting = summary.log_stats, summary.counting
    why = f"no relations: of {stats.rows:,} rows, {stats.unknown_items:,} name items not in the catalogue"
    if stats.unknown_example is not None:
        why += f" (e.g. {stats.unknown_example!r}: check --item-column and --catalog)"
    skipped = sum(stats.skipped.values())
    why += f", {skipped:,} were skipped" if skipped else ""
    return why + f"; {counting.users:,} customers made {counting.pairs:,} pairs (--min-count {min_count})"


def describe_memory_bound(n_items: int, top_k: int, memory_mb: float) -> str:
    """A sentence stating the memory bound of a run (for reports and ``--help``).

    DuckDB stays within ``memory_mb`` (it spills to disk past it); Python holds the item ids
    (about 150 bytes each, twice while they are handed to DuckDB) and the kept edges (12 bytes
    each, three columns), and about 250 MB of modules and DuckDB's own bookkeeping (measured: 10M
    rows, 1M items, top 10: 1,587 MB peak RSS at ``memory_mb=1024``).

    Example:
        >>> print(describe_memory_bound(1_000_000, 10, 1024))
        about 1,676 MB: 1,024 MB for DuckDB + 287 MB of item ids + 115 MB of edges + 250 MB of runtime
    """
    mb = 1 << 20
    ids = math.ceil(n_items * 300 / mb)
    edges = math.ceil(n_items * max(top_k, 1) * 12 / mb)
    total = math.ceil(memory_mb) + ids + edges + 250
    return (
        f"about {total:,} MB: {memory_mb:,g} MB for DuckDB + {ids:,} MB of item ids + "
        f"{edges:,} MB of edges + 250 MB of runtime"
    )

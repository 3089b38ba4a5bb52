"""Adding co-occurrence relations from an interaction log to a catalogue file.

Two streaming passes over the catalogue (ids first, then the records with their new relation
lists) around the out-of-core pair counting of :mod:`~rcml_st.data.interactions.cooccurrence`.
Only the item ids (and, for ``cluster``, one short document per item) are held in memory. The
output is written to a temporary file and renamed at the end.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rcml_st.data.amazon.clustering import cluster_edges
from rcml_st.data.amazon.reader import check_input, iter_lines
from rcml_st.data.catalog import write_catalog
from rcml_st.data.interactions.cooccurrence import (
    CooccurrenceStats,
    cooccurrence_edges,
    describe_memory_bound,
)
from rcml_st.data.interactions.reader import LogColumns, LogStats, iter_log
from rcml_st.errors import InputDataError, UsageError

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
        log_stats: rows read and rows skipped, by reason.
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
    cluster: int | None = None,
    seed: int = 0,
    skip_invalid: bool = False,
) -> LogRelationsSummary:
    """Writes ``catalog`` to ``output`` with a relation from items the same users touched in ``log``.

    Args:
        catalog: an rcml-st data file (JSON Lines); its records are kept as they are.
        log: the interaction log (``.csv``, ``.tsv`` or ``.jsonl``, gzip or not).
        output: the data file to write (may be ``catalog`` itself: it is replaced at the end).
        columns: the log's user (customer, order or session), item and optional time columns.
        log_format: ``"csv"``, ``"tsv"`` or ``"jsonl"``; from the log's name when ``None``.
        relation: the relation description of the new edges (merged with an existing relation
            of the same name), or, with ``cluster``, the start of each type's name.
        top_k: partners kept per item, strongest first (0: all).
        score: ranks partners: ``"count"``, ``"jaccard"`` or ``"pmi"``.
        min_count: pairs touched by fewer users are left out.
        window: seconds; items pair up only when touched within this time of each other.
        max_items_per_user: users with more items keep their most recent ones.
        memory_mb: the memory budget of one partition of the pair counting.
        cluster: group the new edges into this many relation types named from what the
            linked items share (their ``categories`` and text).
        seed: seeds the clustering.
        skip_invalid: skip bad log rows (counted) instead of stopping at the first.

    Returns:
        A :class:`LogRelationsSummary`.

    Raises:
        InputDataError: a missing or bad catalogue or log (``file:line: problem``).
        UsageError: bad option values.

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
    log = check_input(log)
    output = Path(output)
    if not isinstance(relation, str) or not relation.strip():
        raise UsageError("the relation description must be a non-empty string")
    relation = relation.strip()
    if cluster is not None and cluster < 1:
        raise UsageError("--cluster must be at least 1")
    if output.exists() and output.is_dir():
        raise UsageError(f"--output {output} is a folder; give a .jsonl file path")
    if output.resolve() == log.resolve():
        raise UsageError("--output must not be the log itself")
    summary = LogRelationsSummary(catalog=catalog, log=log, output=output)

    index, documents = _read_ids(catalog, with_documents=bool(cluster))
    summary.memory_bound = describe_memory_bound(len(index), top_k, memory_mb)
    rows = iter_log(log, columns, fmt=log_format, skip_invalid=skip_invalid, stats=summary.log_stats)
    try:
        edges = cooccurrence_edges(
            rows,
            index,
            top_k=top_k,
            score=score,
            min_count=min_count,
            window=window,
            max_items_per_user=max_items_per_user,
            memory_mb=memory_mb,
            temp_dir=output.parent if output.parent.exists() else None,
        )
    except ValueError as exc:
        if isinstance(exc, InputDataError):
            raise
        raise UsageError(str(exc)) from None
    summary.counting = edges.stats

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

    write_catalog(records(), output)
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

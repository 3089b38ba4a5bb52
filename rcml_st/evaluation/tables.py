"""The terminal view of an :class:`~rcml_st.evaluation.report.EvaluationReport`: rich tables.

What ``rcml-st evaluate`` prints: Hit@5 by direction and method (the paper's table), every
retrieval metric, Hit@1 with hard negatives, and relation-type prediction with validity; each
column's best value in bold, ``n/a`` where a method cannot serve a direction (never 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.table import Table

from rcml_st.evaluation.methods import DESCRIPTIONS
from rcml_st.evaluation.retrieval import DIRECTIONS, METRICS

if TYPE_CHECKING:
    from rcml_st.evaluation.report import EvaluationReport

#: The table columns of the retrieval directions, their average last.
COLUMNS = (*DIRECTIONS, "avg")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _cell(value: float | None, best: float | None) -> str:
    return f"[bold]{_fmt(value)}[/bold]" if value is not None and value == best else _fmt(value)


def _ranked(
    title: str, caption: str, columns: Sequence[str], rows: Mapping[str, Sequence[float | None]]
) -> Table:
    """Methods (rows) by scores (columns), each column's best value in bold."""
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    table.add_column("method", style="bold")
    for column in columns:
        table.add_column(column, justify="right")
    best = [max((v[i] for v in rows.values() if v[i] is not None), default=None) for i in range(len(columns))]
    for name, values in rows.items():
        table.add_row(name, *(_cell(v, b) for v, b in zip(values, best, strict=True)))
    return table


def report_tables(report: EvaluationReport) -> list[Table]:
    """The report as rich tables, in the order ``rcml-st evaluate`` prints them.

    Example:
        >>> from rich.console import Console
        >>> from rcml_st.evaluation import EvaluationReport, MethodResult, RetrievalResult
        >>> metrics = dict.fromkeys(COLUMNS, {"hit@1": 0.5, "hit@5": 1.0, "hit@10": 1.0, "mrr": 0.75})
        >>> tasks = {"top1": 1.0, "top3": 1.0}, {"accuracy": None}
        >>> result = MethodResult(RetrievalResult(metrics, {}), *tasks)
        >>> settings = {"negatives": 5, "seed": 0, "items": 10, "relations": ["r"], "incomplete_queries": 0,
        ...             "queries_per_direction": dict.fromkeys(DIRECTIONS, 4)}
        >>> tables = report_tables(EvaluationReport(settings, {"rcml": result}))
        >>> [table.title for table in tables]  # doctest: +NORMALIZE_WHITESPACE
        ['Retrieval Hit@5 (1 target + 5 negatives, seed 0)', 'Retrieval, all metrics',
         'Relation-type prediction and relation validity']
        >>> Console(width=60).print(tables[0])  # doctest: +NORMALIZE_WHITESPACE
        Retrieval Hit@5 (1 target + 5 negatives, seed 0)
        ┏━━━━━━━━┳━━━━━━━┳━━━━━━━┳━━━━━━━┳━━━━━━━┳━━━━━━━┓
        ┃ method ┃    tt ┃    ii ┃    ti ┃    it ┃   avg ┃
        ┡━━━━━━━━╇━━━━━━━╇━━━━━━━╇━━━━━━━╇━━━━━━━╇━━━━━━━┩
        │ rcml   │ 1.000 │ 1.000 │ 1.000 │ 1.000 │ 1.000 │
        └────────┴───────┴───────┴───────┴───────┴───────┘
        10 items, 1 relations, tt 4, ii 4, ti 4, it 4 queries
    """
    settings = report.settings
    counts = settings["queries_per_direction"]
    retrieval = {name: result.retrieval.metrics for name, result in report.methods.items()}
    incomplete = settings["incomplete_queries"]
    main = _ranked(
        f"Retrieval Hit@5 (1 target + {settings['negatives']} negatives, seed {settings['seed']})",
        f"{settings['items']:,} items, {len(settings['relations'])} relations, "
        + ", ".join(f"{d} {counts[d]:,}" for d in DIRECTIONS)
        + " queries"
        + (f"; {incomplete:,} left out (too few negatives)" if incomplete else "")
        + _legend(report),
        COLUMNS,
        {name: [metrics[d]["hit@5"] for d in COLUMNS] for name, metrics in retrieval.items()},
    )

    details = Table(title="Retrieval, all metrics", title_justify="left")
    details.add_column("method", style="bold")
    details.add_column("direction")
    details.add_column("queries", justify="right")
    for metric in METRICS:
        details.add_column(metric, justify="right")
    for k, (name, metrics) in enumerate(retrieval.items()):
        for direction in COLUMNS:
            details.add_row(
                name if direction == COLUMNS[0] else "",
                direction,
                f"{counts[direction]:,}" if direction in counts else "",
                *(_fmt(metrics[direction][m]) for m in METRICS),
                end_section=k < len(retrieval) - 1 and direction == COLUMNS[-1],
            )

    tables = [main, details]
    if "hard_queries" in settings:
        tables.append(_hard_table(report))
    pairs = settings.get("validity_pairs", {})
    tasks = _ranked(
        "Relation-type prediction and relation validity",
        f"relation type: filtered ranking among {len(settings['relations'])} relations; "
        f"validity: linear probe, {pairs.get('train', 0):,} train / {pairs.get('test', 0):,} test pairs",
        ("type top-1", "type top-3", "validity acc."),
        {
            name: [r.relation_type["top1"], r.relation_type["top3"], r.validity["accuracy"]]
            for name, r in report.methods.items()
        },
    )
    return [*tables, tasks]


def _legend(report: EvaluationReport) -> str:
    """What the method names and n/a mean, for the methods this report has."""
    notes = [f"{name}: {DESCRIPTIONS[name]}" for name in report.methods if name in DESCRIPTIONS]
    left_out = (report.settings.get("zero_shot") or {}).get("left_out")
    if left_out:
        notes.append(f"zero_shot left out: {left_out}")
    templates = report.settings.get("prompt_templates") or {}
    for name, template in templates.items():
        notes.append(f"{name}: texts read as {template!r}" if template else f"{name}: texts as they are")
    if any(
        v is None
        for r in report.methods.values()
        for d, values in r.retrieval.metrics.items()
        if d != "avg" and report.settings["queries_per_direction"].get(d)
        for v in values.values()
    ):
        notes.append("n/a: a direction the method cannot serve (not 0)")
    return "".join(f"\n{note}" for note in notes)


def _hard_table(report: EvaluationReport) -> Table:
    """Hit@1 with hard negatives (the source's partners under the other relations)."""
    settings = report.settings
    counts = settings["hard_queries_per_direction"]
    mean = settings.get("hard_negatives_mean")
    table = _ranked(
        "Retrieval Hit@1 with hard negatives (the source's partners under the other relations)",
        f"{settings['hard_queries']:,} of {settings['queries']:,} queries have any "
        f"(up to {settings['negatives']}"
        + (f", {mean:.1f} on average" if mean is not None else "")
        + "); queries without one are left out. "
        + ", ".join(f"{d} {counts[d]:,}" for d in DIRECTIONS)
        + " queries",
        COLUMNS,
        {
            name: [r.retrieval_hard.metrics[d]["hit@1"] for d in COLUMNS]
            for name, r in report.methods.items()
            if r.retrieval_hard
        },
    )
    chance = settings["hard_chance"]
    table.add_row("(random ranking)", *(_fmt(chance[d]["hit@1"]) for d in COLUMNS), style="dim")
    return table

"""`rcml-st evaluate`: relation-guided retrieval, relation-type prediction and validity, with baselines."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rcml_st.cli._common import (
    Device,
    check_model_dir,
    console,
    err_console,
    load_model,
    resolve_device,
    run_command,
)

if TYPE_CHECKING:
    from rich.table import Table

    from rcml_st.evaluation.report import EvaluationReport

EVALUATE_HELP = "\n\n".join(
    [
        "Evaluate an RCML model on a data file with the RCML paper's three tasks.",
        "Retrieval: every (source, relation, target) edge is a query; the target hides among --negatives "
        "items not related to the source under that relation (drawn with --seed); query and candidates are "
        "encoded under the relation. Hit@1/5/10 and MRR for text->text (tt), image->image (ii), "
        "text->image (ti), image->text (it) and their average. Relation type: for each edge, rank the "
        "data's relations by how close they bring the pair (top-1, top-3). Validity: a linear probe on "
        "pair features decides whether a triple holds (70/30 split, accuracy).",
        "Baselines in the same run: 'clip' (the model's backbone, relation text appended to the item "
        "text), 'product' (training-free (zA.zr)(zB.zr)), and any --compare model under its directory name.",
        "Examples:",
        "  rcml-st evaluate test.jsonl --model rcml-baby",
        "  rcml-st evaluate test.jsonl -m rcml-baby --compare runs/no-conditioning --json eval.json "
        "--plot eval.png",
        "  rcml-st evaluate test.jsonl -m rcml-baby --negatives 50 --seed 1 --no-baselines",
    ]
)


def evaluate(
    data: Annotated[
        Path,
        typer.Argument(
            help="The evaluation data file (.jsonl); its edges are the queries.",
            metavar="DATA.jsonl",
            show_default=False,
        ),
    ],
    model: Annotated[
        Path,
        typer.Option(
            "--model",
            "-m",
            metavar="DIR|ID",
            help="The RCML model: a folder written by rcml-st train, or a Hugging Face Hub id (org/name; "
            "from the local cache when HF_HUB_OFFLINE=1).",
            show_default=False,
        ),
    ],
    compare: Annotated[
        list[Path] | None,
        typer.Option(
            "--compare",
            metavar="DIR",
            help="Another model directory to evaluate alongside, reported under its directory name "
            "(repeatable), e.g. one trained with --no-conditioning.",
            show_default=False,
        ),
    ] = None,
    negatives: Annotated[
        int, typer.Option("--negatives", min=1, help="Negatives per retrieval query (the paper uses 20).")
    ] = 20,
    seed: Annotated[
        int,
        typer.Option("--seed", help="Seed for negatives and the probe's split (same seed, same numbers)."),
    ] = 0,
    json_file: Annotated[
        Path | None,
        typer.Option(
            "--json",
            metavar="FILE",
            help="Write the report as JSON (format: docs/contract/report-json.md).",
            show_default=False,
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            metavar="FILE.png",
            help="Write a PNG: Hit@5 per direction and method, and PCA views of the items under "
            "2-3 relations.",
            show_default=False,
        ),
    ] = None,
    plot_relation: Annotated[
        list[str] | None,
        typer.Option(
            "--plot-relation",
            metavar="TEXT",
            help="A relation to show in the plot's projections (repeatable, up to 3; default: the 3 with "
            "the most edges).",
            show_default=False,
        ),
    ] = None,
    baselines: Annotated[
        bool, typer.Option("--baselines/--no-baselines", help="Also evaluate the clip and product baselines.")
    ] = True,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Items per encoding batch.")] = 32,
    device: Annotated[Device, typer.Option("--device", help="Where to run the models.")] = Device.auto,
    probe_max_edges: Annotated[
        int,
        typer.Option(
            "--probe-max-edges",
            min=2,
            help="At most this many edges (a seeded sample) feed the validity probe.",
        ),
    ] = 10_000,
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="Skip bad records (counted) instead of stopping at the first."),
    ] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show progress bars while encoding.")
    ] = True,
) -> None:
    def body() -> None:
        _run(
            data=data,
            model_dir=model,
            compare=list(compare or []),
            negatives=negatives,
            seed=seed,
            json_file=json_file,
            plot=plot,
            plot_relations=list(plot_relation or []),
            baselines=baselines,
            batch_size=batch_size,
            device=device,
            probe_max_edges=probe_max_edges,
            skip_invalid=skip_invalid,
            progress=progress,
        )

    run_command(body)


evaluate.__doc__ = EVALUATE_HELP


def _run(
    *,
    data: Path,
    model_dir: Path,
    compare: list[Path],
    negatives: int,
    seed: int,
    json_file: Path | None,
    plot: Path | None,
    plot_relations: list[str],
    baselines: bool,
    batch_size: int,
    device: Device,
    probe_max_edges: int,
    skip_invalid: bool,
    progress: bool,
) -> None:
    import json

    from rcml_st.data.catalog import read_catalog
    from rcml_st.errors import UsageError

    # Data first: a bad record fails in a second, before torch or any model is loaded.
    catalog = read_catalog(
        data, skip_invalid=skip_invalid, on_warning=lambda m: err_console.print(f"Warning: {m}")
    )
    if catalog.skip_summary():
        err_console.print(f"Warning: {catalog.skip_summary()}")
    if not catalog.edges:
        raise UsageError(f"{data}: no relation edges, nothing to evaluate (items need 'relations')")
    unknown = [r for r in plot_relations if r not in catalog.relations]
    if unknown:
        raise UsageError(f"--plot-relation {unknown[0]!r} is not a relation of {data}")
    if len(plot_relations) > 3:
        raise UsageError("--plot-relation: at most 3 relations")
    # Then the model: a missing folder or Hub id fails before torch is imported too.
    check_model_dir(model_dir)
    names = _compare_names(compare)
    for path in compare:
        check_model_dir(path)

    from rcml_st.evaluation.methods import BASELINES
    from rcml_st.evaluation.report import evaluate_catalog

    target_device = resolve_device(device)
    main = load_model(model_dir, target_device)
    others = {name: load_model(path, target_device) for name, path in names.items()}
    report = evaluate_catalog(
        main,
        catalog,
        compare=others,
        baselines=BASELINES if baselines else (),
        negatives=negatives,
        seed=seed,
        batch_size=batch_size,
        show_progress_bar=progress,
        probe_max_edges=probe_max_edges,
        keep_embeddings=plot is not None,
    )
    report.settings["data"] = str(data)
    report.settings["model"] = str(model_dir)

    for table in render_tables(report):
        console.print(table)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        console.print(f"Report written to {json_file}")
    if plot is not None:
        from rcml_st.evaluation.plot import plot_report

        plot_report(report, catalog, plot, relations=plot_relations or None, seed=seed)
        console.print(f"Plot written to {plot}")


def _compare_names(paths: list[Path]) -> dict[str, Path]:
    from rcml_st.errors import UsageError
    from rcml_st.evaluation.methods import BASELINES, RCML

    names: dict[str, Path] = {}
    for path in paths:
        name = path.name or path.resolve().name
        if name in (RCML, *BASELINES):
            raise UsageError(
                f"--compare {path}: its name {name!r} is taken by a method; rename the directory"
            )
        if name in names:
            raise UsageError(
                f"--compare {path}: two models would be reported as {name!r} ({names[name]}); rename one"
            )
        names[name] = path
    return names


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _best(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _cell(value: float | None, best: float | None) -> str:
    text = _fmt(value)
    return f"[bold]{text}[/bold]" if value is not None and value == best else text


def render_tables(report: EvaluationReport) -> list[Table]:
    """The terminal view of a report: Hit@5 (the paper's table), retrieval details, the other tasks."""
    from rich.table import Table

    from rcml_st.evaluation.retrieval import DIRECTIONS, METRICS

    settings = report.settings
    directions = [*DIRECTIONS, "avg"]
    counts = settings["queries_per_direction"]
    methods = list(report.methods)
    retrieval = {name: result.retrieval.metrics for name, result in report.methods.items()}

    main = Table(
        title=f"Retrieval Hit@5 (1 target + {settings['negatives']} negatives, seed {settings['seed']})",
        title_justify="left",
        caption=f"{settings['items']:,} items, {len(settings['relations'])} relations, "
        + ", ".join(f"{d} {counts[d]:,}" for d in DIRECTIONS)
        + " queries"
        + (
            f"; {settings['incomplete_queries']:,} left out (too few negatives)"
            if settings["incomplete_queries"]
            else ""
        ),
        caption_justify="left",
    )
    main.add_column("method", style="bold")
    for direction in directions:
        main.add_column(direction, justify="right")
    best = {d: _best([retrieval[m][d]["hit@5"] for m in methods]) for d in directions}
    for name in methods:
        main.add_row(name, *(_cell(retrieval[name][d]["hit@5"], best[d]) for d in directions))

    details = Table(title="Retrieval, all metrics", title_justify="left")
    details.add_column("method", style="bold")
    details.add_column("direction")
    details.add_column("queries", justify="right")
    for metric in METRICS:
        details.add_column(metric, justify="right")
    for k, name in enumerate(methods):
        for direction in directions:
            values = retrieval[name][direction]
            shown_count = f"{counts[direction]:,}" if direction in counts else ""
            details.add_row(
                name if direction == directions[0] else "",
                direction,
                shown_count,
                *(_fmt(values[m]) for m in METRICS),
                end_section=k < len(methods) - 1 and direction == directions[-1],
            )

    pairs = settings.get("validity_pairs", {})
    tasks = Table(
        title="Relation-type prediction and relation validity",
        title_justify="left",
        caption=f"relation type: filtered ranking among {len(settings['relations'])} relations; "
        f"validity: linear probe, {pairs.get('train', 0):,} train / {pairs.get('test', 0):,} test pairs",
        caption_justify="left",
    )
    tasks.add_column("method", style="bold")
    tasks.add_column("type top-1", justify="right")
    tasks.add_column("type top-3", justify="right")
    tasks.add_column("validity acc.", justify="right")
    rows: list[tuple[str, Any, Any, Any]] = [
        (name, r.relation_type["top1"], r.relation_type["top3"], r.validity["accuracy"])
        for name, r in report.methods.items()
    ]
    column_best = [_best([row[i] for row in rows]) for i in (1, 2, 3)]
    for name, *values in rows:
        tasks.add_row(name, *(_cell(v, b) for v, b in zip(values, column_best, strict=True)))
    return [main, details, tasks]

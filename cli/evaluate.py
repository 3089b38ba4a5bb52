"""`rcml-st evaluate`: relation-guided retrieval, relation-type prediction and validity, with baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rcml_st.cli._common import check_model_dir, command, console, load_model, resolve_device, warn
from rcml_st.cli.options import (
    DataArgument,
    DeviceOption,
    ModelOption,
    ProgressOption,
    SeedOption,
    SkipInvalidOption,
    TrustRemoteCodeOption,
    with_help,
)

EVALUATE_HELP = "\n\n".join(
    [
        "Evaluate an RCML model on a data file with the RCML paper's three tasks.",
        "Retrieval: every (source, relation, target) edge is a query; the target hides among --negatives "
        "items not related to the source under that relation (drawn with --seed); query and candidates are "
        "encoded under the relation. Hit@1/5/10 and MRR for text->text (tt), image->image (ii), "
        "text->image (ti), image->text (it) and their average. The same queries again with hard "
        "negatives (retrieval_hard): up to --negatives of the source's partners under the other relations, "
        "the items a model that ignores the relation confuses with the target; queries whose source has "
        "none are left out, and the table shows what a random ranking scores. Relation type: for each "
        "edge, rank the data's relations by how close they bring the pair (top-1, top-3). Validity: a "
        "linear probe on pair features decides whether a triple holds (70/30 split, accuracy).",
        "Baselines in the same run: 'clip' (the evaluated model's OWN backbone without its relation "
        "pooling, relation text appended to the item text; for a fine-tuned model that is the fine-tuned "
        "backbone, not a zero-shot one), 'zero_shot' (the untrained backbone it was trained from, e.g. "
        "rcml-lite or an open_clip pretrained tag, rebuilt offline when possible; evaluated like clip), "
        "'product' (training-free (zA.zr)(zB.zr) on the model's backbone), and "
        "any --compare model under its directory or Hub name: another RCML model, or any "
        "sentence-transformers model with --prompt-template; what it cannot serve (images for a text-only "
        "model) is n/a, never 0.",
        "Examples:",
        "  rcml-st evaluate test.jsonl --model rcml-baby",
        "  rcml-st evaluate test.jsonl -m rcml-baby --compare runs/no-conditioning --json eval.json "
        "--plot eval.png",
        "  rcml-st evaluate test.jsonl -m rcml-baby --compare sentence-transformers/all-MiniLM-L6-v2 "
        "--prompt-template '{relation}: {text}'",
        "  rcml-st evaluate test.jsonl -m rcml-baby --negatives 50 --seed 1 --no-baselines",
    ]
)


@command(EVALUATE_HELP)
def evaluate(
    data: with_help(DataArgument, "The evaluation data file (.jsonl); its edges are the queries."),
    model: ModelOption,
    compare: Annotated[
        list[Path] | None,
        typer.Option(
            "--compare",
            metavar="DIR|ID",
            help="Another model to evaluate alongside (repeatable), reported under its directory or Hub "
            "name: an RCML model (e.g. one trained with --no-conditioning) or any sentence-transformers "
            "model, which gets the relation through --prompt-template (loaded without running code from "
            "the model: trust_remote_code=False). Directions it cannot serve (images for a text-only "
            "model) are null in the JSON and n/a in the tables, never 0.",
        ),
    ] = None,
    prompt_template: Annotated[
        str | None,
        typer.Option(
            "--prompt-template",
            metavar="TEMPLATE",
            help="How the non-RCML --compare models read an item text under a relation, on both sides of "
            "a query: must contain {text}, may contain {relation}, e.g. '{relation}: {text}' (such a "
            "model has no relation conditioning, so the relation reaches it only through the text; "
            "images get no prompt). Default: the texts as they are (the model ignores the relation).",
        ),
    ] = None,
    negatives: Annotated[
        int, typer.Option("--negatives", min=1, help="Negatives per retrieval query (the paper uses 20).")
    ] = 20,
    seed: with_help(SeedOption, "Seed for negatives and the probe's split (same seed, same numbers).") = 0,
    json_file: Annotated[
        Path | None,
        typer.Option(
            "--json",
            metavar="FILE",
            help="Write the report as JSON (format: docs/contract/report-json.md).",
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            metavar="FILE.png",
            help="Write a PNG: Hit@5 per direction and method, Hit@1 with hard negatives, and PCA views "
            "of the items under 2-3 relations (n/a where a method cannot serve a direction).",
        ),
    ] = None,
    plot_relation: Annotated[
        list[str] | None,
        typer.Option(
            "--plot-relation",
            metavar="TEXT",
            help="A relation to show in the plot's projections (repeatable, up to 3; default: the 3 with "
            "the most edges).",
        ),
    ] = None,
    baselines: Annotated[
        bool,
        typer.Option(
            "--baselines/--no-baselines",
            help="Also evaluate the clip (this model's own backbone without its relation pooling), "
            "zero_shot (the untrained backbone) and product baselines.",
        ),
    ] = True,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Items per encoding batch.")] = 32,
    device: DeviceOption = "auto",
    probe_max_edges: Annotated[
        int,
        typer.Option(
            "--probe-max-edges",
            min=2,
            help="At most this many edges (a seeded sample) feed the validity probe.",
        ),
    ] = 10_000,
    skip_invalid: SkipInvalidOption = False,
    progress: ProgressOption = True,
    trust_remote_code: TrustRemoteCodeOption = False,
) -> None:
    import json

    from rcml_st.atomic import write_text
    from rcml_st.data.catalog import read_catalog
    from rcml_st.errors import UsageError
    from rcml_st.hub import locate_model
    from rcml_st.output_files import PLOT_SUFFIXES, check_output_file

    plot_relation = plot_relation or []
    # Options, then data: a bad template or record fails in a second, before torch or any model.
    if prompt_template is not None:
        from rcml_st.evaluation.prompted import check_prompt_template

        check_prompt_template(prompt_template)
    catalog = read_catalog(data, skip_invalid=skip_invalid, on_warning=warn)
    if catalog.skip_summary():
        warn(catalog.skip_summary())
    if not catalog.edges:
        raise UsageError(f"{data}: no relation edges, nothing to evaluate (items need 'relations')")
    unknown = [r for r in plot_relation if r not in catalog.relations]
    if unknown:
        raise UsageError(f"--plot-relation {unknown[0]!r} is not a relation of {data}")
    if len(plot_relation) > 3:
        raise UsageError("--plot-relation: at most 3 relations")
    # The output files are written at the end: a path that cannot be written fails now, not then.
    if json_file is not None:
        check_output_file(json_file, "--json")
    if plot is not None:
        check_output_file(plot, "--plot", PLOT_SUFFIXES)
    # Then the model: a missing folder or Hub id fails before torch is imported too.
    check_model_dir(model, trust_remote_code)
    names = _compare_names(compare or [])
    from rcml_st.safe_load import is_rcml_folder

    # Plain sentence-transformers models load with trust_remote_code=False (sentence-transformers then
    # imports only its own classes); RCML ones go through the checked loader.
    plain = {name for name, path in names.items() if not is_rcml_folder(locate_model(path))}
    if prompt_template is not None and not plain:
        raise UsageError(
            "--prompt-template applies to --compare models that are not RCML (plain sentence-transformers "
            "models), and none was given"
        )

    from rcml_st.evaluation.methods import BASELINES
    from rcml_st.evaluation.prompted import PromptedModel
    from rcml_st.evaluation.report import evaluate_catalog
    from rcml_st.evaluation.tables import report_tables
    from rcml_st.model import load_plain

    target_device = resolve_device(device)
    main = load_model(model, target_device, trust_remote_code)
    others: dict[str, Any] = {
        name: PromptedModel(load_plain(path, target_device), prompt_template)
        if name in plain
        else load_model(path, target_device, trust_remote_code)
        for name, path in names.items()
    }
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
    report.settings.update(data=str(data), model=str(model))

    for table in report_tables(report):
        console.print(table)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        write_text(json_file, json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")
        console.print(f"Report written to {json_file}")
    if plot is not None:
        from rcml_st.evaluation.plot import plot_report

        plot_report(report, catalog, plot, relations=plot_relation or None, seed=seed)
        console.print(f"Plot written to {plot}")


def _compare_names(paths: list[Path]) -> dict[str, Path]:
    from rcml_st.errors import UsageError
    from rcml_st.evaluation.methods import BASELINES, RCML

    names: dict[str, Path] = {}
    for path in paths:
        # A folder by its name; a Hub id (org/name, not a local folder) by the whole id.
        name = (path.name or path.resolve().name) if path.exists() else str(path)
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

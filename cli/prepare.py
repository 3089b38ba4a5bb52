"""`rcml-st prepare`: converters from public catalogue formats to the rcml-st data format."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rcml_st.cli._common import console, err_console, run_command

if TYPE_CHECKING:
    from rcml_st.data.amazon import ConversionSummary

app = typer.Typer(help="Convert public catalogue formats into rcml-st JSON Lines.", no_args_is_help=True)


class MetaFormat(str, Enum):
    """The Amazon metadata releases ``--format`` accepts."""

    auto = "auto"
    v2014 = "2014"
    v2018 = "2018"
    v2023 = "2023"


AMAZON_HELP = "\n\n".join(
    [
        "Convert Amazon product metadata into an rcml-st data file (JSON Lines).",
        "Reads the 2014 (Python dict literals), 2018 (JSON lines) and 2023 (JSONL keyed by parent_asin) "
        "releases, gzipped or not, streaming, with the format detected from the first valid record. "
        "Each product becomes an item: id = ASIN, text = title (+ brand, + a trimmed description), "
        "image = the file named by its ASIN in --images (else the item stays text-only), metadata = "
        "brand, price, categories.",
        "Amazon's relation lists become natural-language relations: also_bought / also_buy -> "
        "'also bought by the same customers', also_viewed / also_view -> 'viewed as an alternative to', "
        "bought_together -> 'frequently bought together', buy_after_viewing -> 'bought after viewing'. "
        "Targets not in the catalogue are dropped and counted. --cluster K groups the co-purchase edges "
        "into K relation types named from what the linked products share, as the RCML paper did.",
        "Examples:",
        "  rcml-st prepare amazon meta_Baby.json.gz --output baby.jsonl",
        "  rcml-st prepare amazon meta_Baby.json.gz -o baby.jsonl --images img/ --require-image --cluster 8",
        "  rcml-st prepare amazon meta_Baby_Products.jsonl -o baby.jsonl --relation-names names.json",
    ]
)


@app.command("amazon", help=AMAZON_HELP)
def amazon(
    meta_file: Annotated[
        Path,
        typer.Argument(
            help="Amazon metadata file: meta_<Category>.json.gz (2014, 2018) or meta_<Category>.jsonl (2023)",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The data file to write (.jsonl).", show_default=False)
    ],
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            help="Folder of product images named by ASIN (B000123.jpg; jpg, jpeg, png, webp, gif or bmp).",
        ),
    ] = None,
    require_image: Annotated[
        bool, typer.Option("--require-image", help="Leave out products without a local image (counted).")
    ] = False,
    fmt: Annotated[
        MetaFormat,
        typer.Option("--format", help="Metadata release; auto detects it from the first valid record."),
    ] = MetaFormat.auto,
    relation_names: Annotated[
        Path | None,
        typer.Option(
            "--relation-names",
            help='JSON object of raw relation name -> description, e.g. {"also_viewed": "similar style"}; '
            "null leaves a relation out.",
        ),
    ] = None,
    max_targets: Annotated[
        int,
        typer.Option(
            "--max-targets", min=0, help="Keep at most N targets per relation list of a product (0: all)."
        ),
    ] = 20,
    max_text_chars: Annotated[
        int, typer.Option("--max-text-chars", min=0, help="Cap on the length of an item's text (0: no cap).")
    ] = 300,
    cluster: Annotated[
        int | None,
        typer.Option(
            "--cluster",
            min=1,
            metavar="K",
            help="Group the co-purchase edges into K relation types, named from what linked products share.",
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed for --cluster (same seed, same relation types).")
    ] = 0,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid", help="Skip bad records (counted, first of each kind shown) instead of stopping."
        ),
    ] = False,
    boilerplate_min_brands: Annotated[
        int | None,
        typer.Option(
            "--boilerplate-min-brands",
            min=0,
            metavar="N",
            help="A description sentence found in products of N or more brands is boilerplate and left "
            "out of item texts (default: max(4, products/1000); 0 keeps every sentence).",
            show_default=False,
        ),
    ] = None,
) -> None:
    def body() -> None:
        from rcml_st.data.amazon import convert_amazon, load_relation_names

        names = load_relation_names(relation_names) if relation_names is not None else None
        with _progress() as on_progress:
            summary = convert_amazon(
                meta_file,
                output,
                images=images,
                require_image=require_image,
                fmt=None if fmt is MetaFormat.auto else fmt.value,
                names=names,
                max_targets=max_targets,
                max_text_chars=max_text_chars,
                cluster=cluster,
                seed=seed,
                skip_invalid=skip_invalid,
                boilerplate_min_groups=boilerplate_min_brands,
                on_progress=on_progress,
            )
        _print_summary(summary, cluster)

    run_command(body)


class _progress:
    """A rich progress bar on stderr, one task per pass, in bytes of the file read."""

    def __enter__(self):
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            # Gone when done: the summary table follows, and an error stays the only line on stderr.
            transient=True,
        )
        self.tasks: dict[str, int] = {}
        self.bar.start()
        return self.update

    def update(self, phase: str, done: int, total: int) -> None:
        task = self.tasks.get(phase)
        if task is None:
            task = self.tasks[phase] = self.bar.add_task(phase, total=total or None)
        self.bar.update(task, completed=done, total=total or None)

    def __exit__(self, *exc_info: object) -> None:
        self.bar.stop()


def _print_summary(summary: ConversionSummary, cluster: int | None) -> None:
    from rich.table import Table

    table = Table(
        title=f"{summary.input.name} ({summary.format} format) -> {summary.output}", title_justify="left"
    )
    table.add_column("", style="bold")
    table.add_column("count", justify="right")
    table.add_column("details")
    table.add_row("records read", f"{summary.records:,}", "")
    table.add_row("items written", f"{summary.items:,}", "")
    if summary.image_files is not None:
        table.add_row(
            "images found",
            f"{summary.images:,}",
            f"{summary.items - summary.images:,} items text-only; "
            f"{summary.image_files:,} image files in the folder",
        )
    for reason, count in summary.skipped.most_common():
        table.add_row("skipped", f"{count:,}", f"{reason} (first: {summary.skip_examples.get(reason, '')})")
    for description, count in sorted(summary.edges.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row("edges", f"{count:,}", description)
    for name, count in sorted(summary.dropped.items()):
        table.add_row("targets dropped", f"{count:,}", f"{name}: not in the catalogue")
    for name, count in sorted(summary.capped.items()):
        table.add_row("targets capped", f"{count:,}", f"{name}: over --max-targets")
    if summary.self_links:
        table.add_row(
            "self-links dropped", f"{summary.self_links:,}", "a product listed as related to itself"
        )
    if summary.boilerplate_sentences:
        table.add_row(
            "boilerplate",
            f"{summary.boilerplate_sentences:,}",
            f"sentences recurring across brands, removed from {summary.boilerplate_items:,} item texts",
        )
    if summary.prices_unparsed:
        table.add_row("prices not kept", f"{summary.prices_unparsed:,}", "not a single number (ranges, text)")
    console.print(table)

    if cluster:
        if not summary.relation_types:
            console.print("--cluster: no co-purchase edges in the catalogue, nothing to group.")
            return
        types = Table(title=f"relation types (--cluster {cluster})", title_justify="left")
        types.add_column("relation type")
        types.add_column("edges", justify="right")
        for name, size in summary.relation_types:
            types.add_row(name, f"{size:,}")
        console.print(types)

"""`rcml-st prepare`: converters from public catalogue formats to the rcml-st data format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rcml_st.cli._common import command, console, err_console, progress_bar, warn
from rcml_st.cli.options import JsonlOutputOption, SeedOption, SkipInvalidOption, with_help
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

# A progress bar per pass over a file, in bytes read.
_BYTES_COLUMNS = (
    TextColumn("{task.description}"),
    BarColumn(),
    DownloadColumn(),
    TransferSpeedColumn(),
    TimeElapsedColumn(),
    TimeRemainingColumn(),
)
ClusterOption = Annotated[
    int | None,
    typer.Option(
        "--cluster",
        min=1,
        metavar="K",
        help="Group the co-purchase edges into K relation types, named from what linked products share.",
    ),
]
ClusterSeedOption = with_help(SeedOption, "Seed for --cluster (same seed, same relation types).")

app = typer.Typer(help="Convert public catalogue formats into rcml-st JSON Lines.", no_args_is_help=True)


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
        "  rcml-st prepare amazon meta_Baby_Products.jsonl --reviews Baby_Products.jsonl.gz -o baby.jsonl "
        "--min-rating 4 --cluster 8",
        "The 2023 release has no co-purchase lists (bought_together is null): --reviews adds "
        "'reviewed by the same customers' from its review file (2014 and 2018 review files work too), "
        "verified purchases only unless --all-reviews, each product keeping the --max-targets products "
        "reviewed together with it most often by at least --min-co-reviews customers (2: one customer's "
        "two reviews are mostly noise) and --co-review-significance standard deviations more often than "
        "by chance (3), counted by DuckDB as in 'rcml-st prepare log'.",
    ]
)


@app.command("amazon")
@command(AMAZON_HELP)
def amazon(
    meta_file: Annotated[
        Path,
        typer.Argument(
            help="Amazon metadata file: meta_<Category>.json.gz (2014, 2018) or meta_<Category>.jsonl (2023)",
        ),
    ],
    output: JsonlOutputOption,
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
        Literal["auto", "2014", "2018", "2023"],
        typer.Option("--format", help="Metadata release; auto detects it from the first valid record."),
    ] = "auto",
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
    cluster: ClusterOption = None,
    seed: ClusterSeedOption = 0,
    skip_invalid: with_help(
        SkipInvalidOption, "Skip bad records (counted, first of each kind shown) instead of stopping."
    ) = False,
    reviews: Annotated[
        Path | None,
        typer.Option(
            "--reviews",
            help="Review file of the same category (.jsonl/.json, gzip or not): products reviewed by the "
            "same customers become related.",
        ),
    ] = None,
    all_reviews: Annotated[
        bool, typer.Option("--all-reviews", help="With --reviews: count unverified purchases too.")
    ] = False,
    min_rating: Annotated[
        float | None,
        typer.Option(
            "--min-rating", min=1, max=5, help="With --reviews: count only reviews rated at least this."
        ),
    ] = None,
    review_relation: Annotated[
        str, typer.Option("--review-relation", help="With --reviews: the relation description.")
    ] = "reviewed by the same customers",
    max_items_per_user: Annotated[
        int,
        typer.Option(
            "--max-items-per-user",
            min=2,
            help="With --reviews: a customer with more keeps the most recent ones.",
        ),
    ] = 100,
    min_co_reviews: Annotated[
        int,
        typer.Option(
            "--min-co-reviews",
            min=1,
            help="With --reviews: relate two products only when at least N customers reviewed both.",
        ),
    ] = 2,
    co_review_significance: Annotated[
        float,
        typer.Option(
            "--co-review-significance",
            min=0,
            metavar="Z",
            help="With --reviews: relate two products only when reviewed together Z standard deviations "
            "more often than customers reviewing at random would (0: off).",
        ),
    ] = 3.0,
    boilerplate_min_brands: Annotated[
        int | None,
        typer.Option(
            "--boilerplate-min-brands",
            min=0,
            metavar="N",
            help="A description sentence found in products of N or more brands is boilerplate and left "
            "out of item texts (default: max(4, products/1000); 0 keeps every sentence).",
        ),
    ] = None,
) -> None:
    from rcml_st.data.amazon import convert_amazon, load_relation_names

    names = load_relation_names(relation_names) if relation_names is not None else None
    # Only on a terminal, and gone when done: elsewhere (pipes, logs, tests) an error stays the only
    # line on stderr, and the summary table follows.
    with progress_bar(err_console.is_terminal, *_BYTES_COLUMNS, transient=True) as on_progress:
        summary = convert_amazon(
            meta_file,
            output,
            images=images,
            require_image=require_image,
            fmt=None if fmt == "auto" else fmt,
            names=names,
            max_targets=max_targets,
            max_text_chars=max_text_chars,
            cluster=cluster,
            seed=seed,
            skip_invalid=skip_invalid,
            boilerplate_min_groups=boilerplate_min_brands,
            reviews=reviews,
            verified_only=not all_reviews,
            min_rating=min_rating,
            review_relation=review_relation,
            max_items_per_user=max_items_per_user,
            min_co_reviews=min_co_reviews,
            co_review_significance=co_review_significance,
            on_progress=on_progress,
        )
    _print_rows(f"{summary.input.name} ({summary.format} format) -> {summary.output}", summary.rows())
    if cluster and not summary.relation_types:
        console.print("--cluster: no co-purchase edges in the catalogue, nothing to group.")
    elif cluster:
        types = Table(title=f"relation types (--cluster {cluster})", title_justify="left")
        types.add_column("relation type")
        types.add_column("edges", justify="right")
        for name, size in summary.relation_types:
            types.add_row(name, f"{size:,}")
        console.print(types)


LOG_HELP = "\n\n".join(
    [
        "Add relations from an interaction log to a catalogue: items the same customer, order or "
        "session touched become related.",
        "LOG has one (who, item, when) row per interaction: CSV or TSV with a header, or JSON Lines, "
        "gzip or not, or Parquet; one file or a quoted glob ('orders/*.parquet'). Name its columns with "
        "--user-column (a customer, order or session id), "
        "--item-column (ids of the --catalog items; other items are dropped and counted) and, for "
        "--window or to keep a capped user's most recent items, --time-column (Unix seconds or ms, "
        "or ISO 8601).",
        "Each item keeps its --top-k strongest partners by --score: count (customers who touched both), "
        "jaccard (count / customers who touched either) or pmi; pairs below --min-count are dropped. "
        "The edges are written under --relation (merged with the catalogue's own relations), or "
        "grouped by --cluster K into K relation types named from what the linked items share.",
        "DuckDB reads the catalogue and the log, keeps the top k and writes the output, on --threads cores, "
        "within --memory-mb (past it, it spills to a temporary folder next to --output); SciPy counts the "
        "pairs as a sparse product in up to 3/4 of --memory-mb more (the summary states the whole run's "
        "memory). Ties in the top k go to the higher count, "
        "then the item earlier in the catalogue. --max-items-per-user keeps one very active account "
        "from producing millions of pairs.",
        "Examples:",
        "  rcml-st prepare log orders.csv.gz --catalog items.jsonl -o items_rel.jsonl "
        "--user-column order_id --item-column sku",
        "  rcml-st prepare log sessions.jsonl --catalog items.jsonl -o out.jsonl --user-column session "
        "--item-column product --time-column ts --window 30m --relation 'viewed in the same session'",
        "  rcml-st prepare log 'orders/*.parquet' -c items.jsonl -o out.jsonl --user-column customer "
        "--item-column sku --memory-mb 4096 --threads 8",
        "  rcml-st prepare log purchases.tsv --catalog items.jsonl -o out.jsonl --score jaccard "
        "--min-count 2 --top-k 20 --cluster 8",
    ]
)


@app.command("log")
@command(LOG_HELP)
def log(
    log_file: Annotated[
        Path,
        typer.Argument(
            help="Interaction log: .csv, .tsv or .jsonl (gzip or not) or .parquet; a file or a quoted glob.",
        ),
    ],
    catalog: Annotated[
        Path,
        typer.Option(
            "--catalog",
            "-c",
            help="The rcml-st data file (.jsonl) whose items the log names.",
        ),
    ],
    output: JsonlOutputOption,
    user_column: Annotated[
        str, typer.Option("--user-column", help="Column of the customer, order or session id.")
    ] = "user_id",
    item_column: Annotated[str, typer.Option("--item-column", help="Column of the item id.")] = "item_id",
    time_column: Annotated[
        str | None, typer.Option("--time-column", help="Column of the time (seconds, ms or ISO 8601).")
    ] = None,
    log_format: Annotated[
        Literal["auto", "csv", "tsv", "jsonl", "parquet"],
        typer.Option("--log-format", help="Log format; auto reads it from the file name."),
    ] = "auto",
    relation: Annotated[
        str, typer.Option("--relation", help="The relation description of the new edges.")
    ] = "bought by the same customers",
    top_k: Annotated[int, typer.Option("--top-k", min=0, help="Partners kept per item (0: all).")] = 10,
    score: Annotated[
        Literal["count", "jaccard", "pmi"], typer.Option("--score", help="What ranks an item's partners.")
    ] = "count",
    min_count: Annotated[
        int, typer.Option("--min-count", min=1, help="Drop pairs touched together by fewer customers.")
    ] = 1,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            metavar="DURATION",
            help="Pair only items touched within this time of each other (90s, 30m, 2h, 7d); "
            "needs --time-column.",
        ),
    ] = None,
    max_items_per_user: Annotated[
        int,
        typer.Option(
            "--max-items-per-user", min=2, help="A customer with more items keeps only the most recent ones."
        ),
    ] = 100,
    memory_mb: Annotated[
        int, typer.Option("--memory-mb", min=64, help="DuckDB's memory limit; past it, it spills to disk.")
    ] = 1024,
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, help="DuckDB's threads (default: one per CPU core)."),
    ] = None,
    cluster: with_help(ClusterOption, "Group the new edges into K named relation types.") = None,
    seed: ClusterSeedOption = 0,
    skip_invalid: SkipInvalidOption = False,
) -> None:
    from rcml_st.data.interactions import LogColumns, add_log_relations, parse_duration
    from rcml_st.errors import UsageError

    seconds = None
    if window is not None:
        if time_column is None:
            raise UsageError("--window needs --time-column")
        try:
            seconds = parse_duration(window)
        except ValueError as exc:
            raise UsageError(f"--window: {exc}") from None
    summary = add_log_relations(
        catalog,
        log_file,
        output,
        columns=LogColumns(user=user_column, item=item_column, time=time_column),
        log_format=None if log_format == "auto" else log_format,
        relation=relation,
        top_k=top_k,
        score=score,
        min_count=min_count,
        window=seconds,
        max_items_per_user=max_items_per_user,
        memory_mb=memory_mb,
        threads=threads,
        cluster=cluster,
        seed=seed,
        skip_invalid=skip_invalid,
    )
    _print_rows(f"{summary.log.name} + {summary.catalog.name} -> {summary.output}", summary.rows())
    stats = summary.log_stats
    if stats.unknown_items * 2 > stats.rows:
        unknown = f" (e.g. {stats.unknown_example!r})" if stats.unknown_example else ""
        warn(
            f"{stats.unknown_items:,} of {stats.rows:,} log rows name items not in the catalogue"
            f"{unknown}: check --item-column and --catalog."
        )


def _print_rows(title: str, rows: list[tuple[str, str, str]]) -> None:
    """A closing report: ``(what, count, details)`` rows under a title."""
    table = Table(title=title, title_justify="left")
    table.add_column("", style="bold")
    table.add_column("count", justify="right")
    table.add_column("details")
    for row in rows:
        table.add_row(*row)
    console.print(table)

"""`rcml-st prepare`: converters from public catalogue formats to the rcml-st data format."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rcml_st.cli._common import console, err_console, run_command, warn
from rcml_st.cli.options import JsonlOutputOption, SeedOption, SkipInvalidOption, with_help

if TYPE_CHECKING:
    from rcml_st.data.amazon import ConversionSummary
    from rcml_st.data.interactions import LogRelationsSummary

ClusterSeedOption = with_help(SeedOption, "Seed for --cluster (same seed, same relation types).")

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


@app.command("amazon", help=AMAZON_HELP)
def amazon(
    meta_file: Annotated[
        Path,
        typer.Argument(
            help="Amazon metadata file: meta_<Category>.json.gz (2014, 2018) or meta_<Category>.jsonl (2023)",
            show_default=False,
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
                reviews=reviews,
                verified_only=not all_reviews,
                min_rating=min_rating,
                review_relation=review_relation,
                max_items_per_user=max_items_per_user,
                min_co_reviews=min_co_reviews,
                co_review_significance=co_review_significance,
                on_progress=on_progress,
            )
        _print_summary(summary, cluster)

    run_command(body)


class LogFormat(str, Enum):
    """The interaction log formats ``--log-format`` accepts."""

    auto = "auto"
    csv = "csv"
    tsv = "tsv"
    jsonl = "jsonl"
    parquet = "parquet"


class Score(str, Enum):
    """How ``--score`` ranks an item's partners."""

    count = "count"
    jaccard = "jaccard"
    pmi = "pmi"


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


@app.command("log", help=LOG_HELP)
def log(
    log_file: Annotated[
        Path,
        typer.Argument(
            help="Interaction log: .csv, .tsv or .jsonl (gzip or not) or .parquet; a file or a quoted glob.",
            show_default=False,
        ),
    ],
    catalog: Annotated[
        Path,
        typer.Option(
            "--catalog",
            "-c",
            help="The rcml-st data file (.jsonl) whose items the log names.",
            show_default=False,
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
        LogFormat, typer.Option("--log-format", help="Log format; auto reads it from the file name.")
    ] = LogFormat.auto,
    relation: Annotated[
        str, typer.Option("--relation", help="The relation description of the new edges.")
    ] = "bought by the same customers",
    top_k: Annotated[int, typer.Option("--top-k", min=0, help="Partners kept per item (0: all).")] = 10,
    score: Annotated[Score, typer.Option("--score", help="What ranks an item's partners.")] = Score.count,
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
        typer.Option(
            "--threads", min=1, help="DuckDB's threads (default: one per CPU core).", show_default=False
        ),
    ] = None,
    cluster: Annotated[
        int | None,
        typer.Option(
            "--cluster", min=1, metavar="K", help="Group the new edges into K named relation types."
        ),
    ] = None,
    seed: ClusterSeedOption = 0,
    skip_invalid: SkipInvalidOption = False,
) -> None:
    def body() -> None:
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
            log_format=None if log_format is LogFormat.auto else log_format.value,
            relation=relation,
            top_k=top_k,
            score=score.value,
            min_count=min_count,
            window=seconds,
            max_items_per_user=max_items_per_user,
            memory_mb=memory_mb,
            threads=threads,
            cluster=cluster,
            seed=seed,
            skip_invalid=skip_invalid,
        )
        _print_log_summary(summary)

    run_command(body)


def _print_log_summary(summary: LogRelationsSummary) -> None:
    from rich.table import Table

    stats, counting = summary.log_stats, summary.counting
    table = Table(
        title=f"{summary.log.name} + {summary.catalog.name} -> {summary.output}", title_justify="left"
    )
    table.add_column("", style="bold")
    table.add_column("count", justify="right")
    table.add_column("details")
    table.add_row("log rows read", f"{stats.rows:,}", "")
    for reason, count in stats.skipped.most_common():
        table.add_row(
            "rows skipped", f"{count:,}", f"{reason} (first: {stats.skip_examples.get(reason, '')})"
        )
    unknown = f" (e.g. {stats.unknown_example!r})" if stats.unknown_example else ""
    table.add_row("rows dropped", f"{stats.unknown_items:,}", f"item not in the catalogue{unknown}")
    table.add_row(
        "customers", f"{counting.users:,}", f"{counting.capped_users:,} cut to --max-items-per-user"
    )
    table.add_row("pairs counted", f"{counting.pairs:,}", "distinct (item, partner) pairs")
    for name, count in summary.edges.items():
        table.add_row("edges", f"{count:,}", name)
    table.add_row("items written", f"{summary.items:,}", "")
    table.add_row("memory bound", "", summary.memory_bound)
    console.print(table)
    if stats.unknown_items * 2 > stats.rows:
        warn(
            f"{stats.unknown_items:,} of {stats.rows:,} log rows name items not in the catalogue"
            f"{unknown}: check --item-column and --catalog."
        )


class _progress:
    """A rich progress bar on stderr, one task per pass, in bytes of the file read.

    Only on a terminal: elsewhere (pipes, logs, tests) it stays silent, so that an error is the
    only line on stderr.
    """

    def __enter__(self):
        self.bar = None
        self.tasks: dict[str, int] = {}
        if not err_console.is_terminal:
            return lambda phase, done, total: None
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
        self.bar.start()
        return self.update

    def update(self, phase: str, done: int, total: int) -> None:
        assert self.bar is not None
        task = self.tasks.get(phase)
        if task is None:
            task = self.tasks[phase] = self.bar.add_task(phase, total=total or None)
        self.bar.update(task, completed=done, total=total or None)

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
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
    if summary.reviews is not None:
        stats, counting = summary.review_stats, summary.review_counting
        table.add_row("reviews read", f"{stats.rows:,}", summary.reviews.name)
        for reason, count in stats.skipped.most_common():
            table.add_row("reviews left out", f"{count:,}", reason)
        table.add_row("reviews dropped", f"{stats.unknown_items:,}", "product not in the catalogue")
        table.add_row(
            "customers", f"{counting.users:,}", f"{counting.capped_users:,} cut to --max-items-per-user"
        )
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

"""`rcml-st index`: encode a data file under every relation and upsert the vectors into Qdrant."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rcml_st.cli._common import (
    Device,
    check_model_dir,
    command,
    err_console,
    load_model,
    progress_bar,
    resolve_device,
    say,
    warn,
    warnings_to_stderr,
)
from rcml_st.cli.options import (
    DEFAULT_RETRY_TIMEOUT,
    ApiKeyOption,
    CollectionOption,
    DataArgument,
    DeviceOption,
    GrpcPortOption,
    ModelOption,
    ProgressOption,
    QdrantPathOption,
    QdrantTarget,
    QdrantUrlOption,
    RetryTimeoutOption,
    SkipInvalidOption,
    TrustRemoteCodeOption,
    with_help,
)
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

INDEX_HELP = "\n\n".join(
    [
        "Encode every item of a data file under every relation and upsert the vectors into Qdrant.",
        "One point per (item, relation) in one collection, with named vectors text, image (each when the "
        "item has it) and item (fused), and a payload with item_id, relation, text, image and the item's "
        "metadata. Point ids are derived from (item id, relation): re-running overwrites, never doubles, "
        "so a run that failed part-way is completed by running it again. Each batch of items goes through "
        "the backbone once, then under all relations at once. The run ends by waiting for every write and "
        "checking that each relation has exactly one point per item.",
        "Without --qdrant-url the vectors go to an embedded store in --qdrant-path (fine for demos and a "
        "few tens of thousands of points); with it, to a Qdrant server (--api-key or QDRANT_API_KEY for a "
        "secured one, https works). Transient failures are retried for up to --retry-timeout seconds.",
        "Memory: the data file is validated in one streaming pass (8 bytes per item), then read again "
        "item by item; a few batches of vectors are held at a time, however big the catalogue.",
        "Storage: --vectors item stores only the fused vector; --quantization int8 (or binary) keeps a "
        "quantized copy in RAM and the originals on disk, and searches rescore with them.",
        "Parallel: --shard I/N (or RANK/WORLD_SIZE from torchrun) indexes the items whose id hashes to "
        "slice I of N; each worker checks its own points, and --verify-only checks the exact counts of "
        "the whole catalogue once all are done. Re-running a slice is safe.",
        "Examples:",
        "  rcml-st index test.jsonl --model rcml-baby",
        "  rcml-st index data.jsonl -m rcml-baby -r 'matches in colour' -r 'made by the same brand'",
        "  rcml-st index data.jsonl -m rcml-baby --qdrant-url http://localhost:6333 --collection baby",
        "  QDRANT_API_KEY=... rcml-st index data.jsonl -m rcml-baby --qdrant-url https://xyz.cloud.qdrant.io "
        "--shards 4 --replication-factor 2",
        "  rcml-st index big.jsonl -m rcml-baby --qdrant-url URL --vectors item --quantization int8",
        "  rcml-st index big.jsonl -m rcml-baby --qdrant-url URL --shard 0/4   (one of 4 workers; then:)",
        "  rcml-st index big.jsonl -m rcml-baby --qdrant-url URL --verify-only",
    ]
)


# A progress bar over items (rcml_st.index.pipeline.ProgressCallback): items done, points written.
_COLUMNS = (
    TextColumn("[progress.description]{task.description}"),
    BarColumn(),
    MofNCompleteColumn(),
    TextColumn("items, {task.fields[points]:,} points"),
    TimeElapsedColumn(),
)


@command(INDEX_HELP)
def index(
    data: with_help(DataArgument, "The data file (.jsonl) whose items to index."),
    model: ModelOption,
    qdrant_url: QdrantUrlOption = None,
    api_key: ApiKeyOption = None,
    grpc_port: GrpcPortOption = None,
    qdrant_path: QdrantPathOption = None,
    collection: CollectionOption = "rcml",
    relation: Annotated[
        list[str] | None,
        typer.Option(
            "--relation",
            "-r",
            metavar="TEXT",
            help="A relation description to index (repeatable; default: the model's relation vocabulary).",
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=1,
            metavar="N",
            help="Items per encoding batch (each writes items x relations points).",
        ),
    ] = 64,
    shards: Annotated[
        int | None,
        typer.Option(
            "--shards",
            min=1,
            metavar="N",
            help="Shards of a new collection on a Qdrant cluster (fixed at creation).",
        ),
    ] = None,
    replication_factor: Annotated[
        int | None,
        typer.Option(
            "--replication-factor",
            min=1,
            metavar="N",
            help="Copies of each shard of a new collection on a Qdrant cluster.",
        ),
    ] = None,
    vectors: Annotated[
        str | None,
        typer.Option(
            "--vectors",
            metavar="NAMES",
            help="Named vectors to store, comma-separated, of text, image, item (default: all). "
            "'item' alone is a third of the memory; searches use --modality item then.",
        ),
    ] = None,
    quantization: Annotated[
        str,
        typer.Option(
            "--quantization",
            metavar="none|int8|binary",
            help="Keep a quantized copy in RAM for search (int8: 4x smaller; binary: 32x, for 512+ dims), "
            "the float32 originals on disk; searches rescore with the originals.",
        ),
    ] = "none",
    vectors_on_disk: Annotated[
        bool | None,
        typer.Option(
            "--vectors-on-disk/--vectors-in-ram",
            help="Where the float32 vectors live (default: on disk when quantized, else in RAM).",
        ),
    ] = None,
    payload_in_ram: Annotated[
        bool, typer.Option("--payload-in-ram", help="Keep the payload in RAM (default: on disk).")
    ] = False,
    hnsw_m: Annotated[
        int | None,
        typer.Option("--hnsw-m", min=2, metavar="N", help="HNSW edges per node (Qdrant: 16)."),
    ] = None,
    hnsw_ef_construct: Annotated[
        int | None,
        typer.Option(
            "--hnsw-ef-construct",
            min=4,
            metavar="N",
            help="HNSW build effort (Qdrant: 100).",
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="I/N",
            help="Index only slice I of N of the items (by a hash of the id), for N parallel workers "
            "(default: RANK/WORLD_SIZE when a launcher sets them).",
        ),
    ] = None,
    verify_only: Annotated[
        bool,
        typer.Option(
            "--verify-only",
            help="Write nothing: check that every relation has exactly one point per item of the file "
            "(after parallel workers). The model is only loaded when no --relation is given.",
        ),
    ] = False,
    overlap: Annotated[
        bool | None,
        typer.Option(
            "--overlap/--sequential",
            help="Encode the next batch while the previous one is written, or one after the other "
            "(default: overlap when the model runs on a GPU, sequential on CPU).",
        ),
    ] = None,
    retry_timeout: RetryTimeoutOption = DEFAULT_RETRY_TIMEOUT,
    skip_invalid: SkipInvalidOption = False,
    device: DeviceOption = "auto",
    progress: ProgressOption = True,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Write into a collection that another model indexed (its points this run does not "
            "rewrite keep the other model's vectors); without it that is an error.",
        ),
    ] = False,
    trust_remote_code: TrustRemoteCodeOption = False,
) -> None:
    target = QdrantTarget(qdrant_url, api_key, grpc_port, qdrant_path, collection, retry_timeout)
    from rcml_st.data import Shard, stream_catalog
    from rcml_st.errors import UsageError

    relations = list(relation or [])
    slice_ = Shard.parse(shard) if shard is not None else Shard.from_env()
    if slice_ is not None and slice_.whole:
        slice_ = None
    if verify_only and slice_ is not None and shard is not None:
        raise UsageError("--verify-only checks the whole catalogue; leave out --shard")
    # Data first, streamed (no torch yet): a bad record fails in about a second, before any model
    # is loaded or server reached, and the file is never held in memory.
    items = stream_catalog(data, skip_invalid=skip_invalid, shard=None if verify_only else slice_)
    if items.skip_summary():
        warn(items.skip_summary())
    if not (verify_only and relations):  # a wrong --model fails now, not after importing qdrant-client
        check_model_dir(model, trust_remote_code)

    from rcml_st.index import Layout, index_catalog, verify_index
    from rcml_st.index.pipeline import resolve_relations

    layout = Layout(
        vectors=Layout.parse_vectors(vectors),
        quantization=quantization,
        on_disk=vectors_on_disk,
        on_disk_payload=not payload_in_ram,
        hnsw_m=hnsw_m,
        hnsw_ef_construct=hnsw_ef_construct,
    )
    if verify_only:
        chosen = relations or resolve_relations(load_model(model, "cpu", trust_remote_code), None)
        with warnings_to_stderr(), target.open(must_exist=True) as store:
            counts = verify_index(store, items.items, resolve_relations(None, chosen))  # type: ignore[arg-type]
        listing = ", ".join(f"{relation!r} {count}" for relation, count in counts.items())
        say(f"Verified collection {collection!r} at {store.target}: {items.items} items, {listing}")
        return

    rcml = load_model(model, _device(device, slice_ is not None and shard is None), trust_remote_code)
    chosen = resolve_relations(rcml, relations)
    if slice_ is not None:
        err_console.print(f"Slice {slice_} of {data}: {len(items)} of {items.items} items", markup=False)
    with warnings_to_stderr(), target.open() as store, progress_bar(progress, *_COLUMNS) as update:
        noun = "relation" if len(chosen) == 1 else "relations"
        label = f"Indexing x {len(chosen)} {noun}"
        update(label, 0, len(items), points=0)
        report = index_catalog(
            rcml,
            items,
            store,
            relations=chosen,
            batch_size=batch_size,
            progress=lambda done, total, points: update(label, done, total, points=points),
            shards=shards,
            replication_factor=replication_factor,
            layout=layout,
            overlap=overlap,
            verify="points" if slice_ is not None else "counts",
            force=force,
        )
    say(report.summary())
    say(f"{report.points_per_second:,.0f} points/s over {report.seconds:.1f} s")
    if slice_ is not None:
        say(
            "When every slice is done, check the whole catalogue with the same command and --verify-only "
            "(without --shard)."
        )


def _device(device: Device, from_launcher: bool) -> str | None:
    """``--device``; under a launcher (torchrun) with ``auto``, the GPU of this process's LOCAL_RANK."""
    local_rank = os.environ.get("LOCAL_RANK", "").strip()
    if device == "auto" and from_launcher and local_rank.isdigit():
        import torch

        if torch.cuda.is_available():
            return f"cuda:{int(local_rank) % torch.cuda.device_count()}"
    return resolve_device(device)

"""`rcml-st search`: the indexed items closest to an item, a text or an image under one relation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rcml_st.cli._common import (
    check_model_dir,
    command,
    console,
    load_model,
    resolve_device,
    warnings_to_stderr,
)
from rcml_st.cli.options import (
    DEFAULT_RETRY_TIMEOUT,
    ApiKeyOption,
    CollectionOption,
    DeviceOption,
    GrpcPortOption,
    ModelOption,
    QdrantPathOption,
    QdrantTarget,
    QdrantUrlOption,
    RetryTimeoutOption,
    TrustRemoteCodeOption,
)

SEARCH_HELP = "\n\n".join(
    [
        "Find the indexed items closest to a query under one relation (from rcml-st index).",
        "Give exactly one query: --id (an indexed item: its own stored vectors are the query and it is "
        "left out of the results), --text or --image (encoded with the model under --relation). Only "
        "points of that relation are searched. --modality chooses which stored vector to compare with: "
        "item (the fused text+image vector, default), text or image.",
        "Prints a table (rank, score, id, text), or with --json a list of {rank, score, id, text, payload}.",
        "Examples:",
        "  rcml-st search -m rcml-baby --relation 'used together for infant feeding' --id B0001",
        "  rcml-st search -m rcml-baby -r 'matches in colour' --text 'sage green nursing pillow' --limit 5",
        "  rcml-st search -m rcml-baby -r 'matches in colour' --image photo.jpg --modality image --json",
        "  rcml-st search -m rcml-baby -r 'made by the same brand' --id B0001 --qdrant-url http://localhost:6333",
    ]
)


@command(SEARCH_HELP)
def search(
    model: ModelOption,
    relation: Annotated[
        str,
        typer.Option(
            "--relation",
            "-r",
            metavar="TEXT",
            help="The relation description to search under, exactly as indexed.",
        ),
    ],
    item_id: Annotated[
        str | None,
        typer.Option("--id", metavar="ID", help="Query by an indexed item's id."),
    ] = None,
    text: Annotated[str | None, typer.Option("--text", metavar="TEXT", help="Query by text.")] = None,
    image: Annotated[
        Path | None,
        typer.Option("--image", metavar="PATH", help="Query by an image file."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-k", min=1, help="Number of results.")] = 10,
    modality: Annotated[
        Literal["item", "text", "image"],
        typer.Option("--modality", help="The named vector to search: item (fused), text or image."),
    ] = "item",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON instead of a table.")
    ] = False,
    qdrant_url: QdrantUrlOption = None,
    api_key: ApiKeyOption = None,
    grpc_port: GrpcPortOption = None,
    qdrant_path: QdrantPathOption = None,
    collection: CollectionOption = "rcml",
    retry_timeout: RetryTimeoutOption = DEFAULT_RETRY_TIMEOUT,
    device: DeviceOption = "auto",
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Search with --model even when the collection records that another model indexed it.",
        ),
    ] = False,
    trust_remote_code: TrustRemoteCodeOption = False,
) -> None:
    target = QdrantTarget(qdrant_url, api_key, grpc_port, qdrant_path, collection, retry_timeout)

    from rcml_st.errors import InputDataError, UsageError

    queries = (("--id", item_id), ("--text", text), ("--image", image))
    given = [name for name, value in queries if value is not None]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        raise UsageError(f"give exactly one query: --id ID, --text TEXT or --image PATH (got {what})")
    if not relation.strip():
        raise UsageError("--relation must be a non-empty text")
    if text is not None and not text.strip():
        raise UsageError("--text must not be empty")
    if image is not None and not image.is_file():
        raise InputDataError("image not found" if not image.exists() else "not a file", path=str(image))

    if item_id is not None:
        # The item's stored vectors are the query: the model is not needed, only checked.
        check_model_dir(model, trust_remote_code)
        rcml = None
    else:
        rcml = load_model(model, resolve_device(device), trust_remote_code)
    # Imported after the cheap checks: qdrant-client alone takes a second or two to import.
    from rcml_st.index import search_index

    with warnings_to_stderr(), target.open(must_exist=True) as store:
        hits = search_index(
            rcml,
            store,
            relation,
            item_id=item_id,
            text=text,
            image=image,
            using=modality,
            limit=limit,
            force=force,
        )
    if as_json:
        import json

        typer.echo(json.dumps([hit.to_dict() for hit in hits], indent=2, ensure_ascii=False))
        return
    from rich.table import Table

    query = item_id or text or str(image)
    table = Table(
        title=f"{given[0]} {query!r} under {relation!r} ({modality} vectors)",
        title_justify="left",
        caption=None if hits else "no results",
        caption_justify="left",
    )
    table.add_column("rank", justify="right")
    table.add_column("score", justify="right")
    table.add_column("id", no_wrap=True)
    table.add_column("text")
    for hit in hits:
        shown = hit.text if hit.text is not None else f"(image) {hit.payload.get('image', '')}"
        table.add_row(str(hit.rank), f"{hit.score:.4f}", hit.item_id, shown)
    console.print(table)

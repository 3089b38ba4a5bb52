"""`rcml-st serve`: relation-conditioned search over HTTP, with a page to look at the neighbourhoods."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rcml_st.cli._common import (
    check_model_dir,
    command,
    load_model,
    resolve_device,
    say,
    warn,
    warnings_to_stderr,
)
from rcml_st.cli.options import (
    CollectionOption,
    DeviceOption,
    GrpcPortOption,
    ModelOption,
    QdrantPathOption,
    QdrantTarget,
    QdrantUrlOption,
    RetryTimeoutOption,
    with_help,
)

API_KEY_ENV = "RCML_ST_API_KEY"
LOOPBACK = ("127.0.0.1", "localhost", "::1")

SERVE_HELP = "\n\n".join(
    [
        "Serve an index (from rcml-st index or rcml-st demo) over HTTP, with a page to look at it.",
        "Open http://HOST:PORT/ in a browser: pick or search an item, type a text or drop a photo, and see "
        "its neighbours under every chosen relation side by side, with images and scores; click a "
        "neighbour to make it the query. The page is shipped in the package and works offline.",
        "The HTTP API (schema at /openapi.json; its page /docs loads from a CDN, blank offline): "
        "/api/search by item id, text (GET) or uploaded image (POST), several relations at once (the "
        "model runs once per query), with limit, modality and Qdrant payload filters; /api/encode for "
        "embeddings under relations; /api/relations; /api/items?contains=, /api/item, /api/image; "
        "/api/health (503 while Qdrant does not answer). Text and image queries of concurrent "
        "requests are encoded together in micro-batches.",
        "Loopback only by default (--host 0.0.0.0 to listen on every interface: set --api-key then). "
        "--api-key KEY (or RCML_ST_API_KEY) makes every /api route but health need the header "
        "X-API-Key: KEY. The embedded store (--qdrant-path) is locked while it is served, and it searches "
        "in Python (every point's relation is checked per search): fine for the demo, but serve many users "
        "from a Qdrant server (--qdrant-url). --api-key here protects this service; the Qdrant server's "
        "own key is --qdrant-api-key (QDRANT_API_KEY).",
        "Examples:",
        "  rcml-st serve --model rcml-demo/model --qdrant-path rcml-demo/qdrant",
        "  rcml-st serve -m rcml-baby --qdrant-url http://localhost:6333 --collection baby --port 8080",
        "  RCML_ST_API_KEY=secret rcml-st serve -m rcml-baby --qdrant-url URL --host 0.0.0.0",
    ]
)


@command(SERVE_HELP)
def serve(
    model: ModelOption,
    qdrant_url: QdrantUrlOption = None,
    qdrant_api_key: Annotated[
        str | None,
        typer.Option(
            "--qdrant-api-key",
            metavar="KEY",
            envvar="QDRANT_API_KEY",
            help="The Qdrant server's API key (also read from QDRANT_API_KEY).",
        ),
    ] = None,
    grpc_port: GrpcPortOption = None,
    qdrant_path: QdrantPathOption = None,
    collection: CollectionOption = "rcml",
    host: Annotated[str, typer.Option("--host", help="The address to listen on (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="The port to listen on.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            metavar="KEY",
            envvar=API_KEY_ENV,
            help=f"Require this key for the HTTP API (header X-API-Key; also read from {API_KEY_ENV}).",
        ),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", min=0.001, help="The largest image upload accepted, in MiB.")
    ] = 10.0,
    max_batch: Annotated[
        int, typer.Option("--max-batch", min=1, help="The most queries encoded together.")
    ] = 32,
    retry_timeout: with_help(
        RetryTimeoutOption, "How long a request retries a Qdrant that does not answer before it gets a 503."
    ) = 3.0,
    device: DeviceOption = "auto",
) -> None:
    # Before torch is imported. Requests search on the CPU between encoder batches; OpenMP
    # threads spinning between batches take those cycles (measured with benchmarks/serve_load.py
    # on 2 busy cores: 8 concurrent text queries p99 4.2 s with the default spin, 1.2 s passive).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    target = QdrantTarget(qdrant_url, qdrant_api_key, grpc_port, qdrant_path, collection, retry_timeout)
    from rcml_st.errors import ServiceError, UsageError

    try:
        import uvicorn

        from rcml_st.serve.app import create_app
    except ImportError as exc:
        raise UsageError(
            f"rcml-st serve needs the serve extra ({exc.name} is missing): pip install 'rcml-st[serve]'"
        ) from None
    if api_key is not None and not api_key.strip():
        raise UsageError(f"--api-key ({API_KEY_ENV}) must not be empty")
    if host not in LOOPBACK and api_key is None:
        warn(f"listening on {host} without --api-key: anyone who can reach this port can query the index")
    check_model_dir(model)
    from rcml_st.index.ownership import check_search_model, model_fingerprint
    from rcml_st.serve import SearchService

    # The store first: one locked by another process (the demo, an indexer) fails in a second.
    with warnings_to_stderr():
        store = target.open(must_exist=True)
    try:
        rcml = load_model(model, resolve_device(device))
    except BaseException:
        store.close()
        raise
    service = SearchService(rcml, store, max_batch=max_batch)
    try:
        try:
            service.check()
            # The collection records the model that indexed it: serving it with another is an error.
            check_search_model(store, model_fingerprint(rcml))
            relations = service.relations()
            listing = f"{len(relations)} relations, " + ", ".join(f"{r!r} {n}" for r, n in relations.items())
        except ServiceError as exc:  # Qdrant down now: serve anyway, /api/health says 503 until it is back
            listing = "Qdrant does not answer yet"
            warn(str(exc))
        app = create_app(service, api_key=api_key, max_upload_bytes=int(max_upload_mb * 2**20))
        shown = f"[{host}]" if ":" in host else host
        say(
            f"Serving collection {target.collection!r} at {store.target} ({listing})\n"
            f"  page: http://{shown}:{port}/   API: http://{shown}:{port}/docs   (Ctrl-C to stop)"
        )
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        with warnings_to_stderr():  # Qdrant retries while serving: one `Warning:` line each
            uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        service.close()

"""The HTTP API and the page of ``rcml-st serve`` (FastAPI).

Routes (all JSON; errors are ``{"error": "one line"}`` with a 4xx status, or 503 when Qdrant fails):

- ``GET /``: the page (static HTML and JavaScript shipped in the package; works offline).
- ``GET /api/health``: whether Qdrant answers (200, or 503 while it does not). No API key needed.
- ``GET /api/relations``: the indexed relations with their point counts.
- ``GET /api/search?relation=R&relation=R2&id=ID|text=TEXT&limit=10&modality=item&filter=JSON``:
  the neighbours under each relation (all indexed relations when none is named).
- ``POST /api/search`` (multipart form: ``image`` file, ``relation``, ``limit``, ``modality``, ``filter``):
  the same for an uploaded image.
- ``POST /api/encode`` (JSON ``{"items": [{"text": ..., "image": BASE64}], "relations": [...]}``):
  embeddings under relations, for other services.
- ``GET /api/items?contains=TEXT&limit=20``: indexed items whose id is TEXT or whose text contains it.
- ``GET /api/item?id=ID``: an item's payload. ``GET /api/image?id=ID``: its image file.
- ``GET /docs``: the OpenAPI page (it loads its script from a CDN: blank offline);
  ``/openapi.json`` is the schema.

With an API key set, every ``/api`` route but health needs it, as ``X-API-Key: KEY`` or
``Authorization: Bearer KEY``.

Example:
    >>> from rcml_st.serve import SearchService, create_app
    >>> app = create_app(SearchService(model, index), api_key=None)  # doctest: +SKIP
    >>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import binascii
import hmac
import io
import logging
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from rcml_st.errors import RCMLError
from rcml_st.index import VECTOR_NAMES, Hit
from rcml_st.serve.service import MAX_LIMIT, SearchService, service_error_status

logger = logging.getLogger("rcml_st.serve")

STATIC_DIR = Path(str(files("rcml_st.serve") / "static"))
#: Upload limit by default (``--max-upload-mb``).
DEFAULT_MAX_UPLOAD = 10 * 2**20
#: Room for the multipart framing and form fields around an uploaded file.
_FORM_OVERHEAD = 64 * 2**10


class ApiError(Exception):
    """A bad request with its status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class EncodeItem(BaseModel):
    """One item to encode: a text, an image (base64 of the file's bytes), or both."""

    text: str | None = Field(None, description="The item's text.")
    image: str | None = Field(None, description="The item's image file, base64-encoded (PNG, JPEG, ...).")


class EncodeRequest(BaseModel):
    """Items to encode under relations."""

    items: list[EncodeItem] = Field(..., min_length=1, max_length=256)
    relations: list[str] = Field(..., min_length=1, max_length=64)


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": _one_line(message)}, status_code=status)


def hit_json(hit: Hit) -> dict[str, Any]:
    """A hit as the API gives it: the item's image path is replaced by its URL on this service."""
    out = hit.to_dict()
    out["image"] = image_url(hit.item_id) if hit.payload.get("image") else None
    out["payload"] = _public_payload(hit.payload)
    return out


def image_url(item_id: str) -> str:
    """The URL path of an item's image on this service."""
    from urllib.parse import quote

    return f"/api/image?id={quote(item_id, safe='')}"


def _public_payload(payload: dict[str, Any]) -> dict[str, Any]:
    out = dict(payload)
    if out.get("image"):
        out["image"] = image_url(str(out.get("item_id", "")))
    return out


def _parse_filter(text: str | None) -> Any:
    if text is None or not text.strip():
        return None
    from pydantic import ValidationError
    from qdrant_client.models import Filter

    try:
        return Filter.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "filter"
        raise ApiError(400, f"filter is not a Qdrant filter ({where}: {first.get('msg')})") from None


def _decode_image(data: bytes, max_bytes: int, what: str = "the uploaded file") -> Any:
    from PIL import Image, UnidentifiedImageError

    from rcml_st.data import load_image

    if len(data) > max_bytes:
        raise ApiError(413, f"{what} is too large: the limit is {_size(max_bytes)}")
    if not data:
        raise ApiError(400, f"{what} is empty")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            return load_image(opened)
    except Image.DecompressionBombError:
        raise ApiError(413, f"{what} has too many pixels to be decoded safely") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ApiError(415, f"{what} is not an image PIL can read (PNG, JPEG, WebP, GIF, BMP ...)") from None


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n} bytes"


def _results(query: dict[str, Any], modality: str, limit: int, found: dict[str, list[Hit]]) -> dict[str, Any]:
    # Returned as a JSONResponse: plain JSON values already, no need for FastAPI's encoder pass.
    return {
        "query": query,
        "modality": modality,
        "limit": limit,
        "results": [{"relation": r, "hits": [hit_json(h) for h in hits]} for r, hits in found.items()],
    }


def create_app(
    service: SearchService,
    api_key: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
) -> FastAPI:
    """The FastAPI application over a :class:`SearchService`.

    Args:
        service: what answers the requests.
        api_key: when set, every ``/api`` route except ``/api/health`` needs it.
        max_upload_bytes: the largest uploaded image (and the largest request body, plus framing).

    Returns:
        The application (run it with uvicorn).
    """
    app = FastAPI(
        title="rcml-st serve",
        summary="Relation-conditioned multimodal search over a Qdrant index",
        version=_version(),
    )
    app.state.service = service

    def require_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if given is None and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if given is None or not hmac.compare_digest(given.encode(), api_key.encode()):
            raise ApiError(401, "missing or wrong API key: send it as the X-API-Key header")

    keyed = [Depends(require_key)]

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None:
            try:
                too_big = int(length) > max_upload_bytes + _FORM_OVERHEAD
            except ValueError:
                return _error(400, "bad Content-Length header")
            if too_big:
                return _error(413, f"the request is too large: the upload limit is {_size(max_upload_bytes)}")
        return await call_next(request)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(RCMLError)
    async def library_error(_request: Request, exc: RCMLError) -> JSONResponse:
        status = service_error_status(exc)
        if status >= 500:
            logger.warning("%s", exc)
        return _error(status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(part) for part in first.get("loc", ()) if part not in ("query", "body", "path", "form")]
        where = ".".join(loc) or "request"
        message = first.get("msg", "invalid request")
        if first.get("type") == "missing":
            message = "is required"
        return _error(422, f"{where}: {message}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    # -- page -----------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # -- API ------------------------------------------------------------------------------------

    @app.get("/api/health", tags=["service"], summary="Whether Qdrant answers (503 while it does not)")
    def health() -> JSONResponse:
        state = service.health()
        return JSONResponse(state, status_code=200 if state["ok"] else 503)

    @app.get("/api/relations", tags=["index"], dependencies=keyed, summary="Indexed relations and counts")
    def relations() -> dict[str, Any]:
        counts = service.relations(refresh=True)
        return {
            "collection": service.index.collection,
            "relations": [{"relation": r, "points": n} for r, n in counts.items()],
        }

    @app.get("/api/items", tags=["index"], dependencies=keyed, summary="Find indexed items by id or text")
    def items(
        contains: Annotated[
            str | None, Query(max_length=200, description="An exact id or a piece of text.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    ) -> dict[str, Any]:
        found = service.find_items(contains, limit)
        return {"items": [_item_json(hit.payload) for hit in found]}

    @app.get("/api/item", tags=["index"], dependencies=keyed, summary="An indexed item's payload")
    def item(id: Annotated[str, Query(min_length=1, max_length=500, description="The item id.")]) -> dict:
        return _item_json(service.item(id))

    @app.get("/api/image", tags=["index"], dependencies=keyed, summary="An indexed item's image file")
    def image(
        id: Annotated[str, Query(min_length=1, max_length=500, description="The item id.")],
    ) -> FileResponse:
        found = service.image_file(id)
        return FileResponse(
            found.path, media_type=found.media_type, headers={"Cache-Control": "max-age=3600"}
        )

    @app.get("/api/search", tags=["search"], dependencies=keyed, summary="Search by item id or text")
    def search(
        relation: Annotated[
            list[str] | None, Query(description="Relations to search under (repeat; default: all indexed).")
        ] = None,
        id: Annotated[str | None, Query(max_length=500, description="Query by an indexed item.")] = None,
        text: Annotated[str | None, Query(max_length=2000, description="Query by text.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Results per relation.")] = 10,
        modality: Annotated[str, Query(description=f"Vector to search: {', '.join(VECTOR_NAMES)}.")] = "item",
        filter: Annotated[
            str | None, Query(description="A Qdrant filter as JSON, e.g. on payload fields.")
        ] = None,
    ) -> JSONResponse:
        query_filter = _parse_filter(filter)
        found = service.search(
            relation, item_id=id, text=text, using=modality, limit=limit, query_filter=query_filter
        )
        query: dict[str, Any] = {"kind": "id", "id": id} if id is not None else {"kind": "text", "text": text}
        if id is not None:
            query["item"] = _item_json(service.item(id))
        return JSONResponse(_results(query, modality, limit, found))

    @app.post("/api/search", tags=["search"], dependencies=keyed, summary="Search by an uploaded image")
    async def search_image(
        image: Annotated[
            UploadFile, File(description="The image (PNG, JPEG, WebP ...; at most --max-upload-mb).")
        ],
        relation: Annotated[list[str] | None, Form()] = None,
        limit: Annotated[int, Form(ge=1, le=MAX_LIMIT)] = 10,
        modality: Annotated[str, Form()] = "item",
        filter: Annotated[str | None, Form()] = None,
    ) -> JSONResponse:
        data = await image.read(max_upload_bytes + 1)
        query_filter = _parse_filter(filter)

        def run() -> dict[str, list[Hit]]:  # decoding and searching off the event loop
            picture = _decode_image(data, max_upload_bytes)
            return service.search(
                relation, image=picture, using=modality, limit=limit, query_filter=query_filter
            )

        found = await run_in_threadpool(run)
        query = {"kind": "image", "filename": image.filename, "bytes": len(data)}
        return JSONResponse(_results(query, modality, limit, found))

    @app.post("/api/encode", tags=["encode"], dependencies=keyed, summary="Embeddings under relations")
    def encode(request: EncodeRequest) -> dict[str, Any]:
        inputs = []
        for n, entry in enumerate(request.items):
            item: dict[str, Any] = {}
            if entry.text is not None:
                item["text"] = entry.text
            if entry.image is not None:
                try:
                    raw = base64.b64decode(entry.image, validate=True)
                except (binascii.Error, ValueError):
                    raise ApiError(400, f"items.{n}.image is not base64") from None
                item["image"] = _decode_image(raw, max_upload_bytes, f"items.{n}.image")
            if not item:
                raise ApiError(400, f"items.{n} has neither text nor image")
            inputs.append(item)
        relations = list(dict.fromkeys(request.relations))
        vectors = service.encode(inputs, relations)
        return {
            "relations": relations,
            "dim": int(vectors.shape[-1]),
            "embeddings": [[row.tolist() for row in vectors[r]] for r in range(len(relations))],
        }

    return app


def _item_json(payload: dict[str, Any]) -> dict[str, Any]:
    item_id = str(payload.get("item_id", ""))
    text = payload.get("text")
    return {
        "id": item_id,
        "text": text if isinstance(text, str) else None,
        "image": image_url(item_id) if payload.get("image") else None,
        "payload": _public_payload({k: v for k, v in payload.items() if k != "relation"}),
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rcml-st")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "0"

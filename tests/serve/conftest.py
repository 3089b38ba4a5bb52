"""Fixtures for ``rcml-st serve``: a generated catalogue with images indexed into a real Qdrant server.

The server is a ``qdrant`` binary this module starts (``QDRANT_BINARY``, the ``PATH`` or
``.qdrant-bin/qdrant`` from ``.ci/qdrant.sh``); without one the tests skip, and with ``CI`` set
they fail instead.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import rcml_st
from rcml_st.data import generate_catalog, read_catalog
from rcml_st.index import RelationIndex, RetryPolicy, index_catalog
from rcml_st.index._testing import QdrantServer, free_port, qdrant_binary_or_unavailable

FIXTURES = Path(__file__).parents[1] / "fixtures"


@dataclass
class Indexed:
    """A catalogue indexed into a collection, with the model that indexed it."""

    model: object
    model_dir: Path
    data: Path
    items: list
    relations: list[str]
    server: QdrantServer
    collection: str

    def connect(self, **kwargs: object) -> RelationIndex:
        kwargs.setdefault("retry", RetryPolicy(max_time=2))
        return RelationIndex.connect(
            url=self.server.url, grpc_port=self.server.grpc_port, collection=self.collection, **kwargs
        )


def build_indexed(root: Path, server: QdrantServer, n_items: int = 40) -> Indexed:
    """Generates a catalogue with images, saves a tiny model and indexes everything on ``server``."""
    synth = generate_catalog(root / "data", n_items=n_items, holdout=0, seed=5, image_size=32)
    catalog = read_catalog(synth.train_path)
    torch.manual_seed(0)
    model = rcml_st.build_model(FIXTURES / "tiny-clip.json", device="cpu")
    rcml_st.set_relation_vocabulary(model, list(synth.relations))
    model_dir = root / "model"
    model.save_pretrained(str(model_dir))
    collection = f"serve_{uuid.uuid4().hex[:8]}"
    indexed = Indexed(
        model, model_dir, synth.train_path, list(catalog.items), list(synth.relations), server, collection
    )
    with indexed.connect() as index:
        index_catalog(model, catalog, index)
    return indexed


@pytest.fixture(scope="package")
def qdrant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QdrantServer]:
    """A Qdrant server for the serve tests."""
    server = QdrantServer(qdrant_binary_or_unavailable(), tmp_path_factory.mktemp("qdrant") / "serve")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="package")
def indexed(qdrant: QdrantServer, tmp_path_factory: pytest.TempPathFactory) -> Indexed:
    """40 generated items (text and image) indexed under the catalogue's three relations."""
    return build_indexed(tmp_path_factory.mktemp("served"), qdrant)


class LiveServer:
    """An app served by uvicorn on a free loopback port, in a thread of this process."""

    def __init__(self, app: object) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def live_server() -> Callable[[object], LiveServer]:
    """``with live_server(app) as server: ... server.url``."""
    return LiveServer

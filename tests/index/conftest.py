"""Real Qdrant servers for the index tests.

``qdrant_server`` (session): ``QDRANT_URL`` if set (``QDRANT_GRPC_PORT`` optional), else the
official image through testcontainers when a Docker engine answers, else a ``qdrant`` binary
(``QDRANT_BINARY``, the ``PATH``, or ``.qdrant-bin/qdrant`` from ``.ci/qdrant.sh``) on free
loopback ports, else the tests skip with the reason. With ``CI`` set they fail instead.

``start_qdrant`` (function): starts servers this test owns, to kill and restart at will.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from rcml_st.index import PointRecord, RelationIndex, RetryPolicy
from rcml_st.index._testing import QdrantServer, find_qdrant_binary, qdrant_binary_or_unavailable, unavailable

QDRANT_IMAGE = "qdrant/qdrant:v1.16.3"


@dataclass(frozen=True)
class ServerInfo:
    """Where a test server listens. ``grpc_port`` is ``None`` when only REST is known."""

    url: str
    grpc_port: int | None
    kind: str

    def connect(self, collection: str, **kwargs: object) -> RelationIndex:
        return RelationIndex.connect(url=self.url, grpc_port=self.grpc_port, collection=collection, **kwargs)


def _docker_reason() -> str | None:
    """``None`` when a Docker engine answers, else why not."""
    try:
        import docker

        docker.from_env().ping()
    except Exception as exc:
        return f"no Docker engine ({type(exc).__name__})"
    return None


@pytest.fixture(scope="session")
def qdrant_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    """A real Qdrant server shared by the session's tests."""
    url = os.environ.get("QDRANT_URL")
    if url:
        grpc_port = os.environ.get("QDRANT_GRPC_PORT")
        yield ServerInfo(url.rstrip("/"), int(grpc_port) if grpc_port else None, "QDRANT_URL")
        return
    docker_reason = _docker_reason()
    if docker_reason is None:
        from testcontainers.community.qdrant import QdrantContainer

        with QdrantContainer(QDRANT_IMAGE) as container:
            host = container.get_container_host_ip()
            rest = container.get_exposed_port(6333)
            grpc_port = int(container.get_exposed_port(6334))
            yield ServerInfo(f"http://{host}:{rest}", grpc_port, "docker")
        return
    try:
        binary = find_qdrant_binary()
    except FileNotFoundError as exc:
        unavailable(str(exc))
    if binary is None:
        unavailable(
            f"no Qdrant server: QDRANT_URL not set, {docker_reason}, no qdrant binary "
            "(set QDRANT_BINARY, put qdrant on PATH, or run .ci/qdrant.sh)"
        )
    server = QdrantServer(binary, tmp_path_factory.mktemp("qdrant") / "session")  # type: ignore[arg-type]
    server.start()
    try:
        yield ServerInfo(server.url, server.grpc_port, "binary")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def qdrant_url(qdrant_server: ServerInfo) -> str:
    """The REST URL of the session's Qdrant server."""
    return qdrant_server.url


@pytest.fixture
def make_index(qdrant_server: ServerInfo) -> Iterator[Callable[..., RelationIndex]]:
    """Opens indexes on the session server, each in a fresh collection deleted afterwards."""
    opened: list[RelationIndex] = []

    def make(grpc: bool = True, **kwargs: object) -> RelationIndex:
        kwargs.setdefault("retry", RetryPolicy(max_time=10))
        collection = str(kwargs.pop("collection", f"t_{uuid.uuid4().hex[:12]}"))
        if grpc:
            index = qdrant_server.connect(collection, **kwargs)
            if not index._grpc:
                pytest.skip("the server's gRPC port is unknown (set QDRANT_GRPC_PORT with QDRANT_URL)")
        else:
            index = RelationIndex.connect(
                url=qdrant_server.url, prefer_grpc=False, collection=collection, **kwargs
            )
        opened.append(index)
        return index

    yield make
    for index in opened:
        try:
            index.client.delete_collection(index.collection)
        finally:
            index.close()


@pytest.fixture(scope="session")
def qdrant_binary() -> Path:
    """The ``qdrant`` executable (for tests that start their own servers or a cluster)."""
    return qdrant_binary_or_unavailable()


@pytest.fixture
def start_qdrant(tmp_path: Path) -> Iterator[Callable[..., QdrantServer]]:
    """Starts ``qdrant`` processes owned by one test (for kill/restart tests); all killed afterwards."""
    binary = qdrant_binary_or_unavailable()
    servers: list[QdrantServer] = []

    def start(**kwargs: object) -> QdrantServer:
        server = QdrantServer(binary, tmp_path / f"qdrant{len(servers)}", **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.kill()


def records(
    n: int,
    relations: tuple[str, ...] = ("goes with",),
    dim: int = 8,
    seed: int = 0,
    image_every: int = 2,
) -> list[PointRecord]:
    """``n`` items under each relation; every ``image_every``-th item has an image vector."""
    rng = np.random.default_rng(seed)
    out = []
    for relation in relations:
        for i in range(n):
            vectors = {"text": rng.standard_normal(dim), "item": rng.standard_normal(dim)}
            if image_every and i % image_every == 0:
                vectors["image"] = rng.standard_normal(dim)
            out.append(PointRecord(f"B{i:04d}", relation, vectors, {"text": f"item {i}", "price": float(i)}))
    return out


@pytest.fixture
def make_records() -> Callable[..., list[PointRecord]]:
    """Builds random records: ``make_records(n, relations=(...), dim=8, seed=0, image_every=2)``."""
    return records


# -- catalogue-level fixtures (pipeline and CLI tests) ---------------------------------------------

RELATIONS = ("made by the same brand", "matches in colour", "used together for the same activity")


def save_tiny_model(directory: Path, relations: tuple[str, ...] = RELATIONS) -> Path:
    """Saves a tiny random RCML model (32-d) with ``relations`` as its vocabulary."""
    import torch

    import rcml_st

    torch.manual_seed(0)
    model = rcml_st.build_model(Path(__file__).parents[1] / "fixtures" / "tiny-clip.json", device="cpu")
    rcml_st.set_relation_vocabulary(model, list(relations))
    model.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny RCML model whose vocabulary is the generated catalogue's three relations."""
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path):
    """The saved tiny model, loaded (on CPU)."""
    import rcml_st

    return rcml_st.load(tiny_model_dir, device="cpu")


class FakeClock:
    """A monotonic clock that moves only when something sleeps on it (records the sleeps)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def retry_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The index's retries wait on a :class:`FakeClock` instead of the wall clock."""
    import rcml_st.index.store as store
    from rcml_st.index.retry import with_retry

    clock = FakeClock()
    monkeypatch.setattr(store, "with_retry", functools.partial(with_retry, sleep=clock.sleep, clock=clock))
    return clock

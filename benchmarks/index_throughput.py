"""Index throughput against a real Qdrant server.

(a) The upsert path alone: points per second of ``RelationIndex.upsert`` of precomputed vectors
    versus raw qdrant-client ``upload_points`` of the same points (same batch size, gRPC),
    alternating the runs; target: package >= 0.8x raw. The client's fastest raw path,
    ``upload_collection`` of numpy matrices, is timed too, for reference. Each run writes a
    fresh collection and ends with the same ``wait=True`` barrier and exact count, so all are
    timed until the points are applied, not merely sent.
(b) End to end: (item, relation) points per second of ``rcml-st index`` with 1 and with 8
    relations (ViT-B-32, random weights); target: 8 relations cost <= 1.6x of 1 relation.
    Not written yet: it needs the model and the ``index`` command (see :func:`run_part_b`).

The server is ``--qdrant-url`` (with ``--grpc-port``) if given, else a ``qdrant`` binary started
on free loopback ports (``QDRANT_BINARY``, ``PATH``, or ``.qdrant-bin/qdrant`` from
``.ci/qdrant.sh``), exactly as the tests start it.

Examples:
    python benchmarks/index_throughput.py                       # part (a), 20k points x 3 x 512
    python benchmarks/index_throughput.py --points 5000 --rounds 2
    python benchmarks/index_throughput.py --qdrant-url http://localhost:6333 --grpc-port 6334
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from qdrant_client import QdrantClient, models

from rcml_st.index import PointRecord, RelationIndex, point_id
from rcml_st.index._testing import QdrantServer, find_qdrant_binary

VECTOR_NAMES = ("text", "image", "item")
RELATION = "used together for infant feeding"


@dataclass(frozen=True)
class Server:
    url: str
    grpc_port: int


@contextlib.contextmanager
def qdrant(url: str | None, grpc_port: int) -> Iterator[Server]:
    """The given server, or a fresh local one from the binary, stopped afterwards."""
    if url:
        yield Server(url, grpc_port)
        return
    binary = find_qdrant_binary()
    if binary is None:
        sys.exit("no qdrant binary: run .ci/qdrant.sh, set QDRANT_BINARY, or pass --qdrant-url")
    with (
        tempfile.TemporaryDirectory(prefix="rcml-bench-") as tmp,
        QdrantServer(binary, f"{tmp}/qdrant") as server,
    ):
        yield Server(server.url, server.grpc_port)


@dataclass(frozen=True)
class Dataset:
    """Precomputed points: ids, payloads and one (n, dim) float32 matrix per vector name."""

    ids: list[str]
    payloads: list[dict]
    vectors: dict[str, np.ndarray]

    @classmethod
    def random(cls, n: int, dim: int, seed: int = 0) -> Dataset:
        rng = np.random.default_rng(seed)
        items = [f"B{i:07d}" for i in range(n)]
        return cls(
            ids=[point_id(item, RELATION) for item in items],
            payloads=[{"item_id": item, "relation": RELATION, "text": f"product {item}"} for item in items],
            vectors={name: rng.standard_normal((n, dim), dtype=np.float32) for name in VECTOR_NAMES},
        )

    def records(self) -> list[PointRecord]:
        return [
            PointRecord(
                payload["item_id"],
                RELATION,
                {name: matrix[i] for name, matrix in self.vectors.items()},
                {"text": payload["text"]},
            )
            for i, payload in enumerate(self.payloads)
        ]


def fresh_collection(client: QdrantClient, name: str, dim: int) -> None:
    if client.collection_exists(name):
        client.delete_collection(name)
    index = RelationIndex(client, collection=name)
    index.ensure_collection(dict.fromkeys(VECTOR_NAMES, dim))


def run_package(server: Server, data: Dataset, batch_size: int, collection: str) -> float:
    index = RelationIndex.connect(
        url=server.url, grpc_port=server.grpc_port, collection=collection, batch_size=batch_size
    )
    records = data.records()  # what the CLI hands over: precomputed vectors wrapped per point
    start = time.perf_counter()
    index.upsert(records)
    index.finish({RELATION: len(data.ids)})
    elapsed = time.perf_counter() - start
    index.close()
    return elapsed


def run_raw(server: Server, data: Dataset, batch_size: int, collection: str) -> float:
    client = QdrantClient(
        url=server.url, grpc_port=server.grpc_port, prefer_grpc=True, check_compatibility=False
    )
    index = RelationIndex(client, collection=collection)  # only for the shared barrier + count
    points = (
        models.PointStruct(
            id=point_id_,
            vector={name: matrix[i] for name, matrix in data.vectors.items()},
            payload=data.payloads[i],
        )
        for i, point_id_ in enumerate(data.ids)
    )
    start = time.perf_counter()
    client.upload_points(collection, points=points, batch_size=batch_size)
    index.finish({RELATION: len(data.ids)})
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed


def run_raw_numpy(server: Server, data: Dataset, batch_size: int, collection: str) -> float:
    """The client's fastest path for the same points: ``upload_collection`` of numpy matrices."""
    client = QdrantClient(
        url=server.url, grpc_port=server.grpc_port, prefer_grpc=True, check_compatibility=False
    )
    index = RelationIndex(client, collection=collection)
    start = time.perf_counter()
    client.upload_collection(
        collection, vectors=data.vectors, ids=data.ids, payload=data.payloads, batch_size=batch_size
    )
    index.finish({RELATION: len(data.ids)})
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed


def run_part_a(server: Server, points: int, dim: int, batch_size: int, rounds: int) -> dict:
    """Times package vs raw upload, alternating which goes first each round."""
    data = Dataset.random(points, dim)
    admin = QdrantClient(
        url=server.url, grpc_port=server.grpc_port, prefer_grpc=True, check_compatibility=False
    )
    runners: dict[str, Callable[[Server, Dataset, int, str], float]] = {
        "raw": run_raw,
        "package": run_package,
        "raw_numpy": run_raw_numpy,
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    # One warm-up each, untimed: the first requests pay for channel set-up and page faults.
    for name, runner in runners.items():
        collection = f"bench_warmup_{name}"
        fresh_collection(admin, collection, dim)
        runner(server, Dataset.random(min(points, 2000), dim, seed=1), batch_size, collection)
        admin.delete_collection(collection)
    for round_ in range(rounds):
        order = list(runners) if round_ % 2 == 0 else list(reversed(runners))
        for name in order:
            collection = f"bench_{name}_{uuid.uuid4().hex[:8]}"
            fresh_collection(admin, collection, dim)
            elapsed = runners[name](server, data, batch_size, collection)
            times[name].append(elapsed)
            admin.delete_collection(collection)
            print(
                f"  round {round_ + 1} {name:9s} {points / elapsed:9.0f} points/s ({elapsed:.2f} s)",
                flush=True,
            )
    admin.close()
    rate = {name: points / statistics.median(values) for name, values in times.items()}
    return {
        "points": points,
        "vectors_per_point": len(VECTOR_NAMES),
        "dim": dim,
        "batch_size": batch_size,
        "rounds": rounds,
        "raw_points_per_s": round(rate["raw"]),
        "package_points_per_s": round(rate["package"]),
        "ratio": round(rate["package"] / rate["raw"], 3),
        "target_ratio": 0.8,
        "raw_numpy_points_per_s": round(rate["raw_numpy"]),
        "ratio_vs_raw_numpy": round(rate["package"] / rate["raw_numpy"], 3),
    }


def run_part_b(server: Server, args: argparse.Namespace) -> dict:
    """End to end ``rcml-st index`` with 1 vs 8 relations (phase 2: needs the model and the CLI).

    Plan: build a ViT-B-32 RCML model with random weights, write a synthetic catalogue, run
    ``rcml-st index DATA --model DIR --qdrant-url URL`` once with 1 ``--relation`` and once with
    8, alternating, and report (item, relation) points per second and the time ratio
    (target <= 1.6x for 8 relations vs 1).
    """
    raise NotImplementedError("part (b) needs the model and the `rcml-st index` command (phase 2)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["a", "b", "all"], default="a")
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--qdrant-url", default=None, help="an existing server (default: start the binary)")
    parser.add_argument("--grpc-port", type=int, default=6334)
    parser.add_argument("--json", dest="json_path", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)

    results: dict[str, dict] = {}
    with qdrant(args.qdrant_url, args.grpc_port) as server:
        print(f"Qdrant at {server.url} (gRPC {server.grpc_port})")
        if args.part in ("a", "all"):
            print(
                f"(a) upsert path: {args.points} points x {len(VECTOR_NAMES)} vectors x {args.dim}, "
                f"batch {args.batch_size}, gRPC"
            )
            results["a"] = run_part_a(server, args.points, args.dim, args.batch_size, args.rounds)
            a = results["a"]
            print(
                f"(a) raw upload_points {a['raw_points_per_s']} points/s, "
                f"package {a['package_points_per_s']} points/s, ratio {a['ratio']:.2f}x (target >= 0.8x); "
                f"raw upload_collection of numpy "
                f"{a['raw_numpy_points_per_s']} points/s, ratio {a['ratio_vs_raw_numpy']:.2f}x"
            )
        if args.part in ("b", "all"):
            results["b"] = run_part_b(server, args)
    print(json.dumps(results))
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()

"""Index throughput against a real Qdrant server.

(a) The upsert path alone: points per second of ``RelationIndex.upsert`` of precomputed vectors
    versus raw qdrant-client ``upload_points`` of the same points (same batch size, gRPC),
    alternating the runs; target: package >= 0.8x raw. The client's fastest raw path,
    ``upload_collection`` of numpy matrices, is timed too, for reference. Each run writes a
    fresh collection and ends with the same ``wait=True`` barrier and exact count, so all are
    timed until the points are applied, not merely sent.
(b) End to end: (item, relation) points per second of the indexing pipeline that ``rcml-st
    index`` runs (:func:`rcml_st.index.index_catalog`: encode, upsert, barrier, exact counts)
    with 1 and with 8 relations (ViT-B-32, random weights, a generated catalogue), alternating
    the runs; target: 8 relations cost <= 1.6x the time of 1 relation.

The server is ``--qdrant-url`` (with ``--grpc-port``) if given, else a ``qdrant`` binary started
on free loopback ports (``QDRANT_BINARY``, ``PATH``, or ``.qdrant-bin/qdrant`` from
``.ci/qdrant.sh``), exactly as the tests start it.

Examples:
    python benchmarks/index_throughput.py                       # part (a), 20k points x 3 x 512
    python benchmarks/index_throughput.py --points 5000 --rounds 2
    python benchmarks/index_throughput.py --part b --items 96 --rounds-b 3
    python benchmarks/index_throughput.py --part all
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


#: Eight relation descriptions for part (b); the first is the 1-relation run's.
RELATIONS_B = (
    "used together for infant feeding",
    "matches in colour",
    "made by the same brand",
    "viewed as an alternative to",
    "bought together for travel",
    "used at bath time",
    "fits the same nursery theme",
    "suitable for the same age",
)


def build_part_b_model(backbone: str, device: str | None):
    """An RCML model with random weights and the 8 relations as its vocabulary."""
    import torch

    import rcml_st

    torch.manual_seed(0)
    model = rcml_st.build_model(backbone, device=device)
    rcml_st.set_relation_vocabulary(model, list(RELATIONS_B))
    return model


def run_index_once(server: Server, model, catalog, relations: list[str], batch_size: int) -> dict:
    """One ``rcml-st index`` run (the same ``index_catalog`` call) into a fresh collection, timed."""
    from rcml_st.index import index_catalog

    collection = f"bench_b_{uuid.uuid4().hex[:8]}"
    index = RelationIndex.connect(url=server.url, grpc_port=server.grpc_port, collection=collection)
    try:
        start = time.perf_counter()
        report = index_catalog(model, catalog, index, relations=relations, batch_size=batch_size)
        elapsed = time.perf_counter() - start
        assert report.counts == dict.fromkeys(relations, len(catalog)), report.counts
    finally:
        index.client.delete_collection(collection)
        index.close()
    return {"seconds": elapsed, "points": report.points}


def run_part_b(server: Server, args: argparse.Namespace) -> dict:
    """End to end: (item, relation) points/s of the indexing pipeline with 1 and with 8 relations.

    Times :func:`rcml_st.index.index_catalog`, which is what ``rcml-st index`` runs once the data
    file is read and the model loaded: encode each batch (backbone once, all relations at once),
    build and check the points, upsert over gRPC, then the write barrier and exact counts. The
    model is ``--backbone`` (ViT-B-32) with random weights; the catalogue is generated
    (``--items`` items with text and a 64 px image). Runs alternate 1 / 8 relations, after one
    untimed warm-up of each; the figures are medians.
    """
    from rcml_st.data import generate_catalog, read_catalog

    model = build_part_b_model(args.backbone, args.device)
    with tempfile.TemporaryDirectory(prefix="rcml-bench-b-") as tmp:
        synthetic = generate_catalog(tmp, n_items=args.items, holdout=0, seed=0)
        catalog = read_catalog(synthetic.train_path)
        configs = {1: list(RELATIONS_B[:1]), 8: list(RELATIONS_B)}
        for relations in configs.values():  # warm-up: first calls pay for allocator and channel set-up
            run_index_once(server, model, catalog.subset(range(min(8, len(catalog)))), relations, 8)
        times: dict[int, list[float]] = {r: [] for r in configs}
        for round_ in range(args.rounds_b):
            order = list(configs) if round_ % 2 == 0 else list(reversed(configs))
            for r in order:
                run = run_index_once(server, model, catalog, configs[r], args.encode_batch)
                times[r].append(run["seconds"])
                print(
                    f"  round {round_ + 1} {r} relation(s): {run['points'] / run['seconds']:7.1f} points/s "
                    f"({run['seconds']:.2f} s for {run['points']} points)",
                    flush=True,
                )
    median = {r: statistics.median(values) for r, values in times.items()}
    items = len(catalog)
    return {
        "backbone": args.backbone,
        "weights": "random",
        "device": str(model.device),
        "items": items,
        "encode_batch": args.encode_batch,
        "rounds": args.rounds_b,
        "seconds_1_relation": round(median[1], 3),
        "seconds_8_relations": round(median[8], 3),
        "points_per_s_1_relation": round(items / median[1], 1),
        "points_per_s_8_relations": round(8 * items / median[8], 1),
        "time_ratio_8_vs_1": round(median[8] / median[1], 3),
        "target_ratio": 1.6,
        "all_seconds": {str(r): [round(t, 3) for t in values] for r, values in times.items()},
    }


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
    parser.add_argument("--items", type=int, default=96, help="(b) catalogue size")
    parser.add_argument("--backbone", default="ViT-B-32", help="(b) open_clip model name or config JSON")
    parser.add_argument("--device", default=None, help="(b) where to run the model (default: auto)")
    parser.add_argument("--encode-batch", type=int, default=64, help="(b) items per encoding batch")
    parser.add_argument("--rounds-b", type=int, default=3, help="(b) timed runs of each configuration")
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
            print(
                f"(b) end to end: {args.items} generated items, {args.backbone} random weights, "
                f"1 vs 8 relations, encode batch {args.encode_batch}"
            )
            results["b"] = run_part_b(server, args)
            b = results["b"]
            print(
                f"(b) 1 relation {b['points_per_s_1_relation']} points/s ({b['seconds_1_relation']} s), "
                f"8 relations {b['points_per_s_8_relations']} points/s ({b['seconds_8_relations']} s); "
                f"time ratio 8/1 {b['time_ratio_8_vs_1']:.2f}x (target <= 1.6x)"
            )
    print(json.dumps(results))
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()

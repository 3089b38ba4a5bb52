"""Load on ``rcml-st serve``: N concurrent clients for T seconds, against calling the library directly.

Run (after ``rcml-st demo``, which leaves a model and an embedded store in ``rcml-demo/``):
    .venv/bin/python benchmarks/serve_load.py                       # 8 clients, 10 s per query kind
    .venv/bin/python benchmarks/serve_load.py --workdir /tmp/demo --clients 8 --seconds 20
    .venv/bin/python benchmarks/serve_load.py --qdrant-url http://localhost:6333 --collection rcml

For each query kind (``id``: an indexed item; ``text``: a short description; ``image``: an uploaded
photo), every request asks for the neighbours under *all* indexed relations (limit 10), as the page
does. Queries cycle over the demo's held-out items.

1. Direct: this process loads the model, opens the index and answers the same queries one after
   the other for T seconds with the library (``search_index`` per relation for ids;
   ``query_vectors`` once for all relations, then ``RelationIndex.search`` per relation, for
   text and images): the floor a single caller gets without HTTP.
2. Served: ``rcml-st serve`` in a subprocess on loopback; N clients (asyncio + httpx, each sending
   its next request as soon as the last one is answered) for T seconds per kind. The server's
   micro-batch sizes are read from ``/api/health`` afterwards.

Both report requests/s and p50/p99 latency. The load generator shares the machine's CPUs with the
server (on 2 cores this costs the server part of one core). Bounded: at most 64 clients, 120 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

# Both sides run OpenMP threads with passive waits, as rcml-st serve does (set before torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

MAX_CLIENTS = 64
MAX_SECONDS = 120.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(latencies: list[float], seconds: float, errors: int = 0) -> dict[str, float]:
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / seconds,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p99_ms": 1000 * percentile(latencies, 99),
        "mean_ms": 1000 * statistics.fmean(latencies) if latencies else float("nan"),
    }


def load_queries(workdir: Path, data: Path | None) -> list[dict]:
    from rcml_st.data import read_catalog

    path = data or (workdir / "data" / "test.jsonl")
    if not path.is_file():
        sys.exit(f"no {path}: run `rcml-st demo --workdir {workdir}` first, or pass --data FILE")
    items = [item for item in read_catalog(path).items if item.text and item.image][:64]
    return [
        {
            "id": item.id,
            "text": " ".join(str(item.metadata.get(key, "")) for key in ("colour", "product_type")).strip()
            or item.text,
            "image": item.image,
            "image_bytes": Path(item.image).read_bytes(),
        }
        for item in items
    ]


def direct(args: argparse.Namespace, queries: list[dict], kinds: list[str]) -> dict[str, dict]:
    import rcml_st
    from rcml_st.index import RelationIndex, query_vectors, search_index

    model = rcml_st.load(args.model, device="cpu")
    if args.qdrant_url:
        index = RelationIndex.connect(
            url=args.qdrant_url, grpc_port=args.grpc_port, collection=args.collection
        )
    else:
        index = RelationIndex.connect(path=args.qdrant_path, collection=args.collection)
    try:
        relations = list(index.relations())

        def by_id(q: dict) -> None:
            for relation in relations:
                search_index(None, index, relation, item_id=q["id"], limit=10)

        def encoded(key: str) -> Callable[[dict], None]:
            def run(q: dict) -> None:
                vectors = query_vectors(model, [{key: q[key]}], relations)
                for r, relation in enumerate(relations):
                    index.search(vectors[r, 0], relation, limit=10)

            return run

        calls = {"id": by_id, "text": encoded("text"), "image": encoded("image")}
        out = {}
        for kind in kinds:
            call = calls[kind]
            call(queries[0])  # warm-up
            latencies: list[float] = []
            start = time.perf_counter()
            n = 0
            while time.perf_counter() - start < args.seconds:
                t0 = time.perf_counter()
                call(queries[n % len(queries)])
                latencies.append(time.perf_counter() - t0)
                n += 1
            out[kind] = summary(latencies, time.perf_counter() - start)
        return out
    finally:
        index.close()  # releases the embedded store for the server


async def _load(url: str, kind: str, queries: list[dict], clients: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def client(worker: int, http: httpx.AsyncClient) -> None:
        nonlocal errors
        n = worker
        while time.perf_counter() < stop_at:
            q = queries[n % len(queries)]
            n += clients
            t0 = time.perf_counter()
            if kind == "image":
                response = await http.post(
                    f"{url}/api/search", files={"image": ("q.png", q["image_bytes"], "image/png")}
                )
            else:
                response = await http.get(f"{url}/api/search", params={kind: q[kind]})
            elapsed = time.perf_counter() - t0
            if response.status_code == 200:
                latencies.append(elapsed)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await http.get(f"{url}/api/search", params={"id": queries[0]["id"]})  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*(client(w, http) for w in range(clients)))
        return summary(latencies, time.perf_counter() - start, errors)


def served(args: argparse.Namespace, queries: list[dict], kinds: list[str]) -> tuple[dict[str, dict], dict]:
    from rcml_st.index._testing import free_port

    port = free_port()
    command = [sys.executable, "-m", "rcml_st.cli.main", "serve", "--model", str(args.model)]
    command += ["--collection", args.collection, "--port", str(port), "--device", "cpu"]
    command += (
        ["--qdrant-url", args.qdrant_url] if args.qdrant_url else ["--qdrant-path", str(args.qdrant_path)]
    )
    env = {key: value for key, value in os.environ.items() if key != "RCML_ST_API_KEY"}
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"rcml-st serve did not start: {server.stderr.read() if server.stderr else ''}")
            time.sleep(0.5)
        out = {}
        batches = {}
        for kind in kinds:
            with urllib.request.urlopen(f"{url}/api/health", timeout=10) as response:
                before = json.loads(response.read()).get("batches", {})
            out[kind] = asyncio.run(_load(url, kind, queries, args.clients, args.seconds))
            with urllib.request.urlopen(f"{url}/api/health", timeout=10) as response:
                after = json.loads(response.read()).get("batches", {})
            if after and kind != "id":
                done = after["batches"] - before.get("batches", 0)
                encoded = after["queries"] - before.get("queries", 0)
                batches[kind] = {"batches": done, "mean_batch": encoded / done if done else 0.0}
        return out, batches
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, default=Path("rcml-demo"), help="what rcml-st demo wrote")
    parser.add_argument("--model", type=Path, help="default: WORKDIR/model")
    parser.add_argument("--qdrant-path", type=Path, help="default: WORKDIR/qdrant")
    parser.add_argument("--qdrant-url", help="a Qdrant server instead of the embedded store")
    parser.add_argument("--grpc-port", type=int, help="the server's gRPC port, when it is not 6334")
    parser.add_argument("--collection", default="rcml")
    parser.add_argument("--data", type=Path, help="items to query with (default: WORKDIR/data/test.jsonl)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="per query kind and side")
    parser.add_argument("--kinds", default="id,text,image")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    args.model = args.model or args.workdir / "model"
    args.qdrant_path = args.qdrant_path or args.workdir / "qdrant"
    args.clients = max(1, min(args.clients, MAX_CLIENTS))
    args.seconds = max(1.0, min(args.seconds, MAX_SECONDS))
    kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    if set(kinds) - {"id", "text", "image"}:
        sys.exit("--kinds: choose from id, text, image")
    queries = load_queries(args.workdir, args.data)

    print(f"cpus: {os.cpu_count()}  clients: {args.clients}  seconds per kind: {args.seconds:g}", flush=True)
    lib = direct(args, queries, kinds)
    http, batches = served(args, queries, kinds)
    print(f"{'kind':6} {'side':28} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}  batches")
    for kind in kinds:
        rows = [("library, 1 caller", lib[kind]), (f"serve, {args.clients} clients", http[kind])]
        for side, row in rows:
            extra = ""
            if side.startswith("serve") and kind in batches:
                extra = f"mean {batches[kind]['mean_batch']:.1f} queries/batch"
            print(
                f"{kind:6} {side:28} {row['rps']:8.1f} {row['p50_ms']:8.1f} {row['p99_ms']:8.1f} "
                f"{row['errors']:6d}  {extra}"
            )
    if args.json:
        args.json.write_text(json.dumps({"library": lib, "serve": http, "batches": batches}, indent=2))


if __name__ == "__main__":
    main()

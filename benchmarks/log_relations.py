"""Relations from an interaction log at scale: out-of-core counting vs a plain in-memory baseline.

Generates orders logs (CSV, gzip) with a long-tailed item popularity and customer activity
(about 20 items per customer, a few accounts with thousands), plus a catalogue of the items, and
runs ``add_log_relations`` (what ``rcml-st prepare log`` runs: read the catalogue, stream the log,
count pairs on disk, keep the top 10 partners per item, write the catalogue) at 1M and 10M rows.
The baseline reads the same log into a dict of customer -> items and counts pairs in a
``collections.Counter`` (the obvious way, all in memory, with the same cap per customer), at
1M rows, where it fits. Each run is its own process, so its peak RSS is its own.

    .venv/bin/python benchmarks/log_relations.py                 # 1M and 10M rows, baseline at 1M
    .venv/bin/python benchmarks/log_relations.py --sizes 1000000 --baseline-sizes 1000000
"""

from __future__ import annotations

import argparse
import gzip
import heapq
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

TOP_K = 10
CAP = 100  # --max-items-per-user, the same for both
ITEMS_PER_USER = 20


def shape(rows: int) -> tuple[int, int]:
    """(items, customers) of a log of ``rows`` rows: 10M rows -> 1M items, 500k customers."""
    return max(rows // 10, 100), max(rows // ITEMS_PER_USER, 10)


def generate(folder: Path, rows: int, seed: int = 0) -> tuple[Path, Path]:
    n_items, n_users = shape(rows)
    log = folder / f"orders_{rows}.csv.gz"
    catalog = folder / f"items_{n_items}.jsonl"
    if not catalog.exists():
        with open(catalog, "w", encoding="utf-8") as fh:
            for start in range(0, n_items, 100_000):
                fh.write(
                    "".join(
                        f'{{"id": "I{i:07d}", "text": "product {i}"}}\n'
                        for i in range(start, min(start + 100_000, n_items))
                    )
                )
    if log.exists():
        return log, catalog
    rng = np.random.default_rng(seed)
    # Customer activity: log-normal weights (most buy a few items, some many), plus 20 accounts
    # with about 5,000 rows each (resellers, bots) that the cap must tame.
    weights = rng.lognormal(0.0, 1.0, n_users)
    weights[:20] = weights.sum() * 5000 / rows
    weights /= weights.sum()
    # Item popularity: Zipf-like over a random order of the items.
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity = rng.permutation(popularity / popularity.sum())
    with gzip.open(log, "wt", encoding="utf-8", compresslevel=1) as fh:
        fh.write("customer_id,item_id,ts\n")
        for start in range(0, rows, 1_000_000):
            n = min(1_000_000, rows - start)
            users = rng.choice(n_users, size=n, p=weights)
            items = rng.choice(n_items, size=n, p=popularity)
            times = 1_700_000_000 + rng.integers(0, 86400 * 365, size=n)
            fh.write(
                "".join(
                    f"U{u:06d},I{i:07d},{t}\n"
                    for u, i, t in zip(users.tolist(), items.tolist(), times.tolist(), strict=True)
                )
            )
    return log, catalog


def run_engine(log: Path, catalog: Path, out: Path, memory_mb: int) -> dict:
    from rcml_st.data.interactions import LogColumns, add_log_relations

    summary = add_log_relations(
        catalog,
        log,
        out,
        columns=LogColumns("customer_id", "item_id", "ts"),
        top_k=TOP_K,
        max_items_per_user=CAP,
        memory_mb=memory_mb,
    )
    c = summary.counting
    return {
        "edges": c.edges,
        "pairs": c.pairs,
        "users": c.users,
        "capped": c.capped_users,
        "bound": summary.memory_bound,
    }


def run_naive(log: Path, catalog: Path, out: Path) -> dict:
    """All in memory: customer -> {item: time}, a Counter of pairs, a heap per item."""
    from rcml_st.data.interactions import LogColumns, iter_log

    with open(catalog, encoding="utf-8") as fh:
        ids = [json.loads(line)["id"] for line in fh]
    known = set(ids)
    baskets: dict[str, dict[str, float]] = defaultdict(dict)
    for user, item, t in iter_log(log, LogColumns("customer_id", "item_id", "ts")):
        if item in known:
            basket = baskets[user]
            basket[item] = max(basket.get(item, t), t)
    pairs: Counter = Counter()
    for basket in baskets.values():
        chosen = sorted(basket, key=lambda i: -basket[i])[:CAP]
        for a, b in itertools.combinations(chosen, 2):
            pairs[(a, b)] += 1
            pairs[(b, a)] += 1
    partners: dict[str, list] = defaultdict(list)
    for (a, b), count in pairs.items():
        heap = partners[a]
        if len(heap) < TOP_K:
            heapq.heappush(heap, (count, b))
        else:
            heapq.heappushpop(heap, (count, b))
    with open(out, "w", encoding="utf-8") as fh:
        for item in ids:
            ranked = [b for _, b in sorted(partners.get(item, []), reverse=True)]
            record = {"id": item, "text": "x"}
            if ranked:
                record["relations"] = {"bought by the same customers": ranked}
            fh.write(json.dumps(record) + "\n")
    return {"edges": sum(len(h) for h in partners.values()), "pairs": len(pairs), "users": len(baskets)}


def child(kind: str, rows: int, folder: Path, memory_mb: int) -> None:
    log, catalog = generate(folder, rows)
    out = folder / f"out_{kind}_{rows}.jsonl"
    start = time.perf_counter()
    result = run_engine(log, catalog, out, memory_mb) if kind == "engine" else run_naive(log, catalog, out)
    result["seconds"] = time.perf_counter() - start
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def measure(kind: str, rows: int, folder: Path, memory_mb: int) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--rows", str(rows), "--folder", str(folder)]
    command += ["--memory-mb", str(memory_mb)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--baseline-sizes", type=int, nargs="*", default=[1_000_000])
    parser.add_argument("--memory-mb", type=int, default=1024)
    parser.add_argument(
        "--folder", type=Path, default=None, help="where logs are generated (kept for reruns)"
    )
    parser.add_argument("--child", choices=["engine", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.gettempdir()) / "rcml-log-bench"
    folder.mkdir(parents=True, exist_ok=True)
    if args.child:
        child(args.child, args.rows, folder, args.memory_mb)
        return

    for rows in sorted(set(args.sizes) | set(args.baseline_sizes)):
        start = time.perf_counter()
        generate(folder, rows)
        n_items, n_users = shape(rows)
        took = time.perf_counter() - start
        print(f"log of {rows:,} rows ({n_items:,} items, {n_users:,} customers): {took:.0f} s")
    print(f"{'rows':>12} {'method':<22} {'time':>8} {'peak RSS':>10} {'edges':>12} {'pairs':>13}")
    results: dict[tuple[str, int], dict] = {}
    for rows in sorted(set(args.sizes) | set(args.baseline_sizes)):
        kinds = (["engine"] if rows in args.sizes else []) + (
            ["naive"] if rows in args.baseline_sizes else []
        )
        for kind in kinds:
            r = results[(kind, rows)] = measure(kind, rows, folder, args.memory_mb)
            name = "out of core (package)" if kind == "engine" else "in memory (Counter)"
            if "error" in r:
                print(f"{rows:>12,} {name:<22} failed: {r['error']}")
                continue
            print(
                f"{rows:>12,} {name:<22} {r['seconds']:>7.1f}s {r['peak_rss_mb']:>8,.0f}MB "
                f"{r['edges']:>12,} {r['pairs']:>13,}"
            )
            if kind == "engine":
                print(f"{'':>12} stated bound: {r['bound']}")
    engine_sizes = sorted(
        rows for kind, rows in results if kind == "engine" and "error" not in results[(kind, rows)]
    )
    if len(engine_sizes) >= 2:
        small, large = results[("engine", engine_sizes[0])], results[("engine", engine_sizes[-1])]
        print(
            f"growth {engine_sizes[0]:,} -> {engine_sizes[-1]:,} rows: "
            f"time x{large['seconds'] / small['seconds']:.1f}, "
            f"peak RSS x{large['peak_rss_mb'] / small['peak_rss_mb']:.1f}"
        )
    for rows in args.baseline_sizes:
        engine, naive = results.get(("engine", rows)), results.get(("naive", rows))
        if engine and naive and "error" not in engine and "error" not in naive:
            same = engine["edges"] == naive["edges"] and engine["pairs"] == naive["pairs"]
            print(
                f"at {rows:,} rows: time x{naive['seconds'] / engine['seconds']:.2f} (naive/package), "
                f"peak RSS x{naive['peak_rss_mb'] / engine['peak_rss_mb']:.2f}; "
                f"same edge and pair counts: {same}"
            )


if __name__ == "__main__":
    main()

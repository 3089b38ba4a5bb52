"""Relations from an interaction log at scale: this checkout's ``prepare log`` vs the old hand-written one.

Generates orders logs (CSV, gzip) with a long-tailed item popularity and customer activity
(about 20 items per customer, a few accounts with thousands), plus a catalogue of the items, and
runs ``rcml-st prepare log`` (read the catalogue, read the log, count pairs, keep the top 10
partners per item, write the catalogue) at 1M and 10M rows, each run its own process (time, CPU
and peak RSS from wait4, the load average next to each), the paths back to back at each size:

- ``new``: this checkout's ``rcml-st`` (DuckDB and SciPy's sparse product) on the gzip CSV, and on
  the same log as Parquet;
- ``old``: the hand-written out-of-core counter, from a checkout of commit 0f2717b (``--old-rcml-st``).

"same edges" compares the relation lists (members and order) with the first run of the size.

    .venv/bin/python benchmarks/log_relations.py --old-rcml-st OLD/bin/rcml-st   # 1M and 10M rows
    .venv/bin/python benchmarks/log_relations.py --sizes 10000000 --new-only     # the new path, 10M rows
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
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


def to_parquet(log: Path) -> Path:
    out = log.with_name(log.name.replace(".csv.gz", ".parquet"))
    if not out.exists():
        import duckdb

        duckdb.connect().execute(
            f"COPY (SELECT * FROM read_csv('{log}', all_varchar=true)) TO '{out}' (FORMAT parquet)"
        )
    return out


def run(command: list[str]) -> dict:
    """Runs one ``prepare log``; its wall time and peak RSS (its own, from wait4)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    stderr = process.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        return {"error": (stderr.strip().splitlines() or ["failed"])[-1]}
    return {
        "seconds": seconds,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


def relations(path: Path) -> dict[str, list[str]]:
    with open(path, encoding="utf-8") as fh:
        return {
            r["id"]: r["relations"]["bought by the same customers"]
            for r in map(json.loads, fh)
            if "relations" in r
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--memory-mb", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--old-rcml-st", default=None, help="rcml-st of a checkout of commit 0f2717b")
    parser.add_argument("--no-old", action="store_true", help="run only this checkout's path")
    parser.add_argument("--new-only", action="store_true", help="this checkout on the gzip CSV only")
    parser.add_argument("--no-parquet", action="store_true")
    parser.add_argument("--folder", type=Path, default=None, help="where logs are generated (kept)")
    args = parser.parse_args()
    if args.new_only or args.old_rcml_st is None:
        args.no_old = True
    args.no_parquet = args.no_parquet or args.new_only
    folder = args.folder or Path(tempfile.gettempdir()) / "rcml-log-bench"
    folder.mkdir(parents=True, exist_ok=True)
    new = str(Path(sys.executable).with_name("rcml-st"))
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    print(f"{'rows':>12} {'path':<16} {'time':>8} {'CPU':>8} {'peak RSS':>10}  same edges")
    for rows in args.sizes:
        log, catalog = generate(folder, rows)
        inputs = [("new csv.gz", new, log)]
        if not args.no_parquet:
            inputs.append(("new parquet", new, to_parquet(log)))
        if not args.no_old:
            inputs.append(("old csv.gz", args.old_rcml_st, log))
        outputs: dict[str, dict[str, list[str]]] = {}
        times: dict[str, float] = {}
        for name, program, source in inputs:
            out = folder / f"out_{name.replace(' ', '_')}_{rows}.jsonl"
            command = [program, "prepare", "log", str(source), "-c", str(catalog), "-o", str(out)]
            command += ["--user-column", "customer_id", "--item-column", "item_id", "--time-column", "ts"]
            command += [
                "--top-k",
                str(TOP_K),
                "--max-items-per-user",
                str(CAP),
                "--memory-mb",
                str(args.memory_mb),
            ]
            if args.threads and program == new:
                command += ["--threads", str(args.threads)]
            r = run(command)
            if "error" in r:
                print(f"{rows:>12,} {name:<16} failed: {r['error']}")
                continue
            outputs[name] = relations(out)
            same = outputs[name] == outputs["new csv.gz"] if "new csv.gz" in outputs else "-"
            print(
                f"{rows:>12,} {name:<16} {r['seconds']:>7.1f}s {r['cpu_s']:>7.1f}s "
                f"{r['peak_rss_mb']:>8,.0f}MB  {same} ({sum(map(len, outputs[name].values())):,} edges)"
                f"  load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            times[name] = r["seconds"]
        if "old csv.gz" in times and "new csv.gz" in times:
            ratio = times["old csv.gz"] / times["new csv.gz"]
            print(f"{rows:>12,} old / new (csv.gz): x{ratio:.1f}; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

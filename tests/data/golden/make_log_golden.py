"""Writes the expected outputs of ``prepare log`` with the pre-DuckDB code (kept for the record).

The golden files next to this script were made by the hand-written out-of-core counter that
DuckDB replaced (commit 0f2717b, still in a checkout of that commit), so that the new engine is
compared with what the old one really did, not with a re-implementation of it::

    cd <checkout at 0f2717b> && .venv/bin/python <this file>   # writes log.csv, items.jsonl, expected.json

The log is generated with ties on purpose: few items and many customers (equal co-counts), one
customer's rows without times (the cap breaks ties by the item hash), repeated rows, times as
seconds, milliseconds and ISO 8601, and a few items not in the catalogue.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).parent

#: name -> options of ``add_log_relations`` (the CLI's ``prepare log`` options).
CASES: dict[str, dict] = {
    "count_top5": {"top_k": 5},
    "jaccard_top5": {"top_k": 5, "score": "jaccard"},
    "pmi_min2_top5": {"top_k": 5, "score": "pmi", "min_count": 2},
    "count_all_cap8": {"top_k": 0, "max_items_per_user": 8},
    "count_min3_top3": {"top_k": 3, "min_count": 3},
    "window_6h_cap30": {"top_k": 0, "window": 6 * 3600.0, "max_items_per_user": 30},
    "window_1d_jaccard_top4": {"top_k": 4, "window": 86400.0, "score": "jaccard", "max_items_per_user": 12},
}
UNTIMED_CASES: dict[str, dict] = {
    "untimed_cap5_top3": {"top_k": 3, "max_items_per_user": 5},
}


def write_inputs() -> None:
    rng = random.Random(23)
    items = [f"sku{n:02d}" for n in range(40)]
    catalogue = items[:]
    rng.shuffle(catalogue)  # catalogue order is not name order: ties must follow the catalogue
    with open(HERE / "items.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"id": i, "text": f"product {i}"}) + "\n" for i in catalogue)
    rows = []
    base = 1_700_000_000
    for user in range(120):
        n = 2 + int(rng.paretovariate(1.3)) % 40  # a long tail: a few customers with 30+ rows
        theme = rng.randrange(4)
        for _ in range(n):
            pool = items[theme * 10 : theme * 10 + 10] if rng.random() < 0.7 else items
            item = pool[int(rng.paretovariate(1.1)) % len(pool)]
            t = base + rng.randrange(0, 30) * 3600  # hour resolution: equal times happen
            kind = rng.random()
            if kind < 0.1:
                when = str(t * 1000)  # milliseconds
            elif kind < 0.2:
                when = datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            else:
                when = str(t)
            rows.append((f"c{user:03d}", item, when))
    rows += [(f"c{rng.randrange(120):03d}", f"gone{n}", str(base)) for n in range(15)]
    rows += rows[:40]  # repeated rows
    rows = [(u, i, "0") if u == "c007" else (u, i, w) for u, i, w in rows]  # no times: ties
    rng.shuffle(rows)
    with open(HERE / "log.csv", "w", encoding="utf-8") as fh:
        fh.write("customer,sku,ts\n")
        fh.writelines(f"{u},{i},{w}\n" for u, i, w in rows)


def main() -> None:
    import tempfile

    from rcml_st.data.interactions import LogColumns, add_log_relations

    write_inputs()
    expected = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in {**CASES, **UNTIMED_CASES}.items():
            out = Path(tmp) / f"{name}.jsonl"
            time_column = None if name in UNTIMED_CASES else "ts"
            summary = add_log_relations(
                HERE / "items.jsonl",
                HERE / "log.csv",
                out,
                columns=LogColumns("customer", "sku", time_column),
                **options,
            )
            relations = {
                r["id"]: r["relations"]["bought by the same customers"]
                for r in map(json.loads, out.read_text().splitlines())
                if "relations" in r
            }
            c = summary.counting
            expected[name] = {
                "options": options,
                "time_column": time_column,
                "stats": {
                    "rows": c.rows,
                    "unknown_items": c.unknown_items,
                    "users": c.users,
                    "capped_users": c.capped_users,
                    "pairs": c.pairs,
                    "edges": c.edges,
                },
                "relations": relations,
            }
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Evaluation at scale: encode once per (item, relation), then score, against encoding per query.

Run:
    .venv/bin/python benchmarks/eval_scale.py                 # 10,000 items x 10 relations x 100,000 queries
    .venv/bin/python benchmarks/eval_scale.py --items 2000 --queries 20000   # quicker

A generated catalogue (text + 32 px images; each relation groups items in 50 random groups and
links random pairs inside a group) and the tiny random backbone (``rcml-tiny``). The package's
path (``build_queries`` + ``encode_relations`` once + vectorised ``score_retrieval``) is timed in
full; the natural baseline, encoding each query's item and its 21 candidates under the query's
relation with ``model.encode``, is timed on a sample of queries and extrapolated. Prints both
and the ratio.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import rcml_st
from rcml_st.data import read_catalog
from rcml_st.evaluation.retrieval import build_queries, catalog_inputs, score_retrieval
from rcml_st.modules.architectures import write_architecture

GROUPS = 50


def make_catalogue(root: Path, n_items: int, n_relations: int, n_edges: int, seed: int = 0) -> Path:
    """Writes data.jsonl and img/ under root: n_edges edges spread over n_relations relations."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    groups = rng.integers(0, GROUPS, size=(n_relations, n_items))
    relations = [f"relation number {r}: shares property {r}" for r in range(n_relations)]
    targets: list[dict[str, list[str]]] = [{} for _ in range(n_items)]
    per_relation = n_edges // n_relations
    for r in range(n_relations):
        members = [np.flatnonzero(groups[r] == g) for g in range(GROUPS)]
        seen: set[tuple[int, int]] = set()
        while len(seen) < per_relation:
            source = int(rng.integers(n_items))
            target = int(rng.choice(members[groups[r, source]]))
            if target != source and (source, target) not in seen:
                seen.add((source, target))
                targets[source].setdefault(relations[r], []).append(f"x{target}")
    path = root / "data.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n_items):
            pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "img" / f"{i}.png")
            words = " ".join(f"w{g}" for g in groups[:, i])
            record = {"id": f"x{i}", "text": f"product {i} {words}", "image": f"img/{i}.png"}
            fh.write(json.dumps({**record, "relations": targets[i]}) + "\n")
    return path


def per_query_seconds(model, catalog, queries, sample: int, seed: int = 0) -> float:
    """Mean seconds per query when each query encodes its own item and 21 candidates."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(queries), size=min(sample, len(queries)), replace=False)
    inputs = catalog_inputs(catalog)
    start = time.perf_counter()
    for row in rows:
        relation = queries.relations[queries.relation[row]]
        candidates = queries.candidates["text"][row]
        items = [inputs[queries.source[row]]] + [inputs[c] for c in candidates]
        emb = model.encode([{"text": it["text"]} for it in items], relation=relation, batch_size=32)
        _ = np.argsort(-(emb[1:] @ emb[0]))
    return (time.perf_counter() - start) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--relations", type=int, default=10)
    parser.add_argument("--queries", type=int, default=100_000, help="edges in the catalogue")
    parser.add_argument("--baseline-sample", type=int, default=200, help="queries timed for the baseline")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rcml-eval-scale-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        data = make_catalogue(root, args.items, args.relations, args.queries)
        elapsed = time.perf_counter() - t
        print(f"generated {args.items} items, {args.queries} edges: {elapsed:.1f} s (not counted)")
        torch.manual_seed(0)
        model = rcml_st.build_model(write_architecture("rcml-tiny", root / "tiny.json"), device="cpu")

        start = time.perf_counter()
        catalog = read_catalog(data)
        t_read = time.perf_counter() - start
        t = time.perf_counter()
        queries = build_queries(catalog, negatives=20, seed=0)
        t_queries = time.perf_counter() - t
        t = time.perf_counter()
        embeddings = rcml_st.encode_relations(
            model, catalog_inputs(catalog), queries.relations, batch_size=64, modalities=("text", "image")
        )
        t_encode = time.perf_counter() - t
        t = time.perf_counter()
        result = score_retrieval(embeddings, queries)
        t_score = time.perf_counter() - t
        total = time.perf_counter() - start

        per_query = per_query_seconds(model, catalog, queries, args.baseline_sample)
        # The baseline above covers one direction (tt); four directions cost about four times that.
        baseline = per_query * len(queries) * 4

    print(f"torch threads {torch.get_num_threads()}, {len(queries)} queries, per direction {result.counts}")
    print(f"  read + validate catalogue      : {t_read:7.1f} s")
    print(f"  draw negatives (vectorised)     : {t_queries:7.1f} s")
    print(f"  encode {args.items} items x {args.relations} relations: {t_encode:7.1f} s")
    print(f"  score 4 directions x 21 cands   : {t_score:7.1f} s")
    print(f"  total (rcml-st)                 : {total:7.1f} s")
    sample = args.baseline_sample
    print(f"  baseline, encode per query      : {baseline:7.0f} s (extrapolated from {sample} queries)")
    print(f"  speed-up                        : {baseline / total:7.0f}x")


if __name__ == "__main__":
    main()

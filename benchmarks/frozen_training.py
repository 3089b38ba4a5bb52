"""Frozen-trunk training: epoch time of full fine-tuning, frozen trunks run every step, and the trunk cache.

Three ways to train on the same pairs in the same batches, each from the same initial weights:

- ``full``: full fine-tuning (every parameter trains; the default of ``rcml-st train``);
- ``frozen``: trunks frozen, computed at every step (``--freeze-backbone`` without the cache; the
  median of ``--epochs`` epochs):
  every step still decodes and transforms the images and runs both trunks forward (no graph);
- ``cached``: trunks frozen, outputs served by the trunk cache (``--freeze-backbone``): a step
  runs the projections, the relation pooling and the loss only. Its first pass (computing the
  cache) is timed apart; the epoch time is the median of ``--epochs`` epochs after it, from
  the in-memory cache and, as ``cached-mmap``, from the memory-mapped files a cache over
  ``--trunk-cache-memory`` uses.

Frozen and cached epochs alternate (frozen, cached, memory-mapped, frozen, ...), so that a ratio
compares epochs run side by side under the same load; the per-epoch ratios are printed too.

Batch sizes: the default is ``rcml-st train``'s (64 pairs); ``--batch-size 16 32 64 128`` runs each
in turn. A cached step has a fixed cost that does not grow with the batch (the relation
descriptions through the text trunk, the optimizer), so the ratio grows with the batch: the
trunks' cost is all per item.

A step is what the trainer's step does: collate the rows (``model.preprocess``, or the cache's
collator), forward, RCML loss, backward, AdamW. No checkpoints are written. Backbones run in one
process, one after the other, so compare the ratios inside one run.

Usage::

    python benchmarks/frozen_training.py                          # rcml-lite and ViT-B-32 (random init), CPU
    python benchmarks/frozen_training.py --backbones rcml-lite --batch-size 16 32 64 128
    python benchmarks/frozen_training.py --backbones rcml-tiny --pairs 128
    python benchmarks/frozen_training.py --json frozen.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from sentence_transformers.base.data_collator import BaseDataCollator

import rcml_st
from rcml_st.data import generate_catalog, read_catalog
from rcml_st.losses import RCMLLoss
from rcml_st.training import build_pairs
from rcml_st.training.frozen import cache_frozen_trunks, freeze_backbone
from rcml_st.training.run import DEFAULT_BATCH_SIZE
from rcml_st.training.trunk_cache import TrunkCache
from rcml_st.training.trunk_collator import TrunkCacheCollator


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["rcml-lite", "ViT-B-32"])
    parser.add_argument("--pairs", type=int, default=256, help="pairs per epoch (the same for every mode)")
    parser.add_argument(
        "--batch-size",
        type=int,
        nargs="+",
        default=[DEFAULT_BATCH_SIZE],
        help=f"pairs per batch; several values run one after the other (default {DEFAULT_BATCH_SIZE}, "
        "as `rcml-st train`)",
    )
    parser.add_argument("--items", type=int, default=200, help="size of the generated catalogue")
    parser.add_argument("--image-size", type=int, default=224, help="side of the generated images (px)")
    parser.add_argument(
        "--catalog", type=Path, help="train on this rcml-st data file instead of a generated catalogue"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=3,
        help="frozen and cached epochs timed, the median is reported (full fine-tuning: one epoch)",
    )
    parser.add_argument("--no-full", action="store_true", help="skip the full fine-tuning epoch (slowest)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args()


def _columns(batch: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k[len(p) :]: v for k, v in batch.items() if k.startswith(p)} for p in ("anchor_", "positive_")]


def _epoch(model: Any, loss: RCMLLoss, collate: Any, batches: list[list[dict]]) -> float:
    """Seconds for one pass over ``batches``: collate, forward, loss, backward, AdamW step."""
    # The trainer's optimizer (`rcml-st train` uses transformers' adamw_torch_fused).
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=True)
    started = time.perf_counter()
    for rows in batches:
        model.train()  # as the trainer does at every step
        batch = collate(rows)
        terms = loss(_columns(batch), batch["label"])
        torch.stack(list(terms.values())).sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def _model(backbone: str, pairs: Any) -> tuple[Any, RCMLLoss]:
    torch.manual_seed(0)
    model = rcml_st.build_model(backbone, device="cpu", relations=pairs.data_relations)
    return model, RCMLLoss(model, pairs.relations, pairs.graph())


def _bench(backbone: str, batches: list[list[dict]], pairs: Any, dataset: Any, work: Path, args: Any) -> dict:
    result: dict[str, Any] = {"backbone": backbone, "batch_size": len(batches[0])}
    result["full_s"] = float("nan")
    if not args.no_full:
        model, loss = _model(backbone, pairs)
        plain = BaseDataCollator(preprocess_fn=model.preprocess)
        _epoch(model, loss, plain, batches[:1])  # warm-up: allocations, kernels
        result["full_s"] = _epoch(model, loss, plain, batches)
        del model, loss

    frozen, frozen_loss = _model(backbone, pairs)
    freeze_backbone(frozen)
    plain = BaseDataCollator(preprocess_fn=frozen.preprocess)
    _epoch(frozen, frozen_loss, plain, batches[:1])

    model, loss = _model(backbone, pairs)
    freeze_backbone(model)
    started = time.perf_counter()
    collator = cache_frozen_trunks(model, dataset, work / f"cache-{backbone}-{len(batches[0])}")
    result["first_pass_s"] = time.perf_counter() - started
    cache = collator.cache
    result["cache"] = {
        "texts": cache.text_count,
        "images": cache.image_count,
        "mib": cache.nbytes / 2**20,
        "kib_per_item": cache.nbytes / 1024 / max(1, cache.text_count + cache.image_count),
    }
    mapped = TrunkCacheCollator(model[0], TrunkCache(cache.folder, memory_gb=0))
    assert not mapped.cache.in_memory
    _epoch(model, loss, collator, batches[:1])
    # Interleaved, so that the modes share whatever else the machine is doing while they run: the
    # ratio compares epochs timed side by side, not minutes apart.
    times: dict[str, list[float]] = {"frozen_s": [], "cached_s": [], "cached_mmap_s": []}
    for _ in range(args.epochs):
        times["frozen_s"].append(_epoch(frozen, frozen_loss, plain, batches))
        times["cached_s"].append(_epoch(model, loss, collator, batches))
        times["cached_mmap_s"].append(_epoch(model, loss, mapped, batches))
    result.update({name: statistics.median(values) for name, values in times.items()})
    ratios = [f / c for f, c in zip(times["frozen_s"], times["cached_s"], strict=True)]
    result["frozen_over_cached_each"] = ratios
    assert collator.cached_preprocess.misses == 0 and mapped.cached_preprocess.misses == 0
    result["full_over_frozen"] = result["full_s"] / result["frozen_s"]
    result["frozen_over_cached"] = result["frozen_s"] / result["cached_s"]
    result["full_over_cached"] = result["full_s"] / result["cached_s"]
    return result


def main() -> None:
    args = _parse()
    work = Path(tempfile.mkdtemp(prefix="rcml-frozen-bench-"))
    if args.catalog is None:
        synth = generate_catalog(
            work / "data", n_items=args.items, seed=0, holdout=0, image_size=args.image_size
        )
        catalog_path, source = synth.train_path, f"generated catalogue, {args.image_size} px images"
    else:
        catalog_path, source = args.catalog, str(args.catalog)
    pairs = build_pairs(read_catalog(catalog_path))
    generator = torch.Generator().manual_seed(0)
    chosen = torch.randperm(len(pairs), generator=generator)[: args.pairs].tolist()
    pairs.pairs = [pairs.pairs[i] for i in chosen]  # the same pairs for every mode and backbone
    dataset = pairs.to_dataset()
    rows = [dataset[i] for i in range(len(dataset))]
    print(f"{len(rows)} pairs ({source}), CPU, {torch.get_num_threads()} threads")
    results = []
    for batch_size in args.batch_size:
        batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
        for backbone in args.backbones:
            result = _bench(backbone, batches, pairs, dataset, work, args)
            results.append(result)
            c = result["cache"]
            print(
                f"{backbone}, {len(batches)} batches of {batch_size}: epoch full {result['full_s']:.2f} s, "
                f"frozen {result['frozen_s']:.2f} s, cached {result['cached_s']:.3f} s (memory-mapped "
                f"{result['cached_mmap_s']:.3f} s; first pass {result['first_pass_s']:.2f} s for "
                f"{c['texts']} texts + {c['images']} images, {c['mib']:.1f} MiB, "
                f"{c['kib_per_item']:.0f} KiB per item)"
            )
            each = ", ".join(f"{r:.1f}x" for r in result["frozen_over_cached_each"])
            print(
                f"  frozen vs cached: {result['frozen_over_cached']:.1f}x (epoch by epoch: {each}); "
                f"full vs cached: "
                f"{result['full_over_cached']:.1f}x; full vs frozen: {result['full_over_frozen']:.2f}x"
            )
            sys.stdout.flush()
    for r in results:
        if r["backbone"] == "rcml-lite":
            print(
                f"rcml-lite, batch {r['batch_size']}: a cached epoch is {r['frozen_over_cached']:.1f}x "
                "faster than frozen (target >= 10x)"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

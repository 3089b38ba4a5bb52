"""Training throughput: RCML (RCMLLoss) against a plain CLIP contrastive step, same backbone, batch, device.

Both sides train the same open_clip architecture from the same weights with AdamW on the same
device, on batches collated beforehand (so the figures are training steps: forward, loss,
backward, optimizer; image decoding is left out of both). Three workloads, measured alternately
in rounds so that a busy machine slows all of them alike:

- ``clip``: open_clip's ``ClipLoss`` on B (image, text) pairs, as open_clip trains.
- ``rcml-own``: RCMLLoss on B intra-sample pairs (each item's own text and image): exactly the
  inputs of the CLIP step, so the ratio is the cost of RCML itself (relation texts through the
  text tower, relation pooling under every relation of the batch, four masked directions).
- ``rcml-mixed``: RCMLLoss on B pairs drawn like training draws them (mostly inter-sample pairs,
  whose two items each bring a text and an image: about twice the backbone inputs per pair).

Pairs per second is the headline; ``inputs/s`` (texts + images through the towers) shows that the
mixed workload's lower pair rate is the extra inputs, not overhead.

Usage::

    python benchmarks/train_throughput.py                         # rcml-small, CPU/GPU auto
    python benchmarks/train_throughput.py --backbone ViT-B-32 --batch-size 32 --rounds 3
    python benchmarks/train_throughput.py --backbone ViT-B-32 --device cuda --bf16 --batch-size 256
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from open_clip.loss import ClipLoss
from sentence_transformers.base.data_collator import BaseDataCollator

import rcml_st
from rcml_st.data import generate_catalog, load_image, read_catalog
from rcml_st.losses import RCMLLoss
from rcml_st.modules.architectures import is_builtin, write_architecture
from rcml_st.modules.backbone import create_backbone
from rcml_st.training import build_pairs


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backbone", default="rcml-small", help="open_clip name, config JSON or rcml-tiny/small"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per workload and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (the median is reported)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA)")
    parser.add_argument("--items", type=int, default=400, help="size of the generated catalogue")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args()


def _spec(backbone: str, folder: Path) -> str:
    return (
        str(write_architecture(backbone, folder / f"{backbone}.json")) if is_builtin(backbone) else backbone
    )


def _collate(model: Any, rows: list[dict[str, Any]], device: torch.device) -> tuple[list[dict], torch.Tensor]:
    batch = BaseDataCollator(model.preprocess)(rows)
    features = [
        {k[len(p) :]: v.to(device) for k, v in batch.items() if k.startswith(p)}
        for p in ("anchor_", "positive_")
    ]
    return features, batch["label"].to(device)


def _inputs(features: list[dict]) -> int:
    return sum(
        int(f["input_ids"].shape[0]) + int(f.get("pixel_values", torch.zeros(0)).shape[0]) for f in features
    )


def main() -> None:
    args = _parse()
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if args.bf16
        else contextlib.nullcontext()
    )
    tmp = Path(tempfile.mkdtemp(prefix="rcml-bench-"))
    synth = generate_catalog(tmp / "data", n_items=args.items, seed=0, holdout=0)
    catalog = read_catalog(synth.train_path)
    pairs = build_pairs(catalog)
    dataset = pairs.to_dataset()
    spec = _spec(args.backbone, tmp)

    torch.manual_seed(0)
    model = rcml_st.build_model(spec, device=str(device))
    loss = RCMLLoss(model, pairs.relations, pairs.graph()).to(device)
    rcml_opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    clip = create_backbone(spec).model.to(device)  # same architecture, plain open_clip outputs
    clip.load_state_dict(model[0].model.state_dict())
    clip_loss = ClipLoss()
    clip_opt = torch.optim.AdamW(clip.parameters(), lr=1e-5)
    clip_tokenizer, clip_transform = model[0].tokenizer, model[0].image_transform

    b = args.batch_size
    generator = torch.Generator().manual_seed(0)
    batches_needed = args.steps
    own = [i for i, (s, t, _) in enumerate(pairs.pairs) if s == t]
    own_batches, mixed_batches, clip_batches = [], [], []
    for _ in range(batches_needed):
        chosen = [own[int(i)] for i in torch.randperm(len(own), generator=generator)[:b]]
        own_batches.append(_collate(model, [dataset[i] for i in chosen], device))
        items = [catalog.items[pairs.pairs[i][0]] for i in chosen]
        clip_batches.append(
            (
                torch.stack([clip_transform(load_image(item.image)) for item in items]).to(device),
                clip_tokenizer([item.text for item in items]).to(device),
            )
        )
        mixed = torch.randperm(len(dataset), generator=generator)[:b].tolist()
        mixed_batches.append(_collate(model, [dataset[i] for i in mixed], device))

    def rcml_step(batch: tuple[list[dict], torch.Tensor]) -> None:
        with autocast:
            terms = loss(*batch)
        torch.stack(list(terms.values())).sum().backward()
        rcml_opt.step()
        rcml_opt.zero_grad(set_to_none=True)

    def clip_step(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        with autocast:
            image_features, text_features, logit_scale = clip(*batch)[:3]
            value = clip_loss(image_features.float(), text_features.float(), logit_scale.float())
        value.backward()
        clip_opt.step()
        clip_opt.zero_grad(set_to_none=True)

    workloads = {
        "clip": (clip_step, clip_batches, lambda batch: 2 * batch[0].shape[0]),
        "rcml-own": (rcml_step, own_batches, lambda batch: _inputs(batch[0])),
        "rcml-mixed": (rcml_step, mixed_batches, lambda batch: _inputs(batch[0])),
    }
    model.train()
    clip.train()
    for step, batches, _ in workloads.values():  # warm-up: allocations, kernels, caches
        step(batches[0])
    rates: dict[str, list[float]] = {name: [] for name in workloads}
    inputs: dict[str, list[float]] = {name: [] for name in workloads}
    for _ in range(args.rounds):
        for name, (step, batches, count) in workloads.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            for batch in batches:
                step(batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            rates[name].append(len(batches) * b / seconds)
            inputs[name].append(sum(count(batch) for batch in batches) / seconds)

    result = {
        "backbone": args.backbone,
        "device": str(device) + (" bf16" if args.bf16 else ""),
        "batch_size": b,
        "threads": torch.get_num_threads(),
        "pairs_per_second": {name: statistics.median(values) for name, values in rates.items()},
        "inputs_per_second": {name: statistics.median(values) for name, values in inputs.items()},
    }
    clip_rate = result["pairs_per_second"]["clip"]
    result["ratio_pairs"] = {
        name: result["pairs_per_second"][name] / clip_rate for name in ("rcml-own", "rcml-mixed")
    }
    result["ratio_inputs"] = {
        name: result["inputs_per_second"][name] / result["inputs_per_second"]["clip"]
        for name in ("rcml-own", "rcml-mixed")
    }
    print(f"backbone {args.backbone}, batch {b}, device {result['device']}, {result['threads']} threads")
    print(f"{'workload':<12}{'pairs/s':>10}{'inputs/s':>10}{'ratio (pairs)':>15}")
    for name in workloads:
        ratio = "1.00" if name == "clip" else f"{result['ratio_pairs'][name]:.2f}"
        print(
            f"{name:<12}{result['pairs_per_second'][name]:>10.1f}{result['inputs_per_second'][name]:>10.1f}"
            f"{ratio:>15}"
        )
    own_ratio = result["ratio_pairs"]["rcml-own"]
    print(f"RCML / CLIP pairs per second on the same inputs: {own_ratio:.2f} (target >= 0.8)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

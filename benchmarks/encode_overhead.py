"""Encoding cost of RCML against plain open_clip, and of many relations against one.

Run:
    .venv/bin/python benchmarks/encode_overhead.py            # ViT-B-32, random weights, CPU
    .venv/bin/python benchmarks/encode_overhead.py --quick    # fewer images and repeats

(1) The same images encoded by the RCML model under one relation (``model.encode``) and by plain
    open_clip (``encode_image`` after open_clip's own preprocessing), same backbone, same batch
    size, same device, runs alternating; the ratio of median times (target <= 1.15x; the paper
    reports 1.56x).
(2) ``rcml_st.encode_relations`` with 8 relations against 1 relation (target <= 1.6x).
Both include image preprocessing (PIL -> tensor), as a user's call does.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image

import rcml_st

RELATIONS = [
    "used together for infant feeding",
    "matches in colour",
    "made by the same brand",
    "viewed as an alternative to",
    "bought after viewing",
    "used together for bath time",
    "suitable for the same age",
    "stylistically similar",
]


def _images(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), "RGB") for _ in range(count)]


def _median_time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _alternate(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    for fn in runs.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(_median_time(fn))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="ViT-B-32")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="32 images, 3 repeats")
    args = parser.parse_args()
    if args.quick:
        args.images, args.repeats = 32, 3

    torch.manual_seed(0)
    model = rcml_st.build_model(args.backbone, device=args.device)
    model.eval()
    clip, _, preprocess = open_clip.create_model_and_transforms(args.backbone, device=args.device)
    clip.eval()
    images = _images(args.images)
    batch = args.batch_size

    def plain_open_clip() -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), batch):
                pixels = torch.stack([preprocess(im) for im in images[start : start + batch]]).to(args.device)
                out.append(F.normalize(clip.encode_image(pixels), dim=-1).cpu())
        return torch.cat(out).numpy()

    def rcml_one_relation() -> np.ndarray:
        return model.encode(images, relation=RELATIONS[0], batch_size=batch)

    def many(relations: list[str]) -> Callable[[], object]:
        return lambda: rcml_st.encode_relations(
            model, images, relations, batch_size=batch, modalities=("item",)
        )

    print(
        f"backbone {args.backbone} (random weights), {args.images} images 256x256, batch {batch}, "
        f"device {args.device}, torch threads {torch.get_num_threads()}, "
        f"median of {args.repeats} alternating runs"
    )
    t = _alternate({"open_clip": plain_open_clip, "rcml": rcml_one_relation}, args.repeats)
    n = args.images
    print(f"  plain open_clip encode_image : {t['open_clip']:.3f} s ({n / t['open_clip']:.1f} images/s)")
    print(f"  RCML encode, 1 relation      : {t['rcml']:.3f} s ({n / t['rcml']:.1f} images/s)")
    ratio = t["rcml"] / t["open_clip"]
    print(f"  ratio RCML / open_clip       : {ratio:.3f}x   (target <= 1.15x; paper 1.56x)")

    m = _alternate({"1": many(RELATIONS[:1]), "8": many(RELATIONS)}, args.repeats)
    print(f"  encode_relations, 1 relation : {m['1']:.3f} s")
    print(f"  encode_relations, 8 relations: {m['8']:.3f} s")
    print(f"  ratio 8 / 1 relations        : {m['8'] / m['1']:.3f}x   (target <= 1.6x)")


if __name__ == "__main__":
    main()

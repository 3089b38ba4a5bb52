"""Quality on real weights and real data: RCML fine-tuned from rcml-lite vs the zero-shot backbone.

Two real catalogues, each split by items (75% train, 25% held out, ``--seed``), the paper's
protocol on the held-out items (every edge a query, 1 positive + 20 negatives, Hit@5):

- ``magazine``: the real Amazon 2018 *Magazine Subscriptions* metadata in ``../shared/data``
  (2,320 items, text only), through ``rcml-st prepare amazon``: its own ``also_buy`` /
  ``also_view`` lists are the relations.
- ``digits``: the real handwritten digits that scikit-learn ships (1,797 8 x 8 scans by 43 writers,
  UCI), image only, under two relations that group the same images in conflicting ways: "shows the
  same digit" and "the two digits add up to nine" (a 3 goes with the 6s). The images are real, the
  relations are derived from their labels.

Per catalogue, in one run: RCML (``rcml-st train --backbone rcml-lite``), the same data and loss
with ``--no-conditioning``, and the zero-shot backbone (the ``clip`` baseline of an untrained
rcml-lite: relation text appended to the item text; for images, the plain image embedding) and
the training-free ``product`` baseline. Everything goes through the command line, as a user
would run it.

Usage::

    python benchmarks/pretrained_quality.py                       # both catalogues
    python benchmarks/pretrained_quality.py --data magazine --epochs 2 --pairs-per-epoch 2048
    python benchmarks/pretrained_quality.py --freeze-backbone     # trunks frozen (faster on CPU)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MAGAZINE = REPO.parent / "shared" / "data" / "amazon" / "meta_Magazine_Subscriptions_2018.json.gz"
SAME_DIGIT, NINE = "shows the same digit", "the two digits add up to nine"
DIRECTIONS = ("tt", "ii", "ti", "it", "avg")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=["magazine", "digits", "both"], default="both")
    parser.add_argument("--work", type=Path, default=Path("bench-pretrained"), help="working folder")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--pairs-per-epoch", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--partners", type=int, default=4, help="digits: partners per image and relation")
    parser.add_argument("--freeze-backbone", action="store_true", help="train with the trunks frozen")
    return parser.parse_args()


def _cli(*args: str) -> None:
    command = [sys.executable, "-m", "rcml_st.cli.main", *args]
    print("$ rcml-st " + " ".join(args), flush=True)
    subprocess.run(command, check=True)


def _split(source: Path, folder: Path, seed: int) -> tuple[Path, Path]:
    from rcml_st.data.catalog import read_catalog, write_catalog

    catalog = read_catalog(source)
    order = np.random.default_rng(seed).permutation(len(catalog))
    cut = int(0.75 * len(catalog))
    paths = folder / "train.jsonl", folder / "test.jsonl"
    for indices, path in zip((order[:cut], order[cut:]), paths, strict=True):
        part = catalog.subset(sorted(int(i) for i in indices))
        write_catalog(part.items, path)
        print(f"{path.name}: {len(part)} items, {len(part.edges)} edges {part.edge_counts}")
    return paths


def _magazine(folder: Path) -> Path:
    out = folder / "magazine.jsonl"
    if not out.is_file():
        _cli("prepare", "amazon", str(MAGAZINE), "--output", str(out))
    return out


def _digits(folder: Path, partners: int, seed: int) -> Path:
    from PIL import Image
    from sklearn.datasets import load_digits

    from rcml_st.data.catalog import write_catalog

    out = folder / "digits.jsonl"
    if out.is_file():
        return out
    digits = load_digits()
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    labels = digits.target
    by_label = {d: np.flatnonzero(labels == d) for d in range(10)}
    rng = np.random.default_rng(seed)
    items = []
    for i, (pixels, label) in enumerate(zip(digits.images, labels, strict=True)):
        name = f"images/D{i:04d}.png"
        # 0..16 ink levels -> dark ink on white paper, 8 x 8 -> 32 x 32 (the tower resizes further).
        grey = (255 - pixels * 255 / 16).astype(np.uint8)
        Image.fromarray(grey, "L").resize((32, 32), Image.NEAREST).convert("RGB").save(folder / name)
        same = [j for j in by_label[label] if j != i]
        relations = {
            SAME_DIGIT: [f"D{j:04d}" for j in rng.choice(same, partners, replace=False)],
            NINE: [f"D{j:04d}" for j in rng.choice(by_label[9 - label], partners, replace=False)],
        }
        items.append({"id": f"D{i:04d}", "image": name, "relations": relations, "digit": int(label)})
    write_catalog(items, out)
    return out


def _run(name: str, source: Path, folder: Path, args: argparse.Namespace) -> dict[str, dict]:
    train, test = _split(source, folder, args.seed)
    common = [
        "--backbone", "rcml-lite", "--lr", str(args.lr), "--epochs", str(args.epochs),
        "--pairs-per-epoch", str(args.pairs_per_epoch), "--batch-size", str(args.batch_size),
        "--seed", str(args.seed),
    ]  # fmt: skip
    if args.freeze_backbone:
        common.append("--freeze-backbone")
    seconds = {}
    for variant, extra in (("rcml", []), ("no-conditioning", ["--no-conditioning"])):
        out = folder / "runs" / variant
        if not (out / "modules.json").is_file():
            started = time.monotonic()
            _cli("train", str(train), "--output", str(out), *common, *extra)
            seconds[variant] = time.monotonic() - started
    # The zero-shot backbone: an untrained rcml-lite, saved with the data's relation vocabulary.
    zero_shot = folder / "runs" / "zero-shot"
    if not (zero_shot / "modules.json").is_file():
        import rcml_st
        from rcml_st.data.catalog import read_catalog

        model = rcml_st.build_model("rcml-lite", relations=read_catalog(train).relations, device="cpu")
        model.save_pretrained(str(zero_shot))
    reports = {}
    runs = folder / "runs"
    for model, compare in ((runs / "rcml", runs / "no-conditioning"), (zero_shot, None)):
        report = folder / f"report-{model.name}.json"
        _cli("evaluate", str(test), "--model", str(model), "--json", str(report),
             *(["--compare", str(compare)] if compare else []))  # fmt: skip
        reports[model.name] = json.loads(report.read_text())
    rows = {
        "RCML (fine-tuned rcml-lite)": reports["rcml"]["retrieval"]["rcml"],
        "same data + loss, --no-conditioning": reports["rcml"]["retrieval"]["no-conditioning"],
        "zero-shot backbone (`clip`: relation text appended)": reports["zero-shot"]["retrieval"]["clip"],
        "`product`: training-free (zA.zr)(zB.zr), zero-shot": reports["zero-shot"]["retrieval"]["product"],
    }
    queries = reports["rcml"]["settings"]["queries"]
    print(f"\n{name}: {queries} held-out queries; training seconds {seconds or '(reused)'}")
    print("| method (Hit@5) | " + " | ".join(DIRECTIONS) + " |")
    print("|---|" + "---|" * len(DIRECTIONS))
    for label, row in rows.items():
        cells = [
            "n/a" if not row.get(d) or row[d].get("hit@5") is None else f"{row[d]['hit@5']:.3f}"
            for d in DIRECTIONS
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")
    relation_type = {m: v.get("top1") for m, v in reports["rcml"].get("relation_type", {}).items()}
    print(f"relation type top-1: {relation_type}")
    return rows


def main() -> None:
    args = _parse()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = ["magazine", "digits"] if args.data == "both" else [args.data]
    for name in names:
        folder = (args.work / name).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        source = _magazine(folder) if name == "magazine" else _digits(folder, args.partners, args.seed)
        _run(name, source, folder, args)


if __name__ == "__main__":
    main()

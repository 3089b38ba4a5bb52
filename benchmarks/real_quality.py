"""RCML against what a user would pick instead, on real catalogues: every method x direction, with cost.

One command; per catalogue, on held-out items (never seen in training), the same queries for every
method, with the paper's random negatives (Hit@5) and with hard negatives (Hit@1; the source's
partners under the *other* relations, where a model that ignores the relation fails):

- ``clipart``: the Open Clip Art Library (real drawings with their titles, text+image), built by
  ``benchmarks/build_openclipart.py`` from the extracted Debian packages (``--openclipart``); three
  conflicting relations (same category, same artist, shared keyword). Subsampled deterministically:
  whole artists with 5+ drawings in a seeded order, at most ``--per-artist`` each, ``--limit`` in
  all; the held-out quarter is a hash of each drawing's id.
- ``magazine``: the real Amazon *Magazine Subscriptions* metadata (text only) through
  ``rcml-st prepare amazon``; relations ``also_buy`` / ``also_view``; 75/25 item split (``--seed``).
- ``digits``: scikit-learn's real handwritten digits (image only), "same digit" vs "adds up to
  nine" (the relations are derived from the labels); 75/25 item split.

Methods, all trained on the same training pairs with the same budget (``--epochs`` x
``--pairs-per-epoch`` pairs, batch ``--batch-size``):

- ``RCML``: ``rcml-st train --backbone rcml-lite --freeze-backbone`` (pretrained all-MiniLM-L6-v2
  and EfficientNet-Lite0 trunks, frozen; projections and relation pooling trained);
- ``RCML by-source``: the same with ``--batches by-source`` (an item's pairs under different
  relations in one batch: relation-aware hard negatives in the loss);
- ``no-conditioning``: the same training with ``--no-conditioning`` (and with ``--batches by-source``);
- ``specialists``: one such model per relation, each trained on that relation's pairs only with
  the whole budget (R models, R times the training and R backbone passes per item to index);
- ``prompted MiniLM``: what a sentence-transformers user would do: all-MiniLM-L6-v2 fine-tuned with
  the relation written into both texts (``"{relation}: {text}"``), MultipleNegativesRankingLoss,
  SentenceTransformerTrainer, the same text pairs and number of pairs seen (text directions only);
- ``prompted two-tower``: for text+image, the same recipe on rcml-lite's two towers (trained like
  ``no-conditioning``, on one copy of each item per relation whose text carries the prompt; the
  image side cannot carry one);
- ``MiniLM zero-shot (prompted)``: the same model untrained, same prompt;
- ``zero-shot backbone``: the untrained rcml-lite, relation text appended to the item text;
- ``RCML's backbone w/o pooling (clip)``: the trained RCML model's *own* (trained projections)
  backbone without its relation pooling, relation text appended (``rcml-st evaluate``'s ``clip``);
- ``product``: the training-free ``(zA.zr)(zB.zr)`` score on the zero-shot backbone.

Cost: seconds to encode the held-out items under all R relations (what indexing R relations costs;
measured on a shared machine, compare within one run) and the backbone passes that takes.

Usage::

    python benchmarks/real_quality.py --openclipart /tmp/openclipart          # all three catalogues
    python benchmarks/real_quality.py --data clipart --openclipart /tmp/openclipart --limit 800
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import build_openclipart
import pretrained_quality

DIRECTIONS = ("tt", "ii", "ti", "it", "avg")
TEMPLATE = "{relation}: {text}"


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", nargs="+", choices=["clipart", "magazine", "digits"], default=["clipart", "magazine"]
    )
    parser.add_argument(
        "--openclipart", type=Path, default=Path("/tmp/openclipart"), help="extracted packages"
    )
    parser.add_argument("--work", type=Path, default=Path("bench-real"), help="working folder (reused)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--pairs-per-epoch", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="RCML heads (frozen trunks)")
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="RCML-family trainings' loss temperature (rcml-st train --temperature; default: not passed, "
        "rcml-st's own). Rows and runs do not record it: give each temperature a --work folder of its own",
    )
    parser.add_argument("--st-lr", type=float, default=5e-5, help="prompted MiniLM (full fine-tune)")
    parser.add_argument("--limit", type=int, default=800, help="clip art: drawings in all")
    parser.add_argument("--per-artist", type=int, default=30, help="clip art: drawings per artist at most")
    parser.add_argument("--partners", type=int, default=4, help="targets per item and relation")
    parser.add_argument("--negatives", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="subsample, split and queries")
    parser.add_argument(
        "--train-seed", type=int, default=None, help="the training runs' seed (default: --seed)"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL=OPTIONS",
        help="an extra RCML row trained with these rcml-st train options, e.g. 'beta 0.2=--beta 0.2'",
    )
    parser.add_argument(
        "--only", nargs="*", default=[], help="evaluate only these method rows (others run apart)"
    )
    parser.add_argument("--skip", nargs="*", default=[], help="method keys to leave out (e.g. specialists)")
    return parser.parse_args()


def _train_seed(args: argparse.Namespace) -> int:
    return args.seed if args.train_seed is None else args.train_seed


def _cli(*args: str) -> float:
    print("$ rcml-st " + " ".join(args), flush=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "rcml_st.cli.main", *args], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def _catalogue(name: str, folder: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    if name == "clipart":
        if not (folder / "test.jsonl").is_file():
            build_openclipart.main([
                str(args.openclipart), "--output", str(folder), "--limit", str(args.limit),
                "--per-artist", str(args.per_artist), "--partners", str(args.partners),
                "--seed", str(args.seed),
            ])  # fmt: skip
        return folder / "train.jsonl", folder / "test.jsonl"
    if (folder / "test.jsonl").is_file():
        return folder / "train.jsonl", folder / "test.jsonl"
    if name == "magazine":
        source = pretrained_quality._magazine(folder)
    else:
        source = pretrained_quality._digits(folder, args.partners, args.seed)
    return pretrained_quality._split(source, folder, args.seed)


def _only_relation(train: Path, relation: str, index: int) -> Path:
    """The training file with one relation's edges (every item kept: same intra-sample pairs)."""
    out = train.with_name(f"train-relation{index}.jsonl")
    if not out.is_file():
        lines = []
        for line in train.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            record["relations"] = {r: t for r, t in record.get("relations", {}).items() if r == relation}
            lines.append(json.dumps(record, ensure_ascii=False))
        tmp = out.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(out)
    return out


def _prompted_copies(train: Path) -> Path:
    """The training file for a prompted two-tower model: one copy of each item per relation.

    Copy ``id|r`` has the text ``"{r}: {text}"`` and the item's image, and links the copies
    ``t|r`` of the item's partners under ``r``: the same pairs as RCML's, the relation written into
    the texts (the image side cannot carry a prompt).
    """
    out = train.with_name("train-prompted.jsonl")
    if not out.is_file():
        records = [json.loads(line) for line in train.read_text(encoding="utf-8").splitlines()]
        relations = sorted({r for record in records for r in record.get("relations", {})})
        lines = []
        for record in records:
            for relation in relations:
                copy = {"id": f"{record['id']}|{relation}", "image": record.get("image")}
                if record.get("text"):
                    copy["text"] = TEMPLATE.format(relation=relation, text=record["text"])
                targets = record.get("relations", {}).get(relation, [])
                copy["relations"] = {relation: [f"{t}|{relation}" for t in targets]} if targets else {}
                lines.append(json.dumps({k: v for k, v in copy.items() if v is not None}, ensure_ascii=False))
        tmp = out.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(out)
    return out


def _train_rcml(train: Path, out: Path, args: argparse.Namespace, *extra: str) -> float | None:
    if (out / "modules.json").is_file():
        return None
    if args.temperature is not None:
        extra = ("--temperature", str(args.temperature), *extra)
    return _cli(
        "train", str(train), "--output", str(out), "--backbone", "rcml-lite", "--freeze-backbone",
        "--lr", str(args.lr), "--epochs", str(args.epochs), "--pairs-per-epoch", str(args.pairs_per_epoch),
        "--batch-size", str(args.batch_size), "--seed", str(_train_seed(args)), *extra,
    )  # fmt: skip


def _minilm():
    """all-MiniLM-L6-v2 as sentence-transformers builds it (mean pooling, normalized), from the lite wheel."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    from rcml_st.modules.lite import text_tower_dir

    transformer = Transformer(str(text_tower_dir()), max_seq_length=256)
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    return SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu")


def _train_prompted_minilm(train: Path, out: Path, args: argparse.Namespace) -> float | None:
    """The usual sentence-transformers recipe, the relation as a prompt on both sides."""
    if (out / "modules.json").is_file():
        return None
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    from rcml_st.data.catalog import read_catalog

    catalog = read_catalog(train, check_images=False)
    items = catalog.items
    anchors, positives = [], []
    for edge in catalog.edges:  # the same inter-sample pairs RCML trains on (texts only)
        a, b = items[edge.source].text, items[edge.target].text
        if a and b:
            anchors.append(TEMPLATE.format(relation=edge.relation, text=a))
            positives.append(TEMPLATE.format(relation=edge.relation, text=b))
    dataset = Dataset.from_dict({"anchor": anchors, "positive": positives})
    model = _minilm()
    started = time.monotonic()
    trainer = SentenceTransformerTrainer(
        model=model,
        train_dataset=dataset,
        loss=MultipleNegativesRankingLoss(model),
        args=SentenceTransformerTrainingArguments(
            output_dir=str(out) + ".checkpoints",
            max_steps=args.epochs * (args.pairs_per_epoch // args.batch_size),  # as many pairs as RCML sees
            per_device_train_batch_size=args.batch_size,
            learning_rate=args.st_lr,
            warmup_steps=0.1,  # a ratio (transformers 5)
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            seed=_train_seed(args),
            disable_tqdm=True,
        ),
    )
    trainer.train()
    model.save_pretrained(str(out))
    return time.monotonic() - started


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label).strip("-")


def _variants(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """``--variant 'LABEL=--beta 0.2 --batches by-source'`` -> [(LABEL, [options...])]."""
    out = []
    for spec in args.variant:
        label, _, options = spec.partition("=")
        out.append((label.strip(), options.split()))
    return out


def _timed(encode: Callable[..., object], *args: object) -> tuple[object, float]:
    started = time.perf_counter()
    value = encode(*args)
    return value, time.perf_counter() - started


def _per_relation_hit1(result, queries, relations: list[str], direction: str) -> dict[str, float]:
    rows = queries.rows(direction)
    ranks = result.ranks[direction]
    out: dict[str, float] = {}
    if ranks.size != rows.size:  # a direction the method does not serve
        return out
    for index, relation in enumerate(relations):
        mine = queries.relation[rows] == index
        if mine.any():
            out[relation] = float(np.mean(ranks[mine] <= 1))  # ranks start at 1: the target first
    return out


def evaluate(name: str, folder: Path, train: Path, test: Path, args: argparse.Namespace) -> dict:
    import rcml_st
    from rcml_st.data.catalog import read_catalog
    from rcml_st.encoding import RelationEmbeddings, encode_relations
    from rcml_st.evaluation import build_hard_queries, build_queries, chance_metrics, score_retrieval
    from rcml_st.evaluation.methods import catalog_inputs, clip_baseline, encode_with_plain, product_baseline
    from rcml_st.evaluation.prompted import PromptedModel, encode_prompted, served_directions

    runs = folder / "runs"
    catalog = read_catalog(test)
    train_catalog = read_catalog(train, check_images=False)
    relations = catalog.relations
    n, r = len(catalog), len(relations)
    has_text = any(item.text for item in catalog.items)
    has_image = any(item.image for item in catalog.items)
    training: dict[str, float | None] = {}
    skip = set(args.skip)
    training["rcml"] = _train_rcml(train, runs / "rcml", args)
    if "by-source" not in skip:
        training["rcml-by-source"] = _train_rcml(
            train, runs / "rcml-by-source", args, "--batches", "by-source"
        )
    training["no-conditioning"] = _train_rcml(train, runs / "no-conditioning", args, "--no-conditioning")
    if "by-source" not in skip:
        training["no-conditioning-by-source"] = _train_rcml(
            train, runs / "no-conditioning-by-source", args, "--no-conditioning", "--batches", "by-source"
        )
    for label, extra in _variants(args):
        training[f"variant-{_slug(label)}"] = _train_rcml(
            train, runs / f"variant-{_slug(label)}", args, *extra
        )
    if "specialists" not in skip:
        for i, relation in enumerate(train_catalog.relations):
            training[f"specialist{i}"] = _train_rcml(
                _only_relation(train, relation, i), runs / f"specialist{i}", args
            )
    if has_text and has_image and "prompted" not in skip:
        copies = _prompted_copies(train)
        training["prompted-two-tower"] = _train_rcml(
            copies, runs / "prompted-two-tower", args, "--no-conditioning"
        )
    if has_text and "prompted" not in skip:
        training["prompted-minilm"] = _train_prompted_minilm(train, runs / "prompted-minilm", args)

    queries = build_queries(catalog, args.negatives, args.seed, relations)
    hard = build_hard_queries(catalog, args.negatives, args.seed, relations)
    rows: dict[str, dict] = {}

    saved = folder / "rows"  # each method's row, kept: a rerun evaluates only what is new
    saved.mkdir(exist_ok=True)

    def path_of(label: str) -> Path:
        return saved / ("".join(c if c.isalnum() else "-" for c in label) + ".json")

    def done(*labels: str) -> bool:
        if args.only and not set(labels) & set(args.only):
            return True  # not asked for in this process (--only)
        if not all(path_of(label).is_file() for label in labels):
            return False
        for label in labels:
            rows[label] = json.loads(path_of(label).read_text())
        return True

    def add(label: str, embeddings: RelationEmbeddings, seconds: float, passes: str, served=None) -> None:
        easy = score_retrieval(embeddings, queries, served)
        tough = score_retrieval(embeddings, hard, served)
        rows[label] = {
            "random": easy.metrics,
            "hard": tough.metrics,
            "hard_ii_by_relation": _per_relation_hit1(tough, hard, relations, "ii") if has_image else {},
            "hard_tt_by_relation": _per_relation_hit1(tough, hard, relations, "tt") if has_text else {},
            "encode_seconds": round(seconds, 1),
            "passes": passes,
        }
        path_of(label).write_text(json.dumps(rows[label]))
        print(
            f"  {label}: avg hit@5 {easy.metrics['avg']['hit@5']}, hard hit@1 {tough.metrics['avg']['hit@1']}"
        )

    per_item = f"{n} ({r} relations: 1 per item)"
    per_pair_text = f"{n * r} text + {n} image" if has_image and has_text else f"{n * r}"
    clip_label = "RCML's backbone w/o pooling (clip)"
    if not done("RCML", clip_label):
        rcml_model = rcml_st.load(runs / "rcml", device="cpu")
        (conditioned, plain), seconds = _timed(encode_with_plain, rcml_model, catalog, relations)
        add("RCML", conditioned, seconds, per_item)
        clip, seconds = _timed(clip_baseline, rcml_model, catalog, relations, plain)
        add(clip_label, clip, seconds, per_pair_text)
        del rcml_model, conditioned, plain, clip
    variants = [("RCML by-source", "rcml-by-source")]
    variants += [(f"RCML {label}", f"variant-{_slug(label)}") for label, _ in _variants(args)]
    variants += [
        ("no-conditioning", "no-conditioning"),
        ("no-conditioning by-source", "no-conditioning-by-source"),
    ]
    for label, run in variants:
        if (runs / run / "modules.json").is_file() and not done(label):
            model = rcml_st.load(runs / run, device="cpu")
            (conditioned, _), seconds = _timed(encode_with_plain, model, catalog, relations)
            add(label, conditioned, seconds, per_item)
            del model, conditioned
    specialists_label = f"specialists ({r} models)"
    if "specialists" not in skip and not done(specialists_label):
        parts, total = [], 0.0
        for relation in relations:
            index = train_catalog.relations.index(relation)
            model = rcml_st.load(runs / f"specialist{index}", device="cpu")
            part, seconds = _timed(encode_relations, model, catalog_inputs(catalog), [relation])
            parts.append(part)
            total += seconds
        stacked = {m: np.concatenate([p.get(m) for p in parts]) for m in ("item", "text", "image")}
        specialists = RelationEmbeddings(
            relations,
            stacked["item"],
            stacked["text"],
            stacked["image"],
            parts[0].has_text,
            parts[0].has_image,
        )
        add(specialists_label, specialists, total, f"{n * r} ({r} models)")
        del parts, stacked, specialists
    if has_text and "prompted" not in skip:
        from sentence_transformers import SentenceTransformer

        for label, load in (
            (
                "prompted MiniLM fine-tune",
                lambda: SentenceTransformer(str(runs / "prompted-minilm"), device="cpu"),
            ),
            ("MiniLM zero-shot (prompted)", _minilm),
        ):
            if not done(label):
                prompted = PromptedModel(load(), TEMPLATE)
                embeddings, seconds = _timed(encode_prompted, prompted, catalog, relations)
                add(
                    label,
                    embeddings,
                    seconds,
                    f"{n * r} (texts only)",
                    served_directions(prompted.modalities),
                )
    two_tower = "prompted two-tower fine-tune (rcml-lite towers)"
    if (runs / "prompted-two-tower" / "modules.json").is_file() and not done(two_tower):
        # Trained with beta = 1: its output is the towers' own embedding, whatever the relation.
        prompted = PromptedModel(rcml_st.load(runs / "prompted-two-tower", device="cpu"), TEMPLATE)
        embeddings, seconds = _timed(encode_prompted, prompted, catalog, relations)
        add(two_tower, embeddings, seconds, per_pair_text)
    zero_label, product_label = (
        "zero-shot backbone (untrained rcml-lite)",
        "product (training-free, zero-shot)",
    )
    if not done(zero_label, product_label):
        zero_shot = rcml_st.build_model("rcml-lite", relations=relations, device="cpu")
        (_, plain), _ = _timed(encode_with_plain, zero_shot, catalog, relations)
        clip, seconds = _timed(clip_baseline, zero_shot, catalog, relations, plain)
        add(zero_label, clip, seconds, per_pair_text)
        add(product_label, product_baseline(zero_shot, relations, plain), 0.0, per_item)
    return {
        "catalogue": name,
        "items": n,
        "train_items": len(train_catalog),
        "relations": relations,
        "queries": int(len(queries) - queries.incomplete),
        "hard_queries": {d: int(c) for d, c in hard.counts().items()},
        "hard_chance_hit@1": chance_metrics(hard)["avg"]["hit@1"],
        "has_text": has_text,
        "has_image": has_image,
        "training_seconds": training,
        "methods": rows,
    }


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def markdown(result: dict) -> str:
    """The catalogue's tables: random negatives Hit@5, hard negatives Hit@1, cost."""
    lines = [
        f"### {result['catalogue']}: {result['items']} held-out items ({result['train_items']} in training), "
        f"{len(result['relations'])} relations, {result['queries']} queries",
        "",
        f"Hard negatives: {max(result['hard_queries'].values())} queries have some; a random ranking scores "
        f"Hit@1 {result['hard_chance_hit@1']:.3f} there.",
        "",
        "| method | Hit@5 tt | ii | ti | it | avg | hard Hit@1 tt | ii | ti | it | avg "
        "| encode s | backbone passes |",
        "|---|" + "---|" * 12,
    ]
    for label, row in result["methods"].items():
        easy = [_cell(row["random"][d]["hit@5"]) for d in DIRECTIONS]
        hard = [_cell(row["hard"][d]["hit@1"]) for d in DIRECTIONS]
        lines.append(
            f"| {label} | " + " | ".join(easy + hard) + f" | {row['encode_seconds']} | {row['passes']} |"
        )
    lines.append("")
    by_relation = {
        k: v["hard_ii_by_relation"]
        for k, v in result["methods"].items()
        if v["hard_ii_by_relation"] and any(v["hard_ii_by_relation"].values())
    }
    if by_relation:
        lines.append("Hard-negative image->image Hit@1 per relation:")
        lines.append("")
        names = result["relations"]
        lines.append("| method | " + " | ".join(names) + " |")
        lines.append("|---|" + "---|" * len(names))
        for label, values in by_relation.items():
            lines.append(f"| {label} | " + " | ".join(_cell(values.get(x)) for x in names) + " |")
        lines.append("")
    return "\n".join(lines)


def targets(result: dict) -> str:
    """The issue's targets, checked for each RCML row against the same run's baselines."""
    rows = result["methods"]

    def get(label: str, table: str, direction: str, metric: str) -> float | None:
        row = rows.get(label)
        return None if row is None else row[table][direction][metric]

    lines = []
    for label in [k for k in rows if k.startswith("RCML") and "clip" not in k]:
        checks = []
        if result["has_image"] and result["has_text"]:
            own, plain = (
                get(label, "random", "avg", "hit@5"),
                get("no-conditioning", "random", "avg", "hit@5"),
            )
            zero = get("zero-shot backbone (untrained rcml-lite)", "random", "avg", "hit@5")
            ii, ii_plain = (
                get(label, "random", "ii", "hit@5"),
                get("no-conditioning", "random", "ii", "hit@5"),
            )
            hard = get(label, "hard", "avg", "hit@1")
            specialists = next(
                (v["hard"]["avg"]["hit@1"] for k, v in rows.items() if k.startswith("specialists")), None
            )
            hard_ii, hard_ii_plain = (
                get(label, "hard", "ii", "hit@1"),
                get("no-conditioning", "hard", "ii", "hit@1"),
            )
            pairs = [
                ("avg Hit@5 - no-conditioning >= 0.05", own, plain, lambda a, b: a - b, 0.05),
                ("avg Hit@5 - zero-shot >= 0.15", own, zero, lambda a, b: a - b, 0.15),
                ("ii Hit@5 - no-conditioning >= 0.05", ii, ii_plain, lambda a, b: a - b, 0.05),
                ("hard avg Hit@1 - specialists >= 0", hard, specialists, lambda a, b: a - b, 0.0),
                ("hard ii Hit@1 / no-conditioning's >= 2", hard_ii, hard_ii_plain, lambda a, b: a / b, 2.0),
            ]
            for name, a, b, measure, goal in pairs:
                if a is not None and b:
                    value = measure(a, b)
                    checks.append(f"{name}: {value:+.3f} ({'met' if value >= goal else 'missed'})")
        if result["has_text"]:
            for metric in ("hit@5", "hit@1"):
                a, b = (
                    get(label, "random", "tt", metric),
                    get("prompted MiniLM fine-tune", "random", "tt", metric),
                )
                if a is not None and b is not None:
                    verdict = "met" if a - b >= -0.02 else "missed"
                    checks.append(f"tt {metric} - prompted MiniLM >= -0.02: {a - b:+.3f} ({verdict})")
        if checks:
            lines.append(f"- {label}: " + "; ".join(checks))
    return "Targets (issue #19):\n\n" + "\n".join(lines) + "\n" if lines else ""


def main() -> None:
    args = _parse()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = []
    work = args.work.resolve()
    for name in args.data:
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        train, test = _catalogue(name, folder, args)
        result = evaluate(name, folder, train, test, args)
        result["seconds"] = round(time.monotonic() - started)
        results.append(result)
        print("\n" + markdown(result) + "\n" + targets(result), flush=True)
        (work / "results.json").write_text(json.dumps(results, indent=1))
    report = "\n".join(markdown(result) + "\n" + targets(result) for result in results)
    (work / "quality.md").write_text(report)
    print(f"\nwrote {work / 'results.json'} and {work / 'quality.md'}")


if __name__ == "__main__":
    main()

"""Train an RCML model with a plain ``SentenceTransformerTrainer`` that you set up yourself.

``rcml-st train`` does all of this for you; this script shows the pieces, for when you want your
own training arguments, callbacks, datasets or evaluators:

1. read and validate a catalogue (``rcml_st.data.read_catalog``);
2. turn it into training pairs: each item's own text and image, and one pair per relation edge
   (``rcml_st.training.build_pairs``), as a ``datasets.Dataset`` with ``anchor``, ``positive``
   and ``label`` columns;
3. build a model (``rcml_st.build_model``) and the loss (``rcml_st.losses.RCMLLoss``), which
   masks true positives of the relation graph out of the in-batch negatives;
4. train with the standard trainer, evaluate relation-guided retrieval after each epoch, save.

With ``--freeze-backbone`` the towers' trunks stay frozen (LiT-style: the projections into the
joint space and the relation pooling train): ``freeze_backbone(model)``, then
``cache_frozen_trunks(model, train_dataset, folder)`` computes every item's trunk output once and
returns a data collator that serves them; pass it as the trainer's ``data_collator`` and each
step runs the head only (no image decoding, no tower forward). The cache is written to
``folder`` and reused by later runs on the same data and weights.

Run it on a generated catalogue (one epoch over its 51k pairs: a few minutes on a laptop CPU)::

    python examples/train_with_trainer.py --output runs/example

or on your own data, fine-tuning pretrained CLIP weights (a tag needs the model hub; a local
``.pt``/``.safetensors`` file works offline)::

    python examples/train_with_trainer.py --data train.jsonl --eval test.jsonl \\
        --backbone ViT-B-32 --pretrained openai --lr 5e-5 --output runs/mine

The saved folder loads with ``rcml_st.load(path)`` or
``SentenceTransformer(path, trust_remote_code=True)``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

import rcml_st
from rcml_st.data import generate_catalog, read_catalog
from rcml_st.evaluation import RelationRetrievalEvaluator
from rcml_st.losses import RCMLLoss
from rcml_st.training import build_pairs, cache_frozen_trunks, freeze_backbone, write_architecture


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="training catalogue (default: a generated one)")
    parser.add_argument("--eval", type=Path, help="held-out catalogue for retrieval after each epoch")
    parser.add_argument("--output", type=Path, default=Path("runs/example"))
    parser.add_argument("--backbone", default="rcml-tiny", help="open_clip name, config JSON, rcml-tiny")
    parser.add_argument("--pretrained", default=None, help="open_clip tag or local weights file")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="1e-3 for random init, 5e-5 for pretrained")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop early (for quick checks)")
    parser.add_argument(
        "--freeze-backbone", action="store_true", help="frozen trunks, served from the trunk cache"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="rcml-example-"))
    if args.data is None:  # a generated baby-products catalogue with a held-out part
        synthetic = generate_catalog(work / "data", n_items=400, seed=0)
        args.data, args.eval = synthetic.train_path, args.eval or synthetic.test_path

    # 1-2. Validate the data, then build the pairs (and the relation graph for the loss).
    catalog = read_catalog(args.data)
    pairs = build_pairs(catalog)
    print(pairs.describe())
    train_dataset = pairs.to_dataset()

    # 3. The model remembers the data's relations; the loss knows the same-item description too.
    backbone = args.backbone
    if backbone in ("rcml-tiny", "rcml-small"):  # small built-in architectures (random init)
        backbone = write_architecture(backbone, work / f"{backbone}.json")
    model = rcml_st.build_model(backbone, args.pretrained, relations=pairs.data_relations)
    loss = RCMLLoss(model, relations=pairs.relations, positives=pairs.graph(), temperature=0.05)
    # The model card's widget examples cannot be drawn from dict columns; give it some texts.
    model.model_card_data.widget = [{"text": item.text} for item in catalog.items[:3] if item.text]

    # Frozen trunks (optional): compute each item's trunk output once, train the head from the cache.
    collator = None
    if args.freeze_backbone:
        freeze_backbone(model)
        collator = cache_frozen_trunks(
            model, train_dataset, args.output / "checkpoints" / "trunk-cache", log=print
        )

    # 4. A plain trainer: AdamW, warmup then cosine decay, relation-guided retrieval each epoch.
    evaluator = RelationRetrievalEvaluator(args.eval, name="heldout") if args.eval else None
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(args.output / "checkpoints"),
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=0.1,
        lr_scheduler_type="cosine",
        weight_decay=0.1,
        save_strategy="epoch",
        save_total_limit=2,
        eval_strategy="epoch" if evaluator is not None else "no",
        logging_strategy="epoch",
        report_to="none",
        seed=0,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        loss=loss,
        evaluator=evaluator,
        data_collator=collator,  # None: the default collator
    )
    trainer.train()
    model.save_pretrained(str(args.output))

    # The saved model encodes items under any relation of its vocabulary.
    reloaded = rcml_st.load(args.output)
    relation = rcml_st.relation_vocabulary(reloaded)[0]
    vector = reloaded.encode([catalog.items[0].to_input()], relation=relation)
    print(f"saved to {args.output}; {catalog.items[0].id} under {relation!r}: {vector.shape[1]}-d vector")
    return args.output


if __name__ == "__main__":
    main()

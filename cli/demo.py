"""`rcml-st demo`: the main job end to end on generated data (catalogue, training, index, searches)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rcml_st.cli._common import command, console, quiet_transformers, say, warn
from rcml_st.cli.options import DeviceOption, SeedOption, with_help

if TYPE_CHECKING:
    from rcml_st.data import Catalog, Item
    from rcml_st.training import TrainConfig

DEMO_HELP = "\n\n".join(
    [
        "Run the whole job end to end on a generated catalogue, in a few minutes on a laptop CPU.",
        "Steps, each with progress: (1) generate a baby-products-like catalogue with drawn images and "
        "titles, where three relations group items in conflicting ways (same activity, same colour, same "
        "brand), split into train.jsonl and a held-out test.jsonl; (2) train a small RCML model on the "
        "training part (rcml-tiny architecture, random init); (3) measure relation-guided retrieval on the "
        "held-out items; (4) index every item under every relation into an embedded Qdrant store; (5) run "
        "relation-guided searches: the same query item under different relations finds different "
        "neighbours.",
        "Everything is written under --workdir (data/, model/, model.checkpoints/, qdrant/). Running the "
        "demo again reuses the trained model (it resumes from its last checkpoint) and overwrites the "
        "index points.",
        "Examples:",
        "  rcml-st demo",
        "  rcml-st demo --workdir /tmp/rcml-demo --items 800 --epochs 3",
        "  rcml-st search --model rcml-demo/model --qdrant-path rcml-demo/qdrant "
        '--relation "matches in colour" --id S0007',
    ]
)

# Settings measured to train a useful model in about a minute on 2 CPU cores (see the report).
DEMO_ITEMS = 400
DEMO_EPOCHS = 3
DEMO_PAIRS_PER_EPOCH = 6400
DEMO_BATCH_SIZE = 64
DEMO_LR = 2e-3


@command(DEMO_HELP)
def demo(
    workdir: Annotated[
        Path, typer.Option("--workdir", metavar="DIR", help="Folder for the catalogue, model and index.")
    ] = Path("rcml-demo"),
    items: Annotated[
        int, typer.Option("--items", min=60, help="Catalogue size (a quarter is held out for testing).")
    ] = DEMO_ITEMS,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Training epochs.")] = DEMO_EPOCHS,
    pairs_per_epoch: Annotated[
        int, typer.Option("--pairs-per-epoch", min=2, help="Training pairs drawn per epoch.")
    ] = DEMO_PAIRS_PER_EPOCH,
    seed: with_help(SeedOption, "Seed for the catalogue and training.") = 0,
    device: DeviceOption = "auto",
) -> None:
    from rcml_st.data import generate_catalog, read_catalog
    from rcml_st.errors import UsageError

    # Checked before any heavy import.
    if workdir.exists() and not workdir.is_dir():
        raise UsageError(f"--workdir {workdir} exists and is not a folder")
    quiet_transformers()
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)

    _step(1, f"generating a catalogue of {items} items in {workdir / 'data'}")
    with console.status("drawing images and writing titles..."):
        synth = generate_catalog(workdir / "data", n_items=items, seed=seed)
    assert synth.test_path is not None  # a quarter is always held out
    train_catalog, test_catalog = read_catalog(synth.train_path), read_catalog(synth.test_path)
    console.print(
        f"  {synth.n_train} training items, {synth.n_test} held out; relations: "
        + ", ".join(repr(r) for r in synth.relations),
        highlight=False,
    )

    _step(2, "training a small RCML model (rcml-tiny, random init)")
    from rcml_st.training import TrainConfig

    model_dir = workdir / "model"
    config = TrainConfig(
        data=synth.train_path,
        output=model_dir,
        backbone="rcml-tiny",
        epochs=epochs,
        batch_size=DEMO_BATCH_SIZE,
        lr=DEMO_LR,
        pairs_per_epoch=max(pairs_per_epoch, DEMO_BATCH_SIZE),
        device=device,
        seed=seed,
    )
    model = _train(config)

    _step(3, "relation-guided retrieval on the held-out items (1 target among 21 candidates)")
    _evaluate(model, test_catalog, seed)

    everything = [*train_catalog.items, *test_catalog.items]
    _step(4, f"indexing {len(everything)} items x {len(synth.relations)} relations into {workdir / 'qdrant'}")
    from rcml_st.index import RelationIndex, index_catalog
    from rcml_st.index.ownership import MODEL_KEY, model_fingerprint

    with RelationIndex.connect(path=workdir / "qdrant") as index:
        if index.exists() and index.metadata().get(MODEL_KEY) != model_fingerprint(model):
            # The demo's own store, indexed by an earlier demo's model: rebuilt for this one.
            index.client.delete_collection(index.collection)
        say(f"  {index_catalog(model, everything, index, progress=True).summary()}")
        _step(5, "relation-guided searches: one query, different relations, different neighbours")
        queries = _pick_queries(test_catalog)
        for item in queries:
            _show_item_searches(index, item, list(synth.relations))
        _show_text_search(model, index, test_catalog, list(synth.relations))
    console.print(
        f"\n[bold green]Done[/] in {time.monotonic() - started:.0f} s. Try your own searches:\n"
        f"  rcml-st search --model {model_dir} --qdrant-path {workdir / 'qdrant'} "
        f"--relation {synth.relations[1]!r} --id {queries[0].id}\n"
        "Look at every relation's neighbours side by side, with images, in a browser:\n"
        f"  rcml-st serve --model {model_dir} --qdrant-path {workdir / 'qdrant'}\n"
        f"  then open http://127.0.0.1:8000/?id={queries[0].id}",
        highlight=False,
    )


def _step(number: int, text: str) -> None:
    console.print(f"\n[bold cyan]Step {number}/5[/] {text}", highlight=False)


def _train(config: TrainConfig) -> Any:
    import rcml_st
    from rcml_st.training import train
    from rcml_st.training.checkpoints import last_checkpoint
    from rcml_st.training.identity import changes_from_recorded_run, run_identity

    model_dir = config.output
    # A second demo run reuses (or finishes) the first one's training when it is the same run (same
    # data and options); otherwise (say, another --items) it trains from the start.
    if last_checkpoint(model_dir) is not None:
        changes = changes_from_recorded_run(model_dir, run_identity(config.options(), config.data))
        config = dataclasses.replace(config, resume=not changes, overwrite=bool(changes))
        if changes:
            say(
                f"  the last demo run in {model_dir.parent} trained on other data or options "
                f"({'; '.join(changes[:2])}): training from the start"
            )
    elif model_dir.exists():
        config = dataclasses.replace(config, overwrite=True)  # the demo's own folder: replace its model
    train(config, console=console, log=lambda message: say(f"  {message}"), warn=warn)
    return rcml_st.load(model_dir, device=None if config.device == "auto" else config.device)


def _evaluate(model: Any, catalog: Catalog, seed: int) -> None:
    from rcml_st.evaluation import evaluate_retrieval

    with console.status("encoding the held-out items under each relation..."):
        result = evaluate_retrieval(model, catalog, seed=seed)
    parts = [
        f"{direction} {values['hit@5']:.2f}"
        for direction, values in result.metrics.items()
        if direction != "avg" and values["hit@5"] is not None
    ]
    average = result.metrics["avg"]["hit@5"]
    if average is None:
        console.print("  too few held-out items to draw 20 negatives per query; try a larger --items")
        return
    console.print(
        f"  Hit@5 {average:.3f} averaged over text->text, image->image, text->image, image->text "
        f"({', '.join(parts)}); random guessing scores 0.24",
        highlight=False,
    )


def _pick_queries(catalog: Catalog) -> list[Item]:
    """Two held-out items that differ in every attribute, so their searches are easy to tell apart."""
    from rcml_st.data import groups

    first = catalog.items[0]
    first_groups = groups(first)
    for item in catalog.items[1:]:
        if all(groups(item)[r] != g for r, g in first_groups.items()) and item.text:
            return [first, item]
    return [first]


def _show_item_searches(index: Any, item: Item, relations: list[str]) -> None:
    from rich.table import Table

    from rcml_st.data import groups
    from rcml_st.index import search_index

    own = groups(item)
    table = Table(
        title=f"query: {item.id} {item.text!r} (held out)",
        title_justify="left",
        show_lines=True,
        expand=False,
    )
    table.add_column("relation", style="bold", max_width=24)
    table.add_column("top 5 neighbours", no_wrap=True, overflow="ellipsis", max_width=50)
    table.add_column("share it", justify="right")
    for relation in relations:
        hits = search_index(None, index, relation, item_id=item.id, limit=5)
        shared = sum(1 for hit in hits if groups(hit.payload).get(relation) == own[relation])
        names = "\n".join(f"{hit.item_id} {hit.text}" for hit in hits)
        table.add_row(f"{relation}\n({own[relation]})", names, f"{shared}/{len(hits)}")
    console.print(table)


def _show_text_search(model: Any, index: Any, catalog: Catalog, relations: list[str]) -> None:
    from rcml_st.index import search_index

    # A short description in the catalogue's words (colour + product type), unlike any title.
    metadata = catalog.items[-1].metadata
    text = f"{metadata.get('colour', 'sage green')} {metadata.get('product_type', 'nursing pillow')}"
    console.print(f"\ntext query {text!r}:", highlight=False)
    for relation in relations:
        hits = search_index(model, index, relation, text=text, limit=3)
        shown = "; ".join(f"{hit.text}" for hit in hits)
        console.print(f"  [bold]{relation}[/]: {shown}", highlight=False)

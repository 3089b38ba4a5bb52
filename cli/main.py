"""Entry point of the ``rcml-st`` command line.

Each command lives in its own module of this package and is registered here. Command modules
import heavy libraries (torch, sentence-transformers, qdrant-client) inside the command body,
so ``rcml-st --help`` stays fast.
"""

from __future__ import annotations

import typer
from rcml_st.cli import _common, demo, evaluate, index, prepare, search, serve, train

app = typer.Typer(
    name="rcml-st",
    help=(
        "RCML for sentence-transformers: train relation-conditioned multimodal embeddings, "
        "evaluate them, and serve them from Qdrant.\n\n"
        "Start with `rcml-st demo` for the whole job end to end on generated data."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Print full tracebacks on errors (also: RCML_ST_DEBUG=1)."
    ),
) -> None:
    _common.set_debug(debug)


app.command("train")(train.train)
app.command("evaluate")(evaluate.evaluate)
app.command("index")(index.index)
app.command("search")(search.search)
app.command("serve")(serve.serve)
app.add_typer(prepare.app, name="prepare")
app.command("demo")(demo.demo)


def main() -> None:
    """Runs the ``rcml-st`` application (the console-script entry point)."""
    app()


if __name__ == "__main__":
    main()

"""``python -m rcml_st.training ARGS`` runs ``rcml-st train ARGS``.

It exists for launchers that start a module on every process::

    torchrun --nproc_per_node 4 -m rcml_st.training train.jsonl --output rcml-baby --pretrained openai
    accelerate launch -m rcml_st.training train.jsonl --output rcml-baby --pretrained openai

This is an entry point like the ``rcml-st`` script, not part of the library: nothing imports it.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Runs ``rcml-st train`` with ``argv`` (default: the process arguments)."""
    from rcml_st.cli.main import app

    app(args=["train", *(sys.argv[1:] if argv is None else argv)], prog_name="python -m rcml_st.training")


if __name__ == "__main__":
    main()

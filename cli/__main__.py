"""``python -m rcml_st.cli ARGS`` runs ``rcml-st ARGS``.

It exists for launchers that start a module on every process::

    torchrun --nproc_per_node 4 -m rcml_st.cli train train.jsonl --output rcml-baby --pretrained openai
    accelerate launch -m rcml_st.cli train train.jsonl --output rcml-baby --pretrained openai

This is an entry point like the ``rcml-st`` script, not part of the library: nothing imports it.
"""

from __future__ import annotations

from rcml_st.cli.main import main

if __name__ == "__main__":
    main()

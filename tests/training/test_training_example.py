"""examples/train_with_trainer.py: a plain SentenceTransformerTrainer with RCMLLoss still runs."""

from __future__ import annotations

import runpy
from pathlib import Path

import rcml_st

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train_with_trainer.py"


def test_the_trainer_example_trains_and_saves(synthetic, tmp_path, capsys):
    namespace = runpy.run_path(str(EXAMPLE))
    out = namespace["main"](
        [
            "--data",
            str(synthetic.train_path),
            "--output",
            str(tmp_path / "example"),
            "--batch-size",
            "16",
            "--max-steps",
            "3",
        ]
    )
    assert "saved to" in capsys.readouterr().out
    model = rcml_st.load(out)
    assert rcml_st.relation_vocabulary(model) == sorted(synthetic.relations)

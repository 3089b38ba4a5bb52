"""The sentence-transformers trainer, with one fix for multi-process checkpoints."""

from __future__ import annotations

from typing import Any

from sentence_transformers import SentenceTransformerTrainer


class RCMLTrainer(SentenceTransformerTrainer):
    """``SentenceTransformerTrainer`` that writes checkpoints from one process only.

    transformers 5 calls ``Trainer._save`` on every process and moved the "am I the process
    that saves?" check into ``_save`` itself; sentence-transformers 6.2 overrides ``_save``
    assuming it only runs on process zero. Under ``torchrun`` every process then wrote the same
    checkpoint files at once (seen: a half-written ``config_sentence_transformers.json`` read by
    another process). Everything else is the stock trainer.
    """

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        if not self.args.should_save:
            return
        super()._save(output_dir, state_dict=state_dict)

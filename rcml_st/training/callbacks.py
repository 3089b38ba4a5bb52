"""Trainer callbacks: a rich progress bar and one line of loss terms per epoch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

#: Log keys the loss and trainer produce, in display order, with short labels.
_TERMS = (("loss", "loss"), ("loss_tt", "tt"), ("loss_ii", "ii"), ("loss_ti", "ti"), ("loss_it", "it"))


def format_epoch(logs: dict[str, Any], epochs: float) -> str:
    """One line for an epoch's averaged loss terms.

    Example:
        >>> logs = {"epoch": 1.0, "loss": 2.5, "loss_tt": 1.0, "loss_ti": 1.5, "learning_rate": 4e-05}
        >>> format_epoch(logs, 3)
        'epoch 1/3  loss 2.5000  tt 1.0000  ti 1.5000  lr 4.0e-05'
    """
    epoch = logs.get("epoch", 0.0)
    shown = f"{round(epoch)}" if abs(epoch - round(epoch)) < 1e-6 else f"{epoch:.2f}"
    parts = [f"epoch {shown}/{round(epochs)}"]
    parts += [f"{label} {logs[key]:.4f}" for key, label in _TERMS if key in logs]
    if "learning_rate" in logs:
        parts.append(f"lr {logs['learning_rate']:.1e}")
    return "  ".join(parts)


def format_eval(metrics: dict[str, float]) -> str:
    """One line of relation-guided retrieval metrics (Hit@5 per direction and averaged).

    Example:
        >>> format_eval({"eval_avg_hit@5": 0.9, "eval_avg_mrr": 0.7, "eval_tt_hit@5": 0.8})
        '  eval: hit@5 0.9000 (tt 0.8000)  mrr 0.7000'
    """
    if "eval_avg_hit@5" not in metrics:
        return ""
    directions = [
        f"{d} {metrics[f'eval_{d}_hit@5']:.4f}"
        for d in ("tt", "ii", "ti", "it")
        if f"eval_{d}_hit@5" in metrics
    ]
    line = f"  eval: hit@5 {metrics['eval_avg_hit@5']:.4f}"
    if directions:
        line += f" ({', '.join(directions)})"
    if "eval_avg_mrr" in metrics:
        line += f"  mrr {metrics['eval_avg_mrr']:.4f}"
    return line


class EpochReporter(TrainerCallback):
    """Collects each epoch's loss terms (and evaluation metrics) and reports them as one line.

    Args:
        log: receives the formatted lines (e.g. a rich console's ``print``).
        epochs: the total number of epochs (for "epoch 1/3").
    """

    def __init__(self, log: Callable[[str], None], epochs: float) -> None:
        self.log = log
        self.epochs = epochs
        self.history: list[dict[str, float]] = []

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not logs or not state.is_world_process_zero:
            return
        if "loss" in logs:
            entry = {key: float(value) for key, value in logs.items() if isinstance(value, (int, float))}
            self.history.append(entry)
            self.log(format_epoch(entry, self.epochs))
        elif any(key.startswith("eval_") for key in logs):
            metrics = {
                k: float(v) for k, v in logs.items() if k.startswith("eval_") and isinstance(v, (int, float))
            }
            if self.history:
                self.history[-1].update(metrics)
            line = format_eval(metrics)
            if line:
                self.log(line)


class RichProgress(TrainerCallback):
    """A rich progress bar over training steps, labelled with the current epoch.

    Args:
        console: the rich console to draw on.
        epochs: the total number of epochs.
    """

    def __init__(self, console: Any, epochs: float) -> None:
        self.console = console
        self.epochs = epochs
        self.progress: Any = None
        self.task: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            self._label(state), total=state.max_steps, completed=state.global_step
        )

    def _label(self, state: Any) -> str:
        epoch = int(state.epoch or 0) + 1
        return f"training epoch {min(epoch, round(self.epochs))}/{round(self.epochs)}"

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step, description=self._label(state))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.stop()

    def stop(self) -> None:
        """Stops drawing (also called when training is interrupted)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

"""Per-epoch checkpoints inside the output folder, and resuming from the last one.

Layout of an output folder written by ``rcml-st train DATA --output DIR``::

    DIR/                      the final model (``rcml_st.load(DIR)``), written when training ends
    DIR/checkpoints/run.json  the options of the run (a resumed run must use the same ones)
    DIR/checkpoints/checkpoint-<step>/   one per epoch (the last two are kept): model,
                              optimizer, scheduler, RNG states and trainer state
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rcml_st.errors import UsageError

CHECKPOINTS = "checkpoints"
RUN_FILE = "run.json"
#: Options that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = frozenset({"resume", "eval_file", "device", "epochs", "workers", "skip_invalid"})


def checkpoints_dir(output: str | os.PathLike[str]) -> Path:
    """The folder holding the checkpoints of a run writing to ``output``."""
    return Path(output) / CHECKPOINTS


def last_checkpoint(output: str | os.PathLike[str]) -> Path | None:
    """The most recent complete checkpoint of the run writing to ``output``, or ``None``.

    A checkpoint counts when its ``trainer_state.json`` exists: the trainer writes it last,
    so a checkpoint cut short by an interruption is never picked.
    """
    folder = checkpoints_dir(output)
    if not folder.is_dir():
        return None
    candidates = []
    for child in folder.iterdir():
        name = child.name
        step = name[len("checkpoint-") :]
        complete = (child / "trainer_state.json").is_file()
        if name.startswith("checkpoint-") and step.isdigit() and complete:
            candidates.append((int(step), child))
    return max(candidates)[1] if candidates else None


def checkpoint_epoch(checkpoint: Path) -> float:
    """The (possibly fractional) epoch a checkpoint was taken at."""
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    return float(state.get("epoch") or 0.0)


def write_run(output: str | os.PathLike[str], options: dict[str, Any]) -> Path:
    """Records the run's options next to its checkpoints."""
    folder = checkpoints_dir(output)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RUN_FILE
    path.write_text(json.dumps(options, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return path


def read_run(output: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The options recorded by :func:`write_run`, or ``None`` when there are none."""
    path = checkpoints_dir(output) / RUN_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def check_resumable(previous: dict[str, Any] | None, current: dict[str, Any], output: Path) -> None:
    """Raises :class:`UsageError` when a resumed run's options differ from the interrupted run's.

    Only :data:`RESUMABLE_CHANGES` (device, epochs, evaluation file, ...) may differ: anything
    else (data, backbone, learning rate, ablations, seed, ...) would silently mix two runs.
    """
    if previous is None:
        return
    differing = [
        key
        for key in sorted(set(previous) | set(current))
        if key not in RESUMABLE_CHANGES and previous.get(key) != current.get(key)
    ]
    if differing:
        details = ", ".join(f"{key}: {previous.get(key)!r} -> {current.get(key)!r}" for key in differing[:4])
        raise UsageError(
            f"--resume: the checkpoints in {checkpoints_dir(output)} come from a run with other options "
            f"({details}); use the same options, or another --output for a new run"
        )

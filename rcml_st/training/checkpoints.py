"""Per-epoch checkpoints next to the output folder, and resuming from the last one.

Layout of a run written by ``rcml-st train DATA --output DIR``::

    DIR/                                  the final model only (``rcml_st.load(DIR)``), written
                                          when training ends: ready to copy or push as it is
    DIR.checkpoints/run.json              the options of the run (a resumed run must use the same)
    DIR.checkpoints/checkpoint-<step>/    one per epoch (the last two are kept): model, optimizer,
                                          scheduler, RNG states and trainer state

Runs of rcml-st 0.1 kept them inside the model, in ``DIR/checkpoints/``; ``--resume`` still finds
them there and moves them next to the model (:func:`adopt_legacy_checkpoints`).

:func:`checkpoints_dir` is the one place that says where a run's checkpoints (and anything else
a run keeps between attempts) live.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from rcml_st.atomic import write_text
from rcml_st.errors import UsageError

#: Suffix of the folder next to the model that holds a run's checkpoints and ``run.json``.
CHECKPOINTS_SUFFIX = ".checkpoints"
#: Where rcml-st 0.1 kept them: a subfolder of the model folder.
LEGACY_CHECKPOINTS = "checkpoints"
RUN_FILE = "run.json"
#: Options that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = frozenset(
    {"resume", "overwrite", "eval_file", "device", "epochs", "workers", "skip_invalid"}
    | {"trunk_cache", "trunk_cache_memory"}  # speed and memory only, never the results
)


def checkpoints_dir(output: str | os.PathLike[str]) -> Path:
    """The folder holding the checkpoints of a run writing to ``output``: ``<output>.checkpoints``.

    It sits next to the model folder, so the model folder holds the model only.

    Example:
        >>> checkpoints_dir("runs/rcml-baby").as_posix()
        'runs/rcml-baby.checkpoints'
    """
    path = Path(output)
    if path.name in ("", ".", ".."):  # "." has no name of its own: use the folder's real name
        path = path.resolve()
    return path.with_name(path.name + CHECKPOINTS_SUFFIX)


def legacy_checkpoints_dir(output: str | os.PathLike[str]) -> Path:
    """Where rcml-st 0.1 kept the checkpoints: ``<output>/checkpoints``."""
    return Path(output) / LEGACY_CHECKPOINTS


def _holds_run(folder: Path) -> bool:
    return folder.is_dir() and (
        (folder / RUN_FILE).is_file()
        or any(child.name.startswith("checkpoint-") for child in folder.iterdir())
    )


def adopt_legacy_checkpoints(output: str | os.PathLike[str], *, main_process: bool = True) -> Path | None:
    """Moves checkpoints of the old layout (``DIR/checkpoints``) to :func:`checkpoints_dir`.

    Args:
        output: the model folder of the run.
        main_process: under ``torchrun``, only the main process moves; the others wait (up to a
            minute) until the move is done, so that every process resumes from the same place.

    Returns:
        The new folder when something was moved, else ``None`` (nothing to move, or the new
        folder exists already: then the old one is left alone and the new one is used).
    """
    legacy, current = legacy_checkpoints_dir(output), checkpoints_dir(output)
    if not _holds_run(legacy) or current.exists():
        return None
    if main_process:
        shutil.move(str(legacy), str(current))  # a rename on one file system: never half done
    else:
        deadline = time.monotonic() + 60
        while legacy.exists() and not current.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    return current


def _run_folders(output: str | os.PathLike[str]) -> list[Path]:
    """The folders that may hold a run's checkpoints, the current layout first."""
    return [checkpoints_dir(output), legacy_checkpoints_dir(output)]


def last_checkpoint(output: str | os.PathLike[str]) -> Path | None:
    """The most recent complete checkpoint of the run writing to ``output``, or ``None``.

    Looks in :func:`checkpoints_dir`, then in the old layout's ``output/checkpoints``.

    A checkpoint counts when its ``trainer_state.json`` exists: the trainer writes it last,
    so a checkpoint cut short by an interruption is never picked.
    """
    for folder in _run_folders(output):
        if not folder.is_dir():
            continue
        candidates = []
        for child in folder.iterdir():
            name = child.name
            step = name[len("checkpoint-") :]
            complete = (child / "trainer_state.json").is_file()
            if name.startswith("checkpoint-") and step.isdigit() and complete:
                candidates.append((int(step), child))
        if candidates:
            return max(candidates)[1]
    return None


def checkpoint_epoch(checkpoint: Path) -> float:
    """The (possibly fractional) epoch a checkpoint was taken at."""
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    return float(state.get("epoch") or 0.0)


def write_run(output: str | os.PathLike[str], options: dict[str, Any]) -> Path:
    """Records the run's options next to its checkpoints."""
    folder = checkpoints_dir(output)
    folder.mkdir(parents=True, exist_ok=True)
    return write_text(folder / RUN_FILE, json.dumps(options, indent=2, sort_keys=True, default=str) + "\n")


def read_run(output: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The options recorded by :func:`write_run` (or in the old layout), or ``None`` when there is none.

    Raises:
        UsageError: a ``run.json`` that cannot be read (its run's identity is unknown).
    """
    path = next((folder / RUN_FILE for folder in _run_folders(output) if (folder / RUN_FILE).is_file()), None)
    if path is None:
        return None
    try:
        options = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(
            f"{path}: unreadable ({exc}), so nothing tells which run the checkpoints come from; add "
            "--overwrite to start over, or choose another --output"
        ) from None
    if not isinstance(options, dict):
        raise UsageError(f"{path}: not a run's options (a JSON object); add --overwrite to start over")
    return options

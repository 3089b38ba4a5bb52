"""A training run's identity, checked by ``--resume``: its options and its data file's content.

``run.json`` (next to the checkpoints) records the options of a run and a fingerprint of the
data file: its size and a BLAKE2b hash of its bytes, read in 1 MiB blocks (a few seconds for
a gigabyte). A resumed run must have the same identity, else it would continue the old run's
checkpoint on other data or with other settings; only :data:`RESUMABLE_CHANGES` (device, epochs,
...) may differ. To start over instead, ``--overwrite`` discards the old checkpoints.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from rcml_st.errors import UsageError
from rcml_st.training.checkpoints import RESUMABLE_CHANGES, checkpoints_dir, read_run

#: Key of the data fingerprint in ``run.json``.
DATA_FINGERPRINT = "data_fingerprint"
_BLOCK = 1 << 20


def fingerprint_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Size and BLAKE2b-128 hash of a file's content (streamed, never held in memory).

    Example:
        >>> import pathlib, tempfile
        >>> data = pathlib.Path(tempfile.mkdtemp()) / "train.jsonl"
        >>> _ = data.write_text('{"id": "A"}\\n')
        >>> fingerprint_file(data)
        {'size': 12, 'blake2b': '2f5142d7e93c6bf3c90e457c45f582b6'}
    """
    digest = hashlib.blake2b(digest_size=16)
    size = 0
    with open(path, "rb") as data:
        while block := data.read(_BLOCK):
            digest.update(block)
            size += len(block)
    return {"size": size, "blake2b": digest.hexdigest()}


def run_identity(options: dict[str, Any], data: str | os.PathLike[str]) -> dict[str, Any]:
    """The options plus the data file's fingerprint: what ``run.json`` records."""
    return {**options, DATA_FINGERPRINT: fingerprint_file(data)}


def identity_changes(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between two runs' identities, one phrase each (resumable changes left out).

    Example:
        >>> before = {"lr": 0.001, "data": "/d/train.jsonl", "epochs": 3,
        ...           "data_fingerprint": {"size": 10, "blake2b": "aa"}}
        >>> after = {**before, "lr": 0.01, "epochs": 5, "data_fingerprint": {"size": 12, "blake2b": "bb"}}
        >>> identity_changes(before, after)
        ['the content of the data file /d/train.jsonl (10 bytes then, 12 bytes now)', 'lr: 0.001 -> 0.01']
    """
    changes = []
    recorded = DATA_FINGERPRINT in previous  # runs of rcml-st before 0.2 did not record it
    same_file = previous.get("data") == current.get("data")
    if recorded and same_file and previous.get(DATA_FINGERPRINT) != current.get(DATA_FINGERPRINT):
        then, now = previous.get(DATA_FINGERPRINT) or {}, current.get(DATA_FINGERPRINT) or {}
        sizes = f"{then.get('size', '?')} bytes then, {now.get('size', '?')} bytes now"
        if then.get("size") == now.get("size"):
            sizes = f"same size, other bytes: {then.get('blake2b', '?')} -> {now.get('blake2b', '?')}"
        changes.append(f"the content of the data file {current.get('data')} ({sizes})")
    for key in sorted(set(previous) | set(current)):
        if key in RESUMABLE_CHANGES or key == DATA_FINGERPRINT:
            continue
        if previous.get(key) != current.get(key):
            changes.append(f"{key}: {previous.get(key)!r} -> {current.get(key)!r}")
    return changes


def changes_from_recorded_run(output: str | os.PathLike[str], current: dict[str, Any]) -> list[str]:
    """What differs between this run's identity and the one ``run.json`` records for ``output``.

    An empty list: the same run (it may be resumed). A missing or unreadable ``run.json`` counts
    as a difference (the earlier run cannot be told apart).
    """
    try:
        previous = read_run(output)
    except UsageError as exc:
        return [str(exc)]
    if previous is None:
        return [f"no run.json in {checkpoints_dir(output)} records the earlier run"]
    return identity_changes(previous, current)


def check_same_run(
    previous: dict[str, Any] | None, current: dict[str, Any], output: str | os.PathLike
) -> str | None:
    """Raises :class:`UsageError` naming what changed when ``--resume`` would mix two runs.

    Returns:
        A note to show when the interrupted run recorded no data fingerprint (rcml-st before
        0.2): its data is then assumed unchanged. ``None`` otherwise.

    Args:
        previous: the interrupted run's ``run.json`` (``None`` when there is none).
        current: this run's :func:`run_identity`.
        output: the model folder (for the message).

    Example:
        >>> check_same_run({"lr": 0.1}, {"lr": 0.2}, "m")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        rcml_st.errors.UsageError: --resume: ...m.checkpoints come from another run (lr: 0.1 -> 0.2); ...
    """
    folder = checkpoints_dir(output)
    if previous is None:
        raise UsageError(
            f"--resume: {folder} holds checkpoints but no run.json, so nothing tells which run they come "
            "from; add --overwrite (instead of --resume) to start over, or choose another --output"
        )
    changes = identity_changes(previous, current)
    if changes:
        shown = "; ".join(changes[:4]) + (f"; and {len(changes) - 4} more" if len(changes) > 4 else "")
        raise UsageError(
            f"--resume: the checkpoints in {folder} come from another run ({shown}); resume with the "
            "same data and options, or add --overwrite (instead of --resume) to start over"
        )
    if DATA_FINGERPRINT not in previous:
        return (
            f"--resume: the interrupted run recorded no fingerprint of its data (an older rcml-st); "
            f"assuming {current.get('data')} is unchanged"
        )
    return None


__all__ = [
    "DATA_FINGERPRINT",
    "changes_from_recorded_run",
    "check_same_run",
    "fingerprint_file",
    "identity_changes",
    "run_identity",
]

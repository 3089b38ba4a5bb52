"""Where a training run may write its model: never over files that are not an RCML model's.

Saving a model writes ``README.md``, ``modules.json``, weights and configs into ``--output``:
into a project folder (``-o .``) that would replace the project's own ``README.md``. So a run
writes only into a new or empty folder, or into an RCML model folder that is the same run's
(``--resume``); anything else needs ``--overwrite``, which also discards the checkpoints of an
earlier run and starts over.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rcml_st.errors import UsageError
from rcml_st.safe_load import foreign_module_types
from rcml_st.training.checkpoints import checkpoints_dir


def is_rcml_model(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a saved model made of rcml_st modules only (by its ``modules.json``).

    Example:
        >>> import pathlib, tempfile
        >>> is_rcml_model(tempfile.mkdtemp())
        False
    """
    folder = Path(folder)
    if not (folder / "modules.json").is_file():
        return False
    try:
        return not foreign_module_types(folder)
    except UsageError:  # an unreadable modules.json
        return False


def check_output_folder(output: str | os.PathLike[str], *, resuming: bool, overwrite: bool) -> None:
    """Refuses to write a model where it would replace files that are not this run's model.

    Args:
        output: the ``--output`` folder.
        resuming: this run continues checkpoints of the run that wrote ``output`` (``--resume``).
        overwrite: the user asked to write there anyway (``--overwrite``).

    Raises:
        UsageError: ``output`` is a non-empty folder that is not an RCML model, or an RCML model
            that this run does not continue (exit code 2 on the CLI).

    Example:
        >>> import pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "README.md").write_text("my project")
        >>> check_output_folder(folder, resuming=False, overwrite=False)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        rcml_st.errors.UsageError: --output ...: a non-empty folder ...RCML model (it holds README.md); ...
        >>> check_output_folder(folder, resuming=False, overwrite=True)
    """
    folder = Path(output)
    if overwrite or resuming or not folder.is_dir():  # resuming: its first attempt was allowed there
        return
    entries = sorted(child.name for child in folder.iterdir())
    if not entries:
        return
    if not is_rcml_model(folder):
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise UsageError(
            f"--output {output}: a non-empty folder that is not an RCML model (it holds {shown}); saving "
            "the model there would replace files such as README.md. Choose a new or empty folder, or add "
            "--overwrite to write the model into it anyway"
        )
    raise UsageError(
        f"--output {output} already holds a trained model, and no checkpoints of its run to resume "
        f"(none in {checkpoints_dir(output)}); add --overwrite to replace it, or choose another --output"
    )


def discard_run(output: str | os.PathLike[str]) -> Path | None:
    """Deletes the checkpoints (and trunk cache, ``run.json``) of an earlier run writing to ``output``.

    Returns:
        The folder deleted, or ``None`` when there was none.
    """
    folder = checkpoints_dir(output)
    if not folder.exists():
        return None
    shutil.rmtree(folder)
    return folder


__all__ = ["check_output_folder", "discard_run", "is_rcml_model"]

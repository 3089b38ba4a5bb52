"""Checks that a file a command will write at its end can be written, before the work starts.

``rcml-st evaluate --json report.json --plot out.png`` writes both after minutes of evaluation;
a typo in a folder name must fail in a second, not after the work. :func:`check_output_file`
looks at the path only: it creates nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from rcml_st.errors import UsageError

#: File formats matplotlib writes without extra packages (``--plot``'s suffix).
PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def check_output_file(
    path: str | os.PathLike[str], option: str, suffixes: tuple[str, ...] | None = None
) -> None:
    """Raises :class:`UsageError` when ``path`` cannot be written as a file.

    The path must not be a folder; its nearest existing ancestor must be a folder this process
    may write into (missing folders below it are created when the file is written); an existing
    file must be writable; and, with ``suffixes``, its suffix must be one of them.

    Args:
        path: the file to be written.
        option: the command-line option that named it (for the message).
        suffixes: the accepted suffixes (lower case), or ``None`` for any.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> check_output_file(os.path.join(folder, "new", "report.json"), "--json")
        >>> check_output_file(folder, "--json")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        rcml_st.errors.UsageError: --json ...: is a folder, not a file
        >>> check_output_file(os.path.join(folder, "plot.txt"), "--plot", (".png",))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        rcml_st.errors.UsageError: --plot ...plot.txt: the file name must end in .png
    """
    target = Path(path)
    if suffixes is not None and target.suffix.lower() not in suffixes:
        raise UsageError(f"{option} {target}: the file name must end in {', '.join(suffixes)}")
    if target.is_dir():
        raise UsageError(f"{option} {target}: is a folder, not a file")
    if target.exists():
        if not os.access(target, os.W_OK):
            raise UsageError(f"{option} {target}: the file exists and is not writable")
        return
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{option} {target}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {target}: the folder {ancestor} is not writable")


__all__ = ["PLOT_SUFFIXES", "check_output_file"]

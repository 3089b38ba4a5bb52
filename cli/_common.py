"""Shared command-line plumbing: error handling, consoles, warnings and option helpers.

Every command is decorated with :func:`command`: its body runs inside :func:`run_command`, which
turns library errors into one ``Error:`` line on stderr and the right exit code, and keeps
tracebacks for ``--debug``.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import typer
from rich.console import Console

from rcml_st.errors import EXIT_BAD_INPUT, EXIT_RUNTIME, RCMLError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

_state = {"debug": False}


def set_debug(value: bool) -> None:
    """Turns full tracebacks on or off for this process."""
    _state["debug"] = value


def debug_enabled() -> bool:
    """Whether full tracebacks are wanted (``--debug`` or ``RCML_ST_DEBUG=1``)."""
    return _state["debug"] or os.environ.get("RCML_ST_DEBUG", "") not in ("", "0", "false")


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Prints ``Error: message`` on stderr and returns the ``typer.Exit`` to raise."""
    err_console.print(f"Error: {message}", markup=False)
    return typer.Exit(code)


def say(message: str) -> None:
    """Prints a result line on stdout as it is: no markup, no highlighting, not wrapped."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """Prints ``Warning: message`` on stderr (as it is: no markup)."""
    err_console.print(f"Warning: {message}", markup=False)


@contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """Routes ``rcml_st.index`` warnings (retries, ignored options) to ``Warning:`` lines for the duration."""
    logger = logging.getLogger("rcml_st.index")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("Warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    logger.addHandler(handler)
    propagate = logger.propagate
    logger.propagate = False  # no second copy through the root logger / lastResort
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def run_command(body: Callable[[], T]) -> T:
    """Runs a command body, mapping exceptions to one-line errors and exit codes.

    - :class:`rcml_st.errors.RCMLError` subclasses carry their exit code (2 bad input, 1 runtime).
    - ``ValueError`` is bad input (2); ``FileNotFoundError``/``PermissionError`` too.
    - ``KeyboardInterrupt`` exits 130 with a note that the work can be resumed.
    - Anything else is a runtime failure (1).
    """
    try:
        return body()
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        raise fail("interrupted; re-run the same command to resume", 130) from None
    except Exception as exc:
        if debug_enabled():
            traceback.print_exc(file=sys.stderr)
        if isinstance(exc, RCMLError):
            code = exc.exit_code
        elif isinstance(exc, (ValueError, FileNotFoundError, PermissionError, IsADirectoryError)):
            code = EXIT_BAD_INPUT
        else:
            code = EXIT_RUNTIME
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise fail(message, code) from None


def command(help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Makes a function a command: ``help`` is its ``--help`` text, its body runs under :func:`run_command`.

    Typer reads the options from the wrapped function's signature.
    """

    def decorate(function: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> None:
            run_command(lambda: function(*args, **kwargs))

        run.__doc__ = help
        return run

    return decorate


@contextmanager
def progress_bar(enabled: bool, *columns: Any, transient: bool = False) -> Iterator[Callable[..., None]]:
    """Rich progress bars on stderr (stdout keeps only the result lines), one per description.

    Yields ``update(description, completed, total, **fields)``: it does nothing unless ``enabled``.
    """
    if not enabled:
        yield lambda *args, **fields: None
        return
    from rich.progress import Progress

    with Progress(*columns, console=err_console, transient=transient) as bar:
        tasks: dict[str, Any] = {}

        def update(description: str, completed: int, total: int, **fields: Any) -> None:
            if description not in tasks:
                tasks[description] = bar.add_task(description, total=total or None, **fields)
            bar.update(tasks[description], completed=completed, total=total or None, **fields)

        yield update


def quiet_transformers() -> None:
    """Keeps transformers' info logs off the terminal without importing it.

    Through the environment (``TRANSFORMERS_VERBOSITY``, which a user may set otherwise), so
    that commands validate their input before any heavy import and bad input fails in a second.
    """
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:
        import transformers

        transformers.logging.set_verbosity_error()


#: Where to run a model: ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``.
Device = Literal["auto", "cpu", "cuda"]


def resolve_device(device: Device) -> str | None:
    """The torch device for a ``--device`` choice (``None``: sentence-transformers picks).

    Raises:
        UsageError: ``--device cuda`` on a machine without a CUDA GPU.
    """
    from rcml_st.training.device import choose_device

    return None if device == "auto" else choose_device(device).device


def check_model_dir(path: Path | str, trust_remote_code: bool = False) -> Path:
    """The local folder of ``--model``: a model folder, or a Hugging Face Hub id (``org/name``).

    No torch is imported: a missing model fails in a second.

    Its ``modules.json`` must name only rcml_st classes, unless ``--trust-remote-code`` was given
    (:func:`rcml_st.safe_load.check_module_types`).

    Raises:
        UsageError: no such folder or Hub model, a folder that is not a saved model, or one that
            names code from elsewhere without ``--trust-remote-code`` (exit 2).
        ServiceError: the Hub cannot be reached for a model that is not cached (exit 1).
    """
    from rcml_st.hub import locate_model
    from rcml_st.safe_load import check_module_types

    directory = locate_model(path)
    foreign = check_module_types(directory, trust_remote_code=trust_remote_code, name=str(path))
    if foreign and str(directory) not in _SAID_FOREIGN:  # once per model, however often it is checked
        _SAID_FOREIGN.add(str(directory))
        warn(f"--trust-remote-code: {path} imports {', '.join(foreign)} (code of the model's files)")
    return directory


_SAID_FOREIGN: set[str] = set()


def load_model(path: Path | str, device: str | None, trust_remote_code: bool = False) -> SentenceTransformer:
    """Loads ``--model`` (a folder or a Hub id); one that cannot be loaded is one line naming it (exit 2)."""
    from rcml_st.model import load

    directory = check_model_dir(path, trust_remote_code)
    library = logging.getLogger("rcml_st")
    level, _ = library.level, library.setLevel(logging.ERROR)  # check_model_dir said what it imports
    try:
        model = load(directory, device=device, trust_remote_code=trust_remote_code)
    finally:
        library.setLevel(level)
    if str(path) != str(directory):  # a Hub id: the card and snippets name the model by it
        model.model_card_data.set_model_id(str(path))
    return model

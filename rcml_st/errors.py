"""Errors that the command line turns into one clear line and an exit code.

The library raises these (or plain ``ValueError`` for bad Python arguments); the CLI catches
them and prints ``Error: <message>`` on stderr, with the exit code the error carries. A full
traceback is printed only with ``--debug`` or ``RCML_ST_DEBUG=1``.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2


class RCMLError(Exception):
    """Base class for errors meant for a user, not a developer.

    Attributes:
        exit_code: the process exit code the CLI uses for this error.
    """

    exit_code: int = EXIT_RUNTIME


class InputDataError(RCMLError, ValueError):
    """Bad input data: a malformed data file, a missing image, a wrong type.

    The message names the file, the line (when there is one) and the problem, e.g.
    ``data.jsonl:12: duplicate id 'B0001' (first seen on line 3)``.

    Example:
        >>> err = InputDataError("bad JSON", path="data.jsonl", line=3)
        >>> str(err)
        'data.jsonl:3: bad JSON'
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(self, problem: str, path: str | None = None, line: int | None = None) -> None:
        self.problem = problem
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{problem}")


class UsageError(RCMLError, ValueError):
    """Bad usage: incompatible options, a model directory that is not one, and so on."""

    exit_code = EXIT_BAD_INPUT


class ServiceError(RCMLError):
    """A runtime failure outside our control, e.g. Qdrant unreachable after retries."""

    exit_code = EXIT_RUNTIME

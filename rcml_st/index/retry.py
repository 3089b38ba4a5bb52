"""Retries for Qdrant calls: transient failures back off and retry, everything else fails at once.

Transient: connection refused or reset, timeouts, HTTP 5xx, gRPC ``UNAVAILABLE`` /
``DEADLINE_EXCEEDED`` / ``INTERNAL`` / ``UNKNOWN`` / ``ABORTED``, and rate limiting (HTTP 429,
gRPC ``RESOURCE_EXHAUSTED``, which asks the client to come back later, so it honours the
server's ``Retry-After``). Permanent: every other 4xx / gRPC status (a bad request, a missing
collection, a refused API key): sending it again gives the same answer.

Retries are bounded by total time, not by a count, because what a user can wait for is time:
exponential backoff with jitter until ``max_time`` seconds have passed since the first
attempt, then :class:`~rcml_st.errors.ServiceError`.

Example:
    >>> policy = RetryPolicy(max_time=5.0)
    >>> with_retry(lambda: 42, policy, target="http://localhost:6333", what="count")
    42
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
import httpx
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from rcml_st.errors import ServiceError, UsageError

T = TypeVar("T")

logger = logging.getLogger("rcml_st.index")

_TRANSIENT_GRPC = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
_AUTH_GRPC = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to retry transient failures.

    Attributes:
        max_time: give up once this many seconds have passed since the first attempt (the last
            wait is cut short so that the final attempt happens at about ``max_time``).
        initial_delay: the first wait, in seconds.
        max_delay: the longest single wait.
        multiplier: each wait is this many times the previous one (before jitter).
        jitter: each wait is drawn uniformly from ``[delay * (1 - jitter), delay]`` so that many
            clients failing together do not come back together.

    Example:
        >>> RetryPolicy(max_time=10).delay(3, random.Random(0)) <= 2.0
        True
    """

    max_time: float = 120.0
    initial_delay: float = 0.5
    max_delay: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_time < 0 or self.initial_delay <= 0 or self.max_delay <= 0 or self.multiplier < 1:
            raise ValueError(f"invalid retry policy: {self}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter}")

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """The wait before retry number ``retry`` (1-based), with jitter."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (retry - 1))
        draw = (rng or random).random()
        return base * (1 - self.jitter * draw)


def _grpc_code(exc: BaseException) -> grpc.StatusCode | None:
    if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
        try:
            return exc.code()
        except Exception:  # a half-built error object: treat as unknown
            return None
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether a failed Qdrant call is worth repeating unchanged (see the module docstring).

    Example:
        >>> is_transient(ConnectionRefusedError())
        True
        >>> is_transient(ValueError("bad vector"))
        False
    """
    if isinstance(exc, ResourceExhaustedResponse):
        return True
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code is not None and (exc.status_code >= 500 or exc.status_code == 429)
    if isinstance(exc, ResponseHandlingException):
        # It wraps both transport failures (retry) and unparseable replies (do not).
        return is_transient(exc.source)
    code = _grpc_code(exc)
    if code is not None:
        return code in _TRANSIENT_GRPC
    return isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError))


def describe(exc: BaseException) -> str:
    """A one-line reason for a failed call, e.g. ``UNAVAILABLE: Connection refused``."""
    code = _grpc_code(exc)
    if code is not None:
        details = exc.details() if callable(getattr(exc, "details", None)) else ""  # type: ignore[union-attr]
        return f"{code.name}: {_first_line(details or '')}".rstrip(": ")
    if isinstance(exc, UnexpectedResponse):
        reason = f"HTTP {exc.status_code} {exc.reason_phrase}".strip()
        try:
            detail = exc.structured().get("status", {}).get("error", "")
        except Exception:
            detail = exc.content[:200].decode(errors="replace")
        return f"{reason}: {_first_line(str(detail))}" if detail else reason
    if isinstance(exc, ResponseHandlingException):
        return describe(exc.source)
    text = _first_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code
    return None


def permanent_error(exc: BaseException, target: str, what: str) -> Exception:
    """The user-facing error for a failure that retrying cannot fix.

    A refused API key is bad usage (exit 2, with the way to fix it); anything else the
    server rejected is a runtime failure (exit 1) that names the server and the operation.
    """
    code = _grpc_code(exc)
    if code in _AUTH_GRPC or _status(exc) in (401, 403):
        return UsageError(
            f"Qdrant at {target} refused the request ({describe(exc)}); "
            "pass the right --api-key or set QDRANT_API_KEY"
        )
    return ServiceError(f"Qdrant at {target} rejected {what}: {describe(exc)}")


def with_retry(
    call: Callable[[], T],
    policy: RetryPolicy,
    target: str,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> T:
    """Runs ``call``, retrying transient failures with backoff for at most ``policy.max_time`` s.

    The whole call is repeated, so it must be idempotent (an upsert with fixed ids is).

    Args:
        call: the operation, e.g. ``lambda: client.count(...)``.
        policy: the retry bounds.
        target: the server, for messages (its URL, or the embedded store's path).
        what: the operation, for messages (e.g. ``"upsert of 256 points"``).
        sleep: the wait function (tests pass a fake).
        clock: a monotonic clock (tests pass a fake).
        rng: the jitter source (tests pass a seeded one).

    Returns:
        What ``call`` returns.

    Raises:
        ServiceError: transient failures went on past ``policy.max_time``, or the server
            rejected the call.
        UsageError: the server refused the API key.
        Exception: anything that is not a Qdrant/transport failure (e.g. a bug) is re-raised.
    """
    start = clock()
    retries = 0
    while True:
        try:
            return call()
        except Exception as exc:
            if not is_transient(exc):
                if _grpc_code(exc) is not None or isinstance(
                    exc, (UnexpectedResponse, ResponseHandlingException)
                ):
                    raise permanent_error(exc, target, what) from exc
                raise
            elapsed = clock() - start
            remaining = policy.max_time - elapsed
            if remaining <= 0:
                raise ServiceError(
                    f"Qdrant at {target} unreachable after {retries} retries over {elapsed:.0f} s: "
                    f"{describe(exc)}"
                ) from exc
            retries += 1
            wait = policy.delay(retries, rng)
            if isinstance(exc, ResourceExhaustedResponse):
                wait = max(wait, float(exc.retry_after_s))
            wait = min(wait, remaining)
            logger.warning(
                "Qdrant %s failed (%s); retry %d in %.1f s (giving up %.0f s after the first try)",
                what,
                describe(exc),
                retries,
                wait,
                policy.max_time,
            )
            sleep(wait)

from __future__ import annotations

import logging
import random

import grpc
import httpx
import pytest
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from rcml_st.errors import ServiceError, UsageError
from rcml_st.index.retry import RetryPolicy, describe, is_transient, with_retry

from .conftest import FakeClock


class FakeRpcError(grpc.RpcError, grpc.Call):
    """What the gRPC stub raises, minus the channel."""

    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details

    # grpc.Call's other abstract methods, unused here
    def initial_metadata(self): ...
    def trailing_metadata(self): ...
    def is_active(self): ...
    def time_remaining(self): ...
    def cancel(self): ...
    def add_callback(self, callback): ...


def http_error(status: int) -> UnexpectedResponse:
    return UnexpectedResponse(status, "Reason", b'{"status": {"error": "boom"}}', httpx.Headers())


@pytest.mark.parametrize(
    "exc",
    [
        FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect"),
        FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED),
        FakeRpcError(grpc.StatusCode.INTERNAL),
        http_error(500),
        http_error(502),
        http_error(503),
        http_error(429),
        ResourceExhaustedResponse("slow down", 1),
        ResponseHandlingException(httpx.ConnectError("[Errno 111] Connection refused")),
        ResponseHandlingException(httpx.ReadTimeout("timed out")),
        ResponseHandlingException(httpx.RemoteProtocolError("peer closed connection")),
        ConnectionResetError(),
        TimeoutError(),
    ],
)
def test_transient_failures(exc):
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "Vector dimension error"),
        FakeRpcError(grpc.StatusCode.NOT_FOUND),
        FakeRpcError(grpc.StatusCode.UNAUTHENTICATED),
        http_error(400),
        http_error(401),
        http_error(404),
        http_error(409),
        ResponseHandlingException(ValueError("unparseable reply")),
        ValueError("a bug"),
    ],
)
def test_permanent_failures(exc):
    assert not is_transient(exc)


def test_describe_is_one_short_line():
    assert describe(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed\nmore")) == "UNAVAILABLE: failed"
    assert describe(http_error(503)) == "HTTP 503 Reason: boom"
    assert describe(ResponseHandlingException(httpx.ConnectError("refused"))) == "ConnectError: refused"


def test_retries_transient_failures_then_succeeds_with_growing_backoff():
    clock = FakeClock()
    failures = [FakeRpcError(grpc.StatusCode.UNAVAILABLE)] * 4
    calls = []

    def call():
        calls.append(1)
        if failures:
            raise failures.pop()
        return "ok"

    policy = RetryPolicy(max_time=120, initial_delay=0.5, multiplier=2, max_delay=10, jitter=0)
    result = with_retry(call, policy, "http://q:6333", "upsert", sleep=clock.sleep, clock=clock)
    assert result == "ok"
    assert len(calls) == 5
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0]


def test_gives_up_after_max_time_with_a_clear_message():
    clock = FakeClock()

    def call():
        clock.now += 0.01
        raise ResponseHandlingException(httpx.ConnectError("[Errno 111] Connection refused"))

    policy = RetryPolicy(max_time=120)
    with pytest.raises(ServiceError) as info:
        with_retry(
            call, policy, "http://q:6333", "upsert", sleep=clock.sleep, clock=clock, rng=random.Random(0)
        )
    message = str(info.value)
    assert message.startswith("Qdrant at http://q:6333 unreachable after ")
    assert "retries over 120 s: ConnectError: [Errno 111] Connection refused" in message
    assert info.value.exit_code == 1
    # bounded: the waits stop at the limit (the last one is cut short to end there)
    assert 119 < clock.now < 121
    assert max(clock.sleeps) <= policy.max_delay


def test_jitter_stays_within_bounds():
    policy = RetryPolicy(initial_delay=1, multiplier=2, max_delay=10, jitter=0.5)
    rng = random.Random(1)
    waits = [policy.delay(5, rng) for _ in range(200)]
    assert all(5 <= w <= 10 for w in waits)
    assert len(set(waits)) > 100


def test_retry_after_of_rate_limit_is_honoured():
    clock = FakeClock()
    failures = [ResourceExhaustedResponse("slow down", 7)]

    def call():
        if failures:
            raise failures.pop()
        return 1

    with_retry(call, RetryPolicy(jitter=0), "u", "upsert", sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [7.0]


@pytest.mark.parametrize(
    "exc", [http_error(400), FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "Wrong input"), http_error(404)]
)
def test_client_errors_are_never_retried(exc, caplog):
    clock = FakeClock()
    calls = []

    def call():
        calls.append(1)
        raise exc

    with caplog.at_level(logging.WARNING), pytest.raises(ServiceError, match="Qdrant at u rejected upsert"):
        with_retry(call, RetryPolicy(), "u", "upsert", sleep=clock.sleep, clock=clock)
    assert calls == [1]
    assert clock.sleeps == []
    assert not caplog.records


@pytest.mark.parametrize(
    "exc", [http_error(401), http_error(403), FakeRpcError(grpc.StatusCode.UNAUTHENTICATED)]
)
def test_refused_api_key_is_a_usage_error(exc):
    with pytest.raises(UsageError, match="QDRANT_API_KEY"):
        with_retry(lambda: (_ for _ in ()).throw(exc), RetryPolicy(), "u", "count")


def test_other_exceptions_propagate_unchanged():
    with pytest.raises(KeyError):
        with_retry(lambda: {}["x"], RetryPolicy(), "u", "count")


def test_invalid_policy_is_rejected():
    with pytest.raises(ValueError):
        RetryPolicy(max_time=-1)
    with pytest.raises(ValueError):
        RetryPolicy(jitter=2)

"""Failures with real servers this test owns: down from the start, killed, restarted, locked by a key."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from rcml_st.errors import ServiceError, UsageError
from rcml_st.index import RelationIndex, RetryPolicy
from rcml_st.index._testing import free_port

pytestmark = pytest.mark.qdrant

DIMS = {"text": 8, "image": 8, "item": 8}


def connect(server, grpc: bool, **kwargs) -> RelationIndex:
    grpc_port = server.grpc_port if grpc else None
    return RelationIndex.connect(url=server.url, grpc_port=grpc_port, prefer_grpc=grpc, **kwargs)


@pytest.mark.parametrize("grpc", [True, False], ids=["grpc", "rest"])
def test_server_down_gives_up_after_the_retry_budget(grpc, retry_clock):
    url = f"http://127.0.0.1:{free_port()}"
    index = RelationIndex.connect(
        url=url, grpc_port=free_port() if grpc else None, retry=RetryPolicy(max_time=1.5)
    )
    with pytest.raises(ServiceError) as info:
        index.ensure_collection(DIMS)
    # Backoff waits fill the budget exactly, then it gives up (the clock moves only by the waits).
    assert len(retry_clock.sleeps) >= 2 and retry_clock.now == pytest.approx(1.5)
    message = str(info.value)
    assert message.startswith(f"Qdrant at {url} unreachable after ")
    assert f" {len(retry_clock.sleeps)} retries over 2 s: " in message
    assert ("UNAVAILABLE" if grpc else "ConnectError") in message


@pytest.mark.parametrize("grpc", [True, False], ids=["grpc", "rest"])
def test_server_killed_mid_run_fails_clearly_and_a_rerun_completes(start_qdrant, make_records, grpc):
    server = start_qdrant()
    index = connect(server, grpc, batch_size=10, retry=RetryPolicy(max_time=1.0))
    index.ensure_collection(DIMS)
    recs = make_records(100, relations=("a", "b"))
    sent: list[int] = []

    def on_batch(n: int) -> None:
        sent.append(n)
        if len(sent) == 5:
            server.kill()

    with pytest.raises(ServiceError, match=r"unreachable after \d+ retries over 1 s"):
        index.upsert(recs, on_batch=on_batch)
    assert sum(sent) == 50

    server.start()  # same storage, same ports
    rerun = connect(server, grpc, batch_size=10, retry=RetryPolicy(max_time=10))
    rerun.ensure_collection(DIMS)
    assert rerun.upsert(recs) == 200
    assert rerun.finish({"a": 100, "b": 100}) == {"a": 100, "b": 100}
    assert rerun.count() == 200  # nothing doubled by the re-run


@pytest.mark.parametrize("grpc", [True, False], ids=["grpc", "rest"])
def test_server_restart_mid_run_is_survived_by_the_same_call(start_qdrant, make_records, caplog, grpc):
    server = start_qdrant()
    index = connect(server, grpc, batch_size=10, retry=RetryPolicy(max_time=30, initial_delay=0.2))
    index.ensure_collection(DIMS)
    recs = make_records(100, relations=("a", "b"))
    sent: list[int] = []
    restarter = threading.Thread(target=server.start)

    def on_batch(n: int) -> None:
        sent.append(n)
        if len(sent) == 5:
            # Batches 1-5 were acknowledged (wait=False): they must survive the crash too.
            server.kill()
            threading.Timer(1.0, restarter.start).start()

    with caplog.at_level(logging.WARNING, logger="rcml_st.index"):
        assert index.upsert(recs, on_batch=on_batch) == 200
    restarter.join()
    assert server.running
    assert sum(sent) == 200
    assert any("retry" in r.getMessage() for r in caplog.records)  # the outage did hit the run
    assert index.finish({"a": 100, "b": 100}) == {"a": 100, "b": 100}
    assert index.count() == 200


@pytest.mark.slow
@pytest.mark.parametrize("grpc", [True, False], ids=["grpc", "rest"])
def test_server_killed_during_requests_and_restarted_loses_nothing(start_qdrant, make_records, grpc):
    server = start_qdrant()
    index = connect(server, grpc, retry=RetryPolicy(max_time=30, initial_delay=0.2))
    index.ensure_collection({"text": 512, "image": 512, "item": 512})
    recs = make_records(1500, relations=("a", "b"), dim=512, image_every=1)
    killed_at: list[int] = []
    sent: list[int] = []

    def crash_and_recover() -> None:
        killed_at.append(sum(sent))
        server.kill()  # with requests in flight, not between batches
        time.sleep(0.5)
        server.start()

    def on_batch(n: int) -> None:
        sent.append(n)
        if len(sent) == 1:
            threading.Timer(0.02, crash_and_recover).start()

    assert index.upsert(recs, on_batch=on_batch) == 3000
    assert killed_at and killed_at[0] < 3000, "the crash came after the run; make the run longer"
    assert index.finish({"a": 1500, "b": 1500}) == {"a": 1500, "b": 1500}


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_api_key_is_sent_and_a_missing_key_is_a_usage_error(
    start_qdrant, make_records, monkeypatch, retry_clock
):
    server = start_qdrant(env={"QDRANT__SERVICE__API_KEY": "s3cret"})
    monkeypatch.delenv("QDRANT_API_KEY", raising=False)
    without = connect(server, True, collection="k", retry=RetryPolicy(max_time=30))
    with pytest.raises(UsageError, match=r"refused the request.*QDRANT_API_KEY"):
        without.ensure_collection(DIMS)
    assert retry_clock.sleeps == []  # not retried

    monkeypatch.setenv("QDRANT_API_KEY", "s3cret")
    for grpc in (True, False):
        index = connect(server, grpc, collection=f"k{grpc}")
        index.ensure_collection(DIMS)
        index.upsert(make_records(3))
        assert index.finish({"goes with": 3}) == {"goes with": 3}

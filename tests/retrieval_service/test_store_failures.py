"""Redis going away (killed, or hung) degrades to relevance-only within a bounded time and recovers
by itself. Each test runs its own redis-server, so the session one is never disturbed."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import grpc
import pytest
import redis

from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.api.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from serendip.store import RedisServer, seed_histories
from tests.retrieval_service.conftest import (
    PREFIX,
    ServerThread,
    make_settings,
    put_record,
    unexplored_clusters,
)

USER = "414"  # a MovieLens user with a long history


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


def _seed(url: str, serving_bundle, histories) -> None:
    client = redis.Redis.from_url(url)
    seed_histories(client, PREFIX, {USER: histories[USER]})
    put_record(client, USER, serving_bundle, unexplored_clusters(serving_bundle, histories[USER], 2))
    client.close()


def _call(stub, **extra) -> tuple[pb.RecommendResponse, float]:
    t0 = time.perf_counter()
    resp = stub.Recommend(pb.RecommendRequest(user_id=USER, k=10, exploration_ratio=0.3, **extra), timeout=10)
    return resp, time.perf_counter() - t0


def _wait_for_hit(stub, timeout_s: float = 10.0) -> pb.RecommendResponse:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        resp, _ = _call(stub)
        if resp.record_status == pb.RECORD_STATUS_HIT:
            return resp
        time.sleep(0.05)
    raise AssertionError("service did not recover after Redis came back")


def test_redis_killed_then_restarted(own_redis, small_bundle, serving_bundle, histories):
    _seed(own_redis.url, serving_bundle, histories)
    settings = make_settings(
        own_redis.url, small_bundle.path, metrics_port=0, breaker_failures=2, breaker_reset_ms=300
    )
    server = ServerThread(settings, serving_bundle).start()
    recent = list(reversed(histories[USER][-5:]))
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.RetrievalServiceStub(channel)
            assert _call(stub)[0].record_status == pb.RECORD_STATUS_HIT

            own_redis.stop()  # the process is gone: connections are refused
            for _ in range(5):
                resp, seconds = _call(stub, recent_item_ids=recent)
                assert resp.record_status == pb.RECORD_STATUS_STORE_UNAVAILABLE
                # The request's own recent items still give relevance; no record means no novel slots.
                assert [i.source for i in resp.items] == [pb.ITEM_SOURCE_RELEVANCE] * 10
                assert seconds < 1.0
            resp, _ = _call(stub)  # nothing known about the user at all: cold start, not an error
            assert [i.source for i in resp.items] == [pb.ITEM_SOURCE_COLD_START] * 10
            metrics = server.metrics_text()
            assert 'serendip_retrieval_record_status_total{status="store_unavailable"} 6.0' in metrics
            assert "serendip_retrieval_store_circuit_state 1.0" in metrics
            assert 'serendip_retrieval_store_failures_total{reason="connection"} 2.0' in metrics

            own_redis.start()  # same port, empty: the event pipeline and interest service refill it
            _seed(own_redis.url, serving_bundle, histories)
            resp = _wait_for_hit(stub)
            assert pb.ITEM_SOURCE_NOVEL_INTEREST in [i.source for i in resp.items]
            assert "serendip_retrieval_store_circuit_state 0.0" in server.metrics_text()
    finally:
        server.stop()


def test_hung_redis_costs_a_bounded_timeout_then_nothing(own_redis, small_bundle, serving_bundle, histories):
    _seed(own_redis.url, serving_bundle, histories)
    settings = make_settings(
        own_redis.url,
        small_bundle.path,
        metrics_port=0,
        store_timeout_ms=300,
        breaker_failures=2,
        breaker_reset_ms=500,
    )
    server = ServerThread(settings, serving_bundle).start()
    assert own_redis.proc is not None
    pid = own_redis.proc.pid
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.RetrievalServiceStub(channel)
            assert _call(stub)[0].record_status == pb.RECORD_STATUS_HIT
            os.kill(pid, signal.SIGSTOP)  # alive but silent: only a timeout can tell
            try:
                for _ in range(2):  # pays the bounded timeout until the breaker opens
                    resp, seconds = _call(stub)
                    assert resp.record_status == pb.RECORD_STATUS_STORE_UNAVAILABLE
                    assert 0.25 <= seconds < 1.5
                open_calls = [_call(stub) for _ in range(5)]  # circuit open: Redis not even asked
                assert all(r.record_status == pb.RECORD_STATUS_STORE_UNAVAILABLE for r, _ in open_calls)
                assert sorted(s for _, s in open_calls)[2] < 0.15
            finally:
                os.kill(pid, signal.SIGCONT)
            _wait_for_hit(stub)
            assert 'serendip_retrieval_store_failures_total{reason="timeout"} 2.0' in server.metrics_text()
    finally:
        server.stop()


def test_a_call_whose_deadline_passed_in_the_queue_costs_no_work(
    own_redis, small_bundle, serving_bundle, histories
):
    """A call queued behind a slow batch (Redis hung) and abandoned by its caller is skipped."""
    _seed(own_redis.url, serving_bundle, histories)
    settings = make_settings(
        own_redis.url, small_bundle.path, metrics_port=0, store_timeout_ms=400, breaker_failures=100
    )
    server = ServerThread(settings, serving_bundle).start()
    assert own_redis.proc is not None
    pid = own_redis.proc.pid
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.RetrievalServiceStub(channel)
            assert _call(stub)[0].record_status == pb.RECORD_STATUS_HIT
            os.kill(pid, signal.SIGSTOP)
            try:
                request = pb.RecommendRequest(user_id=USER, k=10)
                slow = stub.Recommend.future(request, timeout=10)  # holds the compute thread ~400 ms
                time.sleep(0.1)
                with pytest.raises(grpc.RpcError) as err:
                    stub.Recommend(request, timeout=0.1)
                assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert slow.result().record_status == pb.RECORD_STATUS_STORE_UNAVAILABLE
            finally:
                os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 5
        while 'dropped_total{reason="cancelled"} 1.0' not in (text := server.metrics_text()):
            assert time.monotonic() < deadline, "the abandoned call was never dropped"
            time.sleep(0.05)
        assert "serendip_retrieval_batch_size_sum 2.0" in text  # only the two answered calls ran
    finally:
        server.stop()

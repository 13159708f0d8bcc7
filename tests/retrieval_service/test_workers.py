"""Compute worker processes: the same answers as in-process compute, their metrics on the server's
endpoint, and a killed worker restarted while the server keeps answering."""

from __future__ import annotations

import os
import re
import signal
import time

import grpc
import pytest

from retrieval_service.metrics import RetrievalMetrics
from retrieval_service.worker_pool import merge_families
from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.api.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from tests.retrieval_service.conftest import ServerThread, make_settings, put_record, unexplored_clusters


def _answers(server: ServerThread, users: list[str]) -> list[tuple]:
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RetrievalServiceStub(channel)
        out = []
        for user in users:
            resp = stub.Recommend(pb.RecommendRequest(user_id=user, k=12, exploration_ratio=0.25), timeout=30)
            out.append(
                (
                    resp.record_status,
                    resp.bundle_id,
                    [(i.item_id, i.source, i.cluster_id, i.title) for i in resp.items],
                    [(n.cluster_id, n.label, n.rationale) for n in resp.novel_interests],
                )
            )
        return out


def _metric(text: str, name: str) -> float:
    found = re.findall(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    assert found, f"{name} not exposed"
    return float(found[0])


def test_worker_answers_as_in_process_compute(redis_server, seeded, small_bundle, serving_bundle, histories):
    users = sorted(histories)[:12]
    for user in users[:6]:  # half with a record (HIT, novel slots), half without (MISS)
        put_record(seeded, user, serving_bundle, unexplored_clusters(serving_bundle, histories[user], 2))
    users += ["cold-user-without-history"]
    results = {}
    for workers in (0, 1):
        server = ServerThread(make_settings(redis_server.url, small_bundle.path, workers=workers)).start()
        try:
            results[workers] = _answers(server, users)
        finally:
            server.stop()
    assert results[1] == results[0]
    statuses = [a[0] for a in results[1]]
    assert statuses.count(pb.RECORD_STATUS_HIT) == 6 and statuses.count(pb.RECORD_STATUS_MISS) == 7
    assert any(item[1] == pb.ITEM_SOURCE_NOVEL_INTEREST for a in results[1] for item in a[2])


def test_worker_metrics_are_exposed_by_the_server(redis_server, seeded, small_bundle, histories):
    server = ServerThread(
        make_settings(redis_server.url, small_bundle.path, workers=1, metrics_port=0)
    ).start()
    try:
        n = 15
        _answers(server, sorted(histories)[:n])
        text = server.metrics_text()
    finally:
        server.stop()
    # The worker's hot-path series, once each (no duplicate family from the server's own registry).
    assert text.count("# TYPE serendip_retrieval_stage_seconds histogram") == 1
    assert _metric(text, 'serendip_retrieval_record_status_total{status="miss"}') == n
    assert _metric(text, 'serendip_retrieval_items_total{source="relevance"}') == 12 * n
    assert _metric(text, 'serendip_retrieval_stage_seconds_count{stage="encode"}') >= 1
    assert _metric(text, "serendip_retrieval_batch_size_sum") == n
    assert _metric(text, "serendip_retrieval_worker_restarts_total") == 0
    # and the server's own
    assert (
        _metric(
            text,
            'grpc_server_handled_total{grpc_code="OK",grpc_method="Recommend",'
            'grpc_service="serendip.retrieval.v1.RetrievalService",grpc_type="unary"}',
        )
        == n
    )


def test_killed_worker_is_restarted_and_calls_recover(redis_server, seeded, small_bundle, histories):
    server = ServerThread(
        make_settings(redis_server.url, small_bundle.path, workers=1, metrics_port=0)
    ).start()
    user = sorted(histories)[0]
    try:
        worker = server.server.compute.workers[0]
        first_pid = worker.pid
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.RetrievalServiceStub(channel)
            assert len(stub.Recommend(pb.RecommendRequest(user_id=user, k=5), timeout=30).items) == 5
            os.kill(first_pid, signal.SIGKILL)
            codes = []
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    resp = stub.Recommend(pb.RecommendRequest(user_id=user, k=5), timeout=30)
                except grpc.RpcError as exc:
                    codes.append(exc.code())
                    time.sleep(0.05)
                    continue
                if worker.pid != first_pid:
                    break
            else:
                pytest.fail("the killed worker was not restarted in 120 s")
        assert len(resp.items) == 5 and resp.record_status == pb.RECORD_STATUS_MISS
        # While it restarted, callers were told to retry, never INTERNAL.
        assert set(codes) <= {grpc.StatusCode.UNAVAILABLE}
        assert _metric(server.metrics_text(), "serendip_retrieval_worker_restarts_total") == 1
    finally:
        server.stop()


def test_merge_families_sums_counters_and_histograms_and_takes_the_highest_gauge():
    a, b = RetrievalMetrics(), RetrievalMetrics()
    a.items[pb.ITEM_SOURCE_RELEVANCE].inc(3)
    b.items[pb.ITEM_SOURCE_RELEVANCE].inc(4)
    a.stage["store"].observe(0.002)
    b.stage["store"].observe(0.004)
    b.stage["store"].observe(0.2)
    a.breaker_state.set(0)
    b.breaker_state.set(1)
    merged = {
        f.name: f for f in merge_families([*a.compute_registry.collect(), *b.compute_registry.collect()])
    }
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in merged.values() for s in f.samples}
    assert samples[("serendip_retrieval_items_total", (("source", "relevance"),))] == 7
    assert samples[("serendip_retrieval_stage_seconds_count", (("stage", "store"),))] == 3
    assert samples[("serendip_retrieval_stage_seconds_sum", (("stage", "store"),))] == pytest.approx(0.206)
    assert samples[("serendip_retrieval_stage_seconds_bucket", (("le", "0.005"), ("stage", "store")))] == 2
    assert samples[("serendip_retrieval_store_circuit_state", ())] == 1
    assert merged["serendip_retrieval_store_circuit_state"].type == "gauge"

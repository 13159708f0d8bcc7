"""The Prometheus endpoint: standard gRPC metric names and labels, stage histograms, record status,
exploration fill, bundle info, and never a user id."""

from __future__ import annotations

import time

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.api.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from tests.retrieval_service.conftest import ServerThread, make_settings, put_record

SERVICE = "serendip.retrieval.v1.RetrievalService"


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"no sample {name}{labels}")


def test_metrics_endpoint(redis_server, seeded, small_bundle, serving_bundle, histories):
    server = ServerThread(
        make_settings(redis_server.url, small_bundle.path, metrics_port=0), serving_bundle
    ).start()
    hit_user, miss_user = "metrics-hit-q7x", "metrics-miss-z3k"
    put_record(seeded, hit_user, serving_bundle, [2, 5])
    recent = list(reversed(histories["414"][-10:]))
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.RetrievalServiceStub(channel)
            hit = stub.Recommend(
                pb.RecommendRequest(user_id=hit_user, k=10, exploration_ratio=0.3, recent_item_ids=recent)
            )
            stub.Recommend(pb.RecommendRequest(user_id=miss_user, k=4))
            with pytest.raises(grpc.RpcError):
                stub.Recommend(pb.RecommendRequest(user_id=miss_user, k=0))
        # An aborted call's status reaches the client before the interceptor's bookkeeping runs.
        deadline = time.monotonic() + 5
        while (
            'grpc_code="INVALID_ARGUMENT"' not in (text := server.metrics_text())
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)
    finally:
        server.stop()

    grpc_labels = {"grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": "Recommend"}
    assert sample(text, "grpc_server_started_total", **grpc_labels) == 3
    assert sample(text, "grpc_server_handled_total", grpc_code="OK", **grpc_labels) == 2
    assert sample(text, "grpc_server_handled_total", grpc_code="INVALID_ARGUMENT", **grpc_labels) == 1
    assert sample(text, "grpc_server_handling_seconds_count", **grpc_labels) == 3
    assert sample(text, "grpc_server_handling_seconds_bucket", le="+Inf", **grpc_labels) == 3
    for stage in ("store", "encode", "search", "rank"):
        assert sample(text, "serendip_retrieval_stage_seconds_count", stage=stage) == 2  # invalid: no work
    assert sample(text, "serendip_retrieval_record_status_total", status="hit") == 1
    assert sample(text, "serendip_retrieval_record_status_total", status="miss") == 1
    assert sample(text, "serendip_retrieval_record_status_total", status="store_unavailable") == 0
    novel = sum(1 for i in hit.items if i.source == pb.ITEM_SOURCE_NOVEL_INTEREST)
    assert novel == 3
    assert sample(text, "serendip_retrieval_novel_slots_total") == 3
    assert sample(text, "serendip_retrieval_novel_items_total") == 3
    assert sample(text, "serendip_retrieval_items_total", source="novel_interest") == 3
    assert sample(text, "serendip_retrieval_items_total", source="cold_start") == 4
    assert sample(text, "serendip_retrieval_exploration_fill_ratio_count") == 1
    assert sample(text, "serendip_retrieval_exploration_fill_ratio_bucket", le="0.99") == 0  # filled: 1.0
    assert sample(text, "serendip_retrieval_bundle_info", bundle_id=serving_bundle.bundle_id) == 1
    assert sample(text, "serendip_retrieval_bundle_clusters") == serving_bundle.n_clusters
    assert sample(text, "serendip_retrieval_store_circuit_state") == 0
    assert hit_user not in text and miss_user not in text

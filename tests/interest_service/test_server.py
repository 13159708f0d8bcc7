"""gRPC admin API on loopback: GetNovelInterests, RefreshUsers, health, reflection, bad input."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from interest_service.backends.openai_backend import OpenAIBackend
from interest_service.engine import InterestEngine
from interest_service.server import build_server
from serendip.api.interest.v1 import interest_pb2, interest_pb2_grpc
from serendip.store import seed_histories, user_histories

from .conftest import openai_cfg


@pytest.fixture
def stub(redis_client, small_bundle, icfg):
    hist = user_histories(small_bundle.interactions, 4.0)
    seed_histories(redis_client, "serendip:v1", {u: hist[u] for u in ("1", "2", "3")})
    cfg = icfg(backend="openai", openai=openai_cfg("http://127.0.0.1:9/v1", retries=0).model_dump())
    engine = InterestEngine(cfg, small_bundle, OpenAIBackend(cfg.openai), redis_client)
    server, port = build_server(engine, "127.0.0.1", 0)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel
    channel.close()
    server.stop(0)


def test_refresh_then_read_back(stub):
    api = interest_pb2_grpc.InterestServiceStub(stub)
    assert not api.GetNovelInterests(interest_pb2.GetNovelInterestsRequest(user_id="1")).found
    resp = api.RefreshUsers(interest_pb2.RefreshUsersRequest(user_ids=["1", "2", "nobody"]))
    assert resp.selected == 2 and resp.fallback == 2 and resp.skipped == 1
    got = api.GetNovelInterests(interest_pb2.GetNovelInterestsRequest(user_id="1"))
    assert got.found and not got.expired and len(got.record.interests) == 3 and got.record.dim > 0
    again = api.RefreshUsers(interest_pb2.RefreshUsersRequest(user_ids=["1"]))
    assert again.selected == 0 and again.skipped == 1
    for bad in ([], ["a{b"]):
        with pytest.raises(grpc.RpcError) as err:
            api.RefreshUsers(interest_pb2.RefreshUsersRequest(user_ids=bad))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_health_and_reflection(stub):
    health = health_pb2_grpc.HealthStub(stub)
    for name in ("", "serendip.interest.v1.InterestService"):
        assert (
            health.Check(health_pb2.HealthCheckRequest(service=name)).status
            == health_pb2.HealthCheckResponse.SERVING
        )
    refl = reflection_pb2_grpc.ServerReflectionStub(stub)
    reply = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in reply.list_services_response.service}
    assert "serendip.interest.v1.InterestService" in names and "grpc.health.v1.Health" in names

"""`serendip refresh --engine ray` on a local Ray instance (2 actors) against real Redis, and the
refresh's metrics pushed to a real HTTP server on loopback standing in for the Pushgateway.

The workers' LLM backend is an OpenAI endpoint on a closed port, so every user is filled by the
transition-model fallback (a real code path, docs/interest.md) and the test stays fast."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from interest_service.backends.openai_backend import OpenAIBackend
from interest_service.engine import InterestEngine
from interest_service.server import build_server
from serendip.api.interest.v1 import interest_pb2, interest_pb2_grpc
from serendip.cli import app
from serendip.store import decode_record, history_key, record_key, seed_histories, user_histories
from serendip.store.record import ProposalSource

from .conftest import openai_cfg

PREFIX = "serendip:v1"
USERS = [str(u) for u in range(1, 7)]
LAST_SUCCESS = "serendip_refresh_last_success_timestamp_seconds"


@dataclass
class Push:
    method: str
    path: str
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, tuple(sorted(labels.items()))))


@dataclass
class Gateway:
    url: str
    pushes: list[Push] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    """A real HTTP server that answers the Pushgateway's PUT/POST routes and keeps what it got."""
    gw = Gateway(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def _receive(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(body)
                for s in fam.samples
            }
            gw.pushes.append(Push(self.command, self.path, samples))
            self.send_response(gw.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_PUT = do_POST = _receive

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    gw.url = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield gw
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One small local Ray instance for the module; the CLI's engine joins it instead of starting one."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024 * 1024)
    yield
    ray.shutdown()


@pytest.fixture
def config(refresh_config):
    """This module's refresh config: the shared one with three recent items per prompt."""

    def write(gateway_url: str | None = None, redis_url: bool = True) -> Path:
        return refresh_config(gateway_url, redis_url, n_recent=3)

    return write


@pytest.fixture
def seeded(redis_client, small_bundle):
    hist = user_histories(small_bundle.interactions, 4.0)
    seed_histories(redis_client, PREFIX, {u: hist[u] for u in USERS})
    return redis_client


def _refresh(*args: str):
    return CliRunner().invoke(app, ["refresh", *args])


def test_ray_refresh_writes_each_user_once_and_pushes_success(
    local_ray, seeded, small_bundle, config, gateway, redis_server
):
    cfg = config(gateway.url, redis_url=False)  # the workers get --redis-url from the driver
    before = time.time()
    result = _refresh(
        "-c", str(cfg), "--bundle", str(small_bundle.path), "--redis-url", redis_server.url,
        "--engine", "ray", "--users", "1,2,3,4,5,6,3",  # a repeated id must not land in a second shard
        "--workers", "2", "--shard-size", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # 6 distinct users → 3 shards; the first two shards start on different actors at once.
    assert "3 shards on 2 Ray workers, 0 failed" in result.output
    assert "6 users in" in result.output and "outcome: fallback" in result.output
    for uid in USERS:
        rec = decode_record(seeded.get(record_key(PREFIX, uid)))
        assert rec.bundle_id == small_bundle.bundle_id and len(rec.interests) == 3
        assert rec.source == ProposalSource.PROPOSAL_SOURCE_TRANSITION
    (push,) = gateway.pushes
    assert push.method == "PUT" and push.path == "/metrics/job/serendip_refresh/engine/ray"
    assert push.value("serendip_refresh_last_run_users", outcome="fallback") == 6  # each user once
    assert push.value("serendip_refresh_last_run_users", outcome="failed") == 0
    assert push.value("serendip_refresh_last_run_selected_users") == 6
    assert push.value("serendip_refresh_last_run_success") == 1
    assert push.value("serendip_refresh_last_run_failed_shards") == 0
    assert before <= push.value(LAST_SUCCESS) <= time.time()
    assert push.value("serendip_refresh_last_run_duration_seconds") > 0
    # A second run finds every record fresh: nothing is refreshed twice.
    again = _refresh(
        "-c", str(cfg), "--bundle", str(small_bundle.path), "--redis-url", redis_server.url,
        "--engine", "ray", "--shard-size", "4",
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "selection: skip_fresh" in again.output and "0 users in" in again.output


def test_failing_shard_is_reported_the_rest_finish_and_success_is_not_pushed(
    local_ray, seeded, small_bundle, config, gateway
):
    # User 4's history key holds a string, not a list: reading the shard's histories fails (WRONGTYPE).
    seeded.delete(history_key(PREFIX, "4"))
    seeded.set(history_key(PREFIX, "4"), "not a list")
    result = _refresh(
        "-c", str(config(gateway.url)), "--bundle", str(small_bundle.path), "--engine", "ray",
        "--users", ",".join(USERS), "--workers", "2", "--shard-size", "2",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "3 shards on 2 Ray workers, 1 failed" in result.output
    assert "failed shard (2 users: 3, 4)" in result.output and "WRONGTYPE" in result.output
    assert "4 users in" in result.output
    for uid in ("1", "2", "5", "6"):
        assert decode_record(seeded.get(record_key(PREFIX, uid))).bundle_id == small_bundle.bundle_id
    assert seeded.get(record_key(PREFIX, "3")) is None and seeded.get(record_key(PREFIX, "4")) is None
    (push,) = gateway.pushes
    # POST replaces only the pushed names: the last success pushed by an earlier run survives.
    assert push.method == "POST" and push.path == "/metrics/job/serendip_refresh/engine/ray"
    assert push.value(LAST_SUCCESS) is None
    assert push.value("serendip_refresh_last_run_success") == 0
    assert push.value("serendip_refresh_last_run_failed_shards") == 1
    assert push.value("serendip_refresh_last_run_users", outcome="fallback") == 4


def test_local_refresh_pushes_and_a_failed_push_never_fails_the_run(seeded, small_bundle, config, gateway):
    cfg = config(gateway.url)
    ok = _refresh("-c", str(cfg), "--bundle", str(small_bundle.path), "--users", "1,2")
    assert ok.exit_code == 0, ok.output
    (push,) = gateway.pushes
    assert push.method == "PUT" and push.path == "/metrics/job/serendip_refresh/engine/local"
    assert push.value("serendip_refresh_last_run_users", outcome="fallback") == 2
    assert push.value(LAST_SUCCESS) == REGISTRY.get_sample_value(LAST_SUCCESS)

    gateway.status = 500
    failures = REGISTRY.get_sample_value("serendip_refresh_push_failures_total") or 0.0
    bad = _refresh("-c", str(cfg), "--bundle", str(small_bundle.path), "--users", "3", "--force")
    assert bad.exit_code == 0, bad.output
    assert "could not push metrics" in bad.output and len(gateway.pushes) == 2
    assert REGISTRY.get_sample_value("serendip_refresh_push_failures_total") == failures + 1
    assert decode_record(seeded.get(record_key(PREFIX, "3"))).bundle_id == small_bundle.bundle_id


def test_refresh_users_rpc_sets_last_success(seeded, small_bundle, icfg):
    cfg = icfg(backend="openai", openai=openai_cfg("http://127.0.0.1:9/v1", retries=0).model_dump())
    engine = InterestEngine(cfg, small_bundle, OpenAIBackend(cfg.openai), seeded)
    server, port = build_server(engine, "127.0.0.1", 0)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            before = time.time()
            api = interest_pb2_grpc.InterestServiceStub(channel)
            assert api.RefreshUsers(interest_pb2.RefreshUsersRequest(user_ids=["1"])).fallback == 1
    finally:
        server.stop(0)
    assert REGISTRY.get_sample_value(LAST_SUCCESS) >= before


def test_bad_options_are_refused_with_the_field_named(seeded, small_bundle, config, tmp_path):
    cfg = config()
    tuples = _refresh("-c", str(cfg), "--bundle", str(small_bundle.path), "--engine", "ray", "--tuple-mode")
    assert tuples.exit_code == 2 and "tuple_mode is not supported with --engine ray" in tuples.output
    bad_id = _refresh("-c", str(cfg), "--bundle", str(small_bundle.path), "--users", "1,a{b}")
    assert bad_id.exit_code == 2 and "invalid user id 'a{b}'" in bad_id.output
    bad_url = tmp_path / "bad-url.toml"
    bad_url.write_text(
        cfg.read_text().replace("batch_size = 2", 'batch_size = 2\npushgateway_url = "pg:9091"')
    )
    res = _refresh("-c", str(bad_url), "--bundle", str(small_bundle.path))
    assert res.exit_code == 2 and "refresh.pushgateway_url" in res.output
    assert _refresh("-c", str(cfg), "--engine", "spark").exit_code == 2

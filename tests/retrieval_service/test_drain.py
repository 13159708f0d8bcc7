"""SIGTERM on a real `serendip serve-retrieval` process: health turns NOT_SERVING first, calls keep
being answered during the drain delay, in-flight calls finish, the process exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from retrieval_service.bench.runner import wait_serving
from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.api.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from serendip.stack.procs import serendip_argv
from serendip.store.server import free_port
from tests.retrieval_service.conftest import PREFIX

DRAIN_DELAY_S = 1.0


def test_sigterm_drains_gracefully(tmp_path, redis_server, seeded, small_bundle):
    port, metrics_port = free_port(), free_port()
    config = tmp_path / "serve.toml"
    config.write_text(
        f'[redis]\nurl = "{redis_server.url}"\nkey_prefix = "{PREFIX}"\n'
        f'[bundle]\nroot = "{small_bundle.path}"\n'
        f'[retrieval]\nhost = "127.0.0.1"\nport = {port}\nmetrics_port = {metrics_port}\n'
        f"drain_delay_s = {DRAIN_DELAY_S}\ndrain_grace_s = 5\nwatch_interval_s = 0\n"
    )
    proc = subprocess.Popen(
        serendip_argv("serve-retrieval", "--log-level", "WARNING"),
        env={**os.environ, "SERENDIP_CONFIG": str(config)},
    )
    target = f"127.0.0.1:{port}"
    calls: list[tuple[float, float, grpc.StatusCode]] = []
    stop = threading.Event()

    def drive(worker: int) -> None:
        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.RetrievalServiceStub(channel)
            n = 0
            while not stop.is_set():
                n += 1
                t0 = time.monotonic()
                try:
                    stub.Recommend(
                        pb.RecommendRequest(user_id=str(1 + (worker * 97 + n) % 600), k=20), timeout=10
                    )
                    code = grpc.StatusCode.OK
                except grpc.RpcError as exc:
                    code = exc.code()
                calls.append((t0, time.monotonic(), code))

    threads = [threading.Thread(target=drive, args=(w,)) for w in range(4)]
    try:
        wait_serving(target, 180, proc)
        for t in threads:
            t.start()
        time.sleep(0.5)
        sigterm_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        not_serving_at = None
        with grpc.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() - sigterm_at < DRAIN_DELAY_S:
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    not_serving_at = time.monotonic()
                    break
                time.sleep(0.02)
        assert proc.wait(timeout=30) == 0
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not_serving_at is not None and not_serving_at - sigterm_at < 0.5
    # Everything sent before the port stopped taking calls was answered, including calls made
    # while health already said NOT_SERVING (load balancers need that time to move away).
    port_closes = sigterm_at + DRAIN_DELAY_S
    before = [code for t0, _, code in calls if t0 < port_closes - 0.2]
    assert len(before) > 20 and set(before) == {grpc.StatusCode.OK}
    assert any(t0 > not_serving_at and code == grpc.StatusCode.OK for t0, _, code in calls)
    # In flight at the moment the port closed, and still answered.
    assert any(t0 < port_closes < t1 and code == grpc.StatusCode.OK for t0, t1, code in calls)
    # Calls that arrive once the port is closing are refused (grpc core says UNAVAILABLE, or
    # CANCELLED for a stream that raced the shutdown), never anything else.
    refused = {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
    assert {code for t0, _, code in calls if t0 >= port_closes - 0.2} <= refused

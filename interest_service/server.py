"""gRPC admin server: ``serendip.interest.v1.InterestService`` + health + reflection + Prometheus.

Calls are few and heavy (a refresh runs the LLM), so a small thread pool serves them and refreshes
run one at a time (the engine's backend is not re-entrant); reads never wait for a refresh.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from interest_service import metrics
from interest_service.engine import InterestEngine
from interest_service.selection import select_users
from serendip.api.interest.v1 import interest_pb2, interest_pb2_grpc
from serendip.api.record.v1 import record_pb2
from serendip.store import RecordError, decode_record, record_key

log = logging.getLogger(__name__)
SERVICE = interest_pb2.DESCRIPTOR.services_by_name["InterestService"].full_name
MAX_USERS_PER_CALL = 256


class InterestServicer(interest_pb2_grpc.InterestServiceServicer):
    def __init__(self, engine: InterestEngine):
        self.engine = engine
        self._refresh_lock = threading.Lock()

    def RefreshUsers(self, request, context):
        ids = list(request.user_ids)
        if not ids:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "user_ids is empty")
        if len(ids) > MAX_USERS_PER_CALL:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_USERS_PER_CALL} users per call")
        for uid in ids:
            try:
                record_key(self.engine.cfg.redis_prefix, uid)
            except ValueError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"user id {uid!r}: {exc}")
        t0 = time.perf_counter()
        cfg = self.engine.cfg
        with self._refresh_lock:
            sel = select_users(
                self.engine.client,
                cfg.redis_prefix,
                ids,
                self.engine.catalog,
                history_len=cfg.refresh.history_len,
                stale_after_s=cfg.refresh.stale_after_s,
                n_recent_clusters=cfg.refresh.transition_recent,
                force=request.force,
            )
            outcomes: dict[str, int] = {}
            bs = cfg.refresh.batch_size
            for start in range(0, len(sel.users), bs):
                report = self.engine.run_batch(sel.users[start : start + bs])
                for k, v in report.outcomes.items():
                    outcomes[k] = outcomes.get(k, 0) + v
        skipped = sum(v for k, v in sel.reasons.items() if k.startswith("skip_"))
        if not outcomes.get("failed"):
            metrics.REFRESH_LAST_SUCCESS.set_to_current_time()
        return interest_pb2.RefreshUsersResponse(
            selected=len(sel.users),
            refreshed=outcomes.get("refreshed", 0),
            from_tuple=outcomes.get("tuple", 0),
            fallback=outcomes.get("fallback", 0),
            kept=outcomes.get("kept", 0),
            failed=outcomes.get("failed", 0),
            skipped=skipped,
            seconds=time.perf_counter() - t0,
        )

    def GetNovelInterests(self, request, context):
        try:
            key = record_key(self.engine.cfg.redis_prefix, request.user_id)
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        data = self.engine.client.get(key)
        if data is None:
            return interest_pb2.GetNovelInterestsResponse(found=False)
        try:
            rec = decode_record(data)  # validates dimensions and values, not just the wire format
        except RecordError as exc:
            context.abort(grpc.StatusCode.DATA_LOSS, f"stored record is corrupt: {exc}")
        msg = record_pb2.NovelInterestRecord()
        msg.ParseFromString(data)
        return interest_pb2.GetNovelInterestsResponse(found=True, expired=rec.is_expired(), record=msg)


def build_server(
    engine: InterestEngine, host: str, port: int, max_workers: int = 4
) -> tuple[grpc.Server, int]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="interest-grpc")
    )
    interest_pb2_grpc.add_InterestServiceServicer_to_server(InterestServicer(engine), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC on {host}:{port}")
    for name in ("", SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    server.health_servicer = health_servicer  # type: ignore[attr-defined]
    return server, bound


def serve(engine: InterestEngine, host: str, port: int, metrics_port: int, max_workers: int = 4) -> None:
    """Run until SIGTERM/SIGINT: health NOT_SERVING first, then a graceful stop."""
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=host)
    server, bound = build_server(engine, host, port, max_workers)
    server.start()
    log.info("InterestService on %s:%d (metrics :%s)", host, bound, metrics_port or "off")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    for name in ("", SERVICE):
        server.health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)  # type: ignore[attr-defined]
    server.stop(grace=10).wait()

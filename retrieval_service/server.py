"""The gRPC server: wiring, start-up, and a graceful drain on SIGTERM.

Start-up loads and verifies the bundle before the port opens, so a started server can always
answer. Shutdown: health turns NOT_SERVING first (load balancers stop routing), then after
``drain_delay_s`` the port stops taking calls and in-flight ones get ``drain_grace_s`` to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from retrieval_service.batcher import MicroBatcher
from retrieval_service.breaker import CircuitBreaker
from retrieval_service.config import MAX_K, ServiceSettings
from retrieval_service.grpc_metrics import GrpcMetricsInterceptor
from retrieval_service.metrics import RetrievalMetrics
from retrieval_service.recommender import BundleHolder, Recommender, limit_faiss_threads
from retrieval_service.reload import BundleReloader
from retrieval_service.servicer import AdminServicer, RetrievalServicer
from retrieval_service.serving_bundle import ServingBundle, load_serving_bundle
from retrieval_service.store import UserStore
from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.api.retrieval.v1 import retrieval_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["RetrievalService"].full_name,
    pb.DESCRIPTOR.services_by_name["RetrievalAdminService"].full_name,
)


class RetrievalServer:
    def __init__(self, settings: ServiceSettings, bundle: ServingBundle | None = None) -> None:
        if not settings.redis.url:
            raise ValueError("redis.url is required (serve-retrieval starts an embedded Redis when unset)")
        self.settings = settings
        self.metrics = RetrievalMetrics()
        self._initial_bundle = bundle
        self.port = 0
        self.metrics_port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._http = None
        self._tasks: list[asyncio.Task[None]] = []

    def load_bundle(self, path: Path) -> ServingBundle:
        """Load and verify a bundle on the calling (worker) thread, searching with few threads."""
        cfg = self.settings.retrieval
        limit_faiss_threads(cfg.threads)  # the warm-up query must not spin every core while serving
        return load_serving_bundle(
            path,
            index_device=self.settings.index.device,
            # Long enough to survive every exclusion and history item of a maximal request.
            cold_start_len=MAX_K + cfg.max_exclude_items + cfg.max_recent_items + cfg.history_len,
        )

    async def start(self) -> None:
        s, cfg = self.settings, self.settings.retrieval
        bundle = self._initial_bundle or await asyncio.to_thread(self.load_bundle, s.bundle.root)
        self.holder = BundleHolder(bundle)
        self.metrics.bundle_served(bundle.bundle_id, bundle.index.device, bundle.n_items, bundle.n_clusters)
        breaker = CircuitBreaker(
            cfg.breaker_failures, cfg.breaker_reset_ms / 1000, on_change=self.metrics.breaker_changed
        )
        self.store = UserStore(
            s.redis.url or "",
            s.redis.key_prefix,
            cfg.history_len,
            timeout_s=cfg.store_timeout_ms / 1000,
            breaker=breaker,
            connect_timeout_s=min(s.redis.connect_timeout_ms, cfg.store_timeout_ms) / 1000,
            on_failure=self.metrics.store_failure,
        )
        self.recommender = Recommender(self.store, self.holder, cfg, self.metrics)
        self.batcher = MicroBatcher(
            self.recommender.recommend, cfg.micro_batch_max, on_dropped=self.metrics.requests_dropped
        )
        self.reloader = BundleReloader(
            self.holder, self.load_bundle, s.bundle.root, s.bundle.current, self.metrics
        )

        server = grpc.aio.server(
            interceptors=[GrpcMetricsInterceptor(self.metrics)],
            options=[
                ("grpc.so_reuseport", 0),  # a second instance on the same port must fail loudly
                # Clients balance over pods when they (re)connect: ending every connection after a
                # while (GOAWAY, in-flight calls finish within the grace) makes long-lived clients
                # re-resolve the headless Service and spread onto pods that scaled out since.
                ("grpc.max_connection_age_ms", int(cfg.max_connection_age_s * 1000)),
                ("grpc.max_connection_age_grace_ms", int(cfg.max_connection_age_grace_s * 1000)),
            ],
        )
        pb_grpc.add_RetrievalServiceServicer_to_server(RetrievalServicer(self.batcher, cfg), server)
        pb_grpc.add_RetrievalAdminServiceServicer_to_server(AdminServicer(self.reloader, self.holder), server)
        self.health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        reflection.enable_server_reflection(
            (
                *SERVICE_NAMES,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        self.port = server.add_insecure_port(f"{cfg.host}:{cfg.port}")
        if not self.port:
            raise OSError(f"cannot bind gRPC port {cfg.host}:{cfg.port}")
        self._server = server
        self.batcher.start()
        await server.start()
        if cfg.metrics_port is not None:
            self._http, _ = start_http_server(cfg.metrics_port, addr=cfg.host, registry=self.metrics.registry)
            self.metrics_port = int(self._http.server_port)
        if cfg.watch_interval_s > 0:
            self._tasks.append(asyncio.create_task(self.reloader.watch(cfg.watch_interval_s)))
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "retrieval service on %s:%d (metrics %s), bundle %s",
            cfg.host, self.port, self.metrics_port, bundle.bundle_id,
        )  # fmt: skip

    async def drain(self) -> None:
        """NOT_SERVING first, then stop taking calls and let in-flight ones finish."""
        cfg = self.settings.retrieval
        await self.health.enter_graceful_shutdown()
        log.info("draining: health NOT_SERVING, stopping in %.1fs", cfg.drain_delay_s)
        await asyncio.sleep(cfg.drain_delay_s)
        if self._server:
            await self._server.stop(cfg.drain_grace_s)
        # The batcher outlives the server so that calls accepted before the stop are answered.
        await self.batcher.stop()
        await asyncio.to_thread(self.recommender.close)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http:
            self._http.shutdown()
            self._http.server_close()
        log.info("stopped")


async def serve(settings: ServiceSettings) -> None:
    """Run until SIGTERM or SIGINT, then drain."""
    server = RetrievalServer(settings)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.drain()


def run(settings: ServiceSettings) -> None:
    """Process entry point. torch's thread count is process-wide, so it is set here rather than in
    the server (tests run servers inside a process that also trains models)."""
    import torch

    torch.set_num_threads(settings.retrieval.threads)
    asyncio.run(serve(settings))

"""The gRPC server: wiring, start-up, and a graceful drain on SIGTERM.

Start-up loads and verifies the bundle before the port opens, so a started server can always
answer. Shutdown: health turns NOT_SERVING first (load balancers stop routing), then after
``drain_delay_s`` the port stops taking calls and in-flight ones get ``drain_grace_s`` to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from retrieval_service.batcher import MicroBatcher
from retrieval_service.compute import Compute, InProcessCompute, load_for_serving
from retrieval_service.config import ServiceSettings
from retrieval_service.grpc_metrics import GrpcMetricsInterceptor
from retrieval_service.metrics import RetrievalMetrics
from retrieval_service.recommender import limit_faiss_threads
from retrieval_service.reload import BundleReloader
from retrieval_service.servicer import AdminServicer, RetrievalServicer, add_retrieval_servicer
from retrieval_service.serving_bundle import ServingBundle
from retrieval_service.worker_pool import WorkerPool
from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.api.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from serendip.bundle import resolve_bundle_path

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["RetrievalService"].full_name,
    pb.DESCRIPTOR.services_by_name["RetrievalAdminService"].full_name,
)


class RetrievalServer:
    def __init__(self, settings: ServiceSettings, bundle: ServingBundle | None = None) -> None:
        """``bundle``: an already loaded bundle to serve in-process (``workers = 0`` only; tests)."""
        if not settings.redis.url:
            raise ValueError("redis.url is required (serve-retrieval starts an embedded Redis when unset)")
        if bundle is not None and settings.retrieval.workers:
            raise ValueError("a preloaded bundle is served in-process: set retrieval.workers = 0")
        self.settings = settings
        self.metrics = RetrievalMetrics(local_compute=not settings.retrieval.workers)
        self._initial_bundle = bundle
        self.port = 0
        self.metrics_port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._http = None
        self._tasks: list[asyncio.Task[None]] = []

    async def _start_compute(self) -> Compute:
        s, cfg = self.settings, self.settings.retrieval
        if self._initial_bundle is not None:
            return InProcessCompute(s, self._initial_bundle, self.metrics)
        # Both modes start from the bundle that the root's configured `current` link names now.
        path = resolve_bundle_path(s.bundle.root, s.bundle.current).resolve()
        if not cfg.workers:
            return InProcessCompute(s, await asyncio.to_thread(load_for_serving, s, path), self.metrics)
        pool = WorkerPool(s, cfg.workers, self.metrics)
        await pool.start(path)
        return pool

    async def start(self) -> None:
        s, cfg = self.settings, self.settings.retrieval
        self.compute = await self._start_compute()
        info = self.compute.info
        self.metrics.bundle_served(info.bundle_id, info.index_device, info.n_items, info.n_clusters)
        self.batcher = MicroBatcher(
            self.compute.processors(),
            cfg.micro_batch_max,
            on_dropped=self.metrics.requests_dropped,
            # In-process compute searches on the batcher thread: FAISS's thread count is per thread.
            on_thread_start=functools.partial(limit_faiss_threads, cfg.threads),
            thread_name="recommend",
        )
        self.reloader = BundleReloader(self.compute, s.bundle.root, s.bundle.current, self.metrics)

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
        add_retrieval_servicer(RetrievalServicer(self.batcher, cfg), server)
        pb_grpc.add_RetrievalAdminServiceServicer_to_server(
            AdminServicer(self.reloader, self.compute), server
        )
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
            cfg.host, self.port, self.metrics_port, info.bundle_id,
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
        await self.compute.close()
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

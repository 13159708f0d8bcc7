"""Where micro-batches are computed: the `Compute` protocol and its in-process implementation.

`RetrievalServer` hands each micro-batch to one of the compute's processors and asks it to replace
the served bundle on reload. Two siblings:
- `InProcessCompute` (``retrieval.workers = 0``): the recommender on a thread of the server process.
- `WorkerPool` (worker_pool.py, the default): recommenders in separate processes. The compute then
  holds no GIL that the event loop needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from retrieval_service.breaker import CircuitBreaker
from retrieval_service.config import MAX_K, ServiceSettings
from retrieval_service.metrics import RetrievalMetrics
from retrieval_service.recommender import BundleHolder, Recommender, limit_faiss_threads
from retrieval_service.serving_bundle import ServingBundle, load_serving_bundle
from retrieval_service.store import UserStore
from retrieval_service.validation import Query
from serendip.api.retrieval.v1 import retrieval_pb2 as pb

# One answer per query: a message, or the message already serialised (from a worker process).
Answer = pb.RecommendResponse | bytes
Processor = Callable[[list[Query]], list[Answer]]


class ComputeUnavailable(Exception):
    """No compute can take the batch now (a worker process died and is being restarted)."""


@dataclass(frozen=True)
class BundleInfo:
    bundle_id: str
    path: Path
    index_device: str
    n_items: int
    n_clusters: int
    dim: int

    @classmethod
    def of(cls, sb: ServingBundle) -> BundleInfo:
        return cls(sb.bundle_id, sb.path, sb.index.device, sb.n_items, sb.n_clusters, sb.dim)


class Compute(Protocol):
    @property
    def info(self) -> BundleInfo:
        """The bundle being served."""
        ...

    def processors(self) -> list[Processor]:
        """One per batcher thread; each is called by one thread at a time."""
        ...

    async def replace(self, path: Path) -> BundleInfo:
        """Load and verify the bundle at ``path``, then serve it. Raises `BundleError`, with the
        served bundle unchanged, when it cannot be served."""
        ...

    async def close(self) -> None: ...


def load_for_serving(settings: ServiceSettings, path: Path) -> ServingBundle:
    """Load and verify a bundle on the calling thread, searching with few threads."""
    cfg = settings.retrieval
    limit_faiss_threads(cfg.threads)  # the warm-up query must not spin every core while serving
    return load_serving_bundle(
        path,
        index_device=settings.index.device,
        # Long enough to survive every exclusion and history item of a maximal request.
        cold_start_len=MAX_K + cfg.max_exclude_items + cfg.max_recent_items + cfg.history_len,
        encoder=cfg.encoder,
        threads=cfg.threads,
    )


def make_recommender(
    settings: ServiceSettings, bundle: ServingBundle, metrics: RetrievalMetrics
) -> Recommender:
    """The recommender with its own Redis client and circuit breaker."""
    s, cfg = settings, settings.retrieval
    breaker = CircuitBreaker(
        cfg.breaker_failures, cfg.breaker_reset_ms / 1000, on_change=metrics.breaker_changed
    )
    store = UserStore(
        s.redis.url or "",
        s.redis.key_prefix,
        cfg.history_len,
        timeout_s=cfg.store_timeout_ms / 1000,
        breaker=breaker,
        connect_timeout_s=min(s.redis.connect_timeout_ms, cfg.store_timeout_ms) / 1000,
        on_failure=metrics.store_failure,
    )
    return Recommender(store, BundleHolder(bundle), cfg, metrics)


class InProcessCompute:
    """The recommender on one batcher thread of the server process (``workers = 0``).

    Simpler and lighter (one copy of the bundle, no process start), but the compute shares the GIL
    with the event loop: every GIL release inside a batch (each torch operator, FAISS call, socket
    read) can wait for the loop's current turn. Under load it gives ~40 % less RPS than one worker
    process; at one client, ~0.2 ms less latency (docs/retrieval.md, "Measured").
    """

    def __init__(self, settings: ServiceSettings, bundle: ServingBundle, metrics: RetrievalMetrics) -> None:
        self.settings = settings
        self.recommender = make_recommender(settings, bundle, metrics)

    @property
    def info(self) -> BundleInfo:
        return BundleInfo.of(self.recommender.bundles.current)

    def processors(self) -> list[Processor]:
        return [self.recommender.respond]  # type: ignore[list-item]

    async def replace(self, path: Path) -> BundleInfo:
        fresh = await asyncio.to_thread(load_for_serving, self.settings, path)
        self.recommender.bundles.current = fresh  # the swap: batches that start from now on use it
        return BundleInfo.of(fresh)

    async def close(self) -> None:
        await asyncio.to_thread(self.recommender.close)

"""The retrieval service's configuration: its own `[retrieval]` section plus the core sections it reads.

The core keeps `Settings.retrieval` a free-form dict (it never imports a service); this model is what
validates it, so a bad value fails at start.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from serendip.config import BundleConfig, IndexConfig, RedisConfig, Settings
from serendip.seqmodel.user_encoder import EncoderKind

# Fixed by the API contract (retrieval.proto), not configuration.
MAX_K = 500


class RetrievalConfig(BaseModel):
    model_config = {"extra": "forbid"}

    host: str = "0.0.0.0"
    port: int = Field(50051, ge=0, le=65535)  # 0 = any free port (tests)
    # Prometheus endpoint; None = none. 0 = any free port.
    metrics_port: int | None = Field(9101, ge=0, le=65535)
    # Share of k given to novel-interest items when the request does not say.
    exploration_ratio: float = Field(0.2, ge=0.0, le=1.0)
    # Lists probed by the whole-catalog relevance search (the bundle's relevance index: ~4·√n lists;
    # for bundles without one, the cluster index's clusters); None = all (exact, slow on big catalogs).
    # 32 gives recall@10 0.94 against exhaustive search on MovieLens (docs/retrieval.md).
    relevance_nprobe: int | None = Field(32, ge=1)
    # Candidates per wanted item that the relevance index's 4-bit codes shortlist for exact rescoring
    # (bundles with a relevance index): 2 keeps ~0.9+ of the exact top-k in dense regions, 4 ~0.98.
    relevance_refine: int = Field(2, ge=1, le=16)
    # Novel query = normalise(w * interest embedding + (1 - w) * user embedding), both unit length:
    # the interest picks the region, the user's taste picks among the cluster's items.
    novel_query_weight: float = Field(0.7, ge=0.0, le=1.0)
    # Items read from the stored history (most recent first); the model sees at most its max_len.
    history_len: int = Field(50, ge=1, le=1000)
    max_recent_items: int = Field(100, ge=0, le=10_000)
    max_exclude_items: int = Field(1000, ge=0, le=100_000)
    max_batch_requests: int = Field(64, ge=1, le=1000)
    # Requests waiting together are served as one micro-batch (one Redis round trip, one model call).
    micro_batch_max: int = Field(32, ge=1, le=1024)
    # Bound on a Redis round trip; past it the request is served relevance-only.
    store_timeout_ms: int = Field(30, ge=1)
    breaker_failures: int = Field(3, ge=1)  # consecutive failures that open the circuit
    breaker_reset_ms: int = Field(1000, ge=1)  # open this long, then one probe decides
    # Shutdown: health says NOT_SERVING this long before the port stops taking calls, so load
    # balancers move away first; then in-flight calls get up to drain_grace_s to finish.
    drain_delay_s: float = Field(1.0, ge=0.0)
    drain_grace_s: float = Field(10.0, ge=0.0)
    # Connections are closed gracefully after this long so clients re-resolve and rebalance (k8s
    # headless Service + client-side round robin: see deploy/README.md).
    max_connection_age_s: float = Field(300.0, gt=0)
    max_connection_age_grace_s: float = Field(30.0, ge=0)
    # Poll the bundle root's `current` link this often and hot-reload when it moves; 0 = off.
    watch_interval_s: float = Field(5.0, ge=0.0)
    # Compute worker processes (worker_pool.py): each holds the bundle and answers micro-batches, so
    # the compute does not share the event loop's GIL. 0 = compute on a thread of the server process
    # (one copy of the bundle, no process start; slower under load). More than 1 pays only with
    # spare cores: each worker costs a copy of the bundle in memory.
    workers: int = Field(1, ge=0, le=64)
    # torch intra-op threads (process-wide, set by `serve-retrieval`) and FAISS OpenMP threads of the
    # threads that search (compute thread, bundle loads). One: batches are serial and cores scarce.
    threads: int = Field(1, ge=1)
    # User encoder: "onnx" runs the bundle's exported encoder with ONNX Runtime (~1.7× cheaper per
    # micro-batch than eager torch), "torch" the model itself, "auto" ONNX when the bundle has one.
    encoder: EncoderKind = "auto"


class ServiceSettings(BaseModel):
    """Everything the service reads from the configuration tree."""

    retrieval: RetrievalConfig = RetrievalConfig()
    redis: RedisConfig = RedisConfig()
    bundle: BundleConfig = BundleConfig()
    index: IndexConfig = IndexConfig()

    @classmethod
    def from_settings(cls, settings: Settings) -> ServiceSettings:
        return cls(
            retrieval=RetrievalConfig.model_validate(settings.retrieval),
            redis=settings.redis,
            bundle=settings.bundle,
            index=settings.index,
        )

"""Prometheus metrics of the retrieval service (one registry per server; no user-id labels).

The gRPC ones follow the go-grpc-prometheus names and labels (see grpc_metrics.py); the rest are
``serendip_retrieval_*``. Label children used on every request are bound once here.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from retrieval_service.breaker import BreakerState
from serendip.api.retrieval.v1 import retrieval_pb2 as pb

# Fine at the low end: the latency targets are single-digit milliseconds.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
STAGES = ("store", "encode", "search", "rank")
STORE_FAILURES = ("timeout", "connection", "error", "circuit_open")


def status_name(status: int) -> str:
    """RECORD_STATUS_STORE_UNAVAILABLE → store_unavailable."""
    return pb.RecordStatus.Name(status).removeprefix("RECORD_STATUS_").lower()


def source_name(source: int) -> str:
    return pb.ItemSource.Name(source).removeprefix("ITEM_SOURCE_").lower()


class RetrievalMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, *, local_compute: bool = True) -> None:
        """``local_compute``: the hot-path metrics below are this process's own. With compute worker
        processes they are each worker's, and the server exposes theirs instead (worker_pool.py)."""
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # The hot path's own metrics (recommender, Redis store, breaker), apart from the serving ones.
        self.compute_registry = CollectorRegistry()
        c = self.compute_registry
        if local_compute:
            r.register(c)
        grpc_labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.grpc_started = Counter(
            "grpc_server_started_total", "RPCs started on the server.", grpc_labels, registry=r
        )
        self.grpc_handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, regardless of success or failure.",
            [*grpc_labels, "grpc_code"],
            registry=r,
        )
        self.grpc_handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Response latency of RPCs handled by the server.",
            grpc_labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        stage = Histogram(
            "serendip_retrieval_stage_seconds",
            "Time per hot-path stage and micro-batch (every request of the batch waited this long).",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=c,
        )
        self.stage = {s: stage.labels(stage=s) for s in STAGES}
        self.batch_size = Histogram(
            "serendip_retrieval_batch_size",
            "Requests served together in one micro-batch.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=c,
        )
        status = Counter(
            "serendip_retrieval_record_status_total",
            "Requests by what became of the user's novel-interest record.",
            ["status"],
            registry=c,
        )
        self.record_status = {s: status.labels(status=status_name(s)) for s in pb.RecordStatus.values()[1:]}
        items = Counter(
            "serendip_retrieval_items_total", "Items returned, by source.", ["source"], registry=c
        )
        self.items = {s: items.labels(source=source_name(s)) for s in pb.ItemSource.values()[1:]}
        self.novel_slots = Counter(
            "serendip_retrieval_novel_slots_total", "Exploration slots offered (record usable).", registry=c
        )
        self.novel_filled = Counter(
            "serendip_retrieval_novel_items_total", "Exploration slots filled with novel items.", registry=c
        )
        self.fill_ratio = Histogram(
            "serendip_retrieval_exploration_fill_ratio",
            "Per request with exploration slots: novel items returned / slots.",
            buckets=(0.0, 0.25, 0.5, 0.75, 0.99, 1.0),
            registry=c,
        )
        dropped = Counter(
            "serendip_retrieval_dropped_total",
            "Requests dropped from the queue before any work, by reason (deadline passed, caller gone).",
            ["reason"],
            registry=r,
        )
        self.dropped = {x: dropped.labels(reason=x) for x in ("deadline", "cancelled")}
        failures = Counter(
            "serendip_retrieval_store_failures_total",
            "Redis round trips not made or not answered in time, by reason.",
            ["reason"],
            registry=c,
        )
        self.store_failures = {f: failures.labels(reason=f) for f in STORE_FAILURES}
        self.breaker_state = Gauge(
            "serendip_retrieval_store_circuit_state",
            "Redis circuit breaker: 0 closed, 1 open, 2 half-open.",
            registry=c,
        )
        self.bundle_info = Gauge(
            "serendip_retrieval_bundle_info",
            "The bundle being served (value 1).",
            ["bundle_id", "index_device"],
            registry=r,
        )
        self.bundle_items = Gauge(
            "serendip_retrieval_bundle_items", "Items in the served bundle.", registry=r
        )
        self.bundle_clusters = Gauge(
            "serendip_retrieval_bundle_clusters", "Interest clusters in the served bundle.", registry=r
        )
        self.bundle_loaded = Gauge(
            "serendip_retrieval_bundle_loaded_timestamp_seconds",
            "When the served bundle was swapped in (unix time).",
            registry=r,
        )
        reloads = Counter(
            "serendip_retrieval_bundle_reloads_total",
            "Bundle reload attempts, by result.",
            ["result"],
            registry=r,
        )
        self.reloads = {x: reloads.labels(result=x) for x in ("ok", "refused", "unchanged")}

    def requests_dropped(self, reason: str, n: int) -> None:
        self.dropped[reason].inc(n)

    def store_failure(self, reason: str) -> None:
        self.store_failures[reason].inc()

    def breaker_changed(self, state: BreakerState) -> None:
        self.breaker_state.set(int(state))

    def bundle_served(self, bundle_id: str, index_device: str, n_items: int, n_clusters: int) -> None:
        self.bundle_info.clear()  # exactly one bundle is served at a time
        self.bundle_info.labels(bundle_id=bundle_id, index_device=index_device).set(1)
        self.bundle_items.set(n_items)
        self.bundle_clusters.set(n_clusters)
        self.bundle_loaded.set(time.time())

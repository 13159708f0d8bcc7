"""Fixtures for the retrieval service tests: the real small bundle, real Redis, a real gRPC server.

The server runs in this process on its own event loop thread and is reached over loopback gRPC,
exactly as a frontend would reach it.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import redis

from retrieval_service.config import ServiceSettings
from retrieval_service.server import RetrievalServer
from retrieval_service.serving_bundle import ServingBundle, load_serving_bundle
from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.api.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from serendip.bundle import Bundle, BundleWriter
from serendip.bundle import bundle as B
from serendip.store import Interest, Record, encode_record, record_key, seed_histories, user_histories

PREFIX = "serendip:v1"


class ServerThread:
    """A RetrievalServer on its own event loop in a daemon thread."""

    def __init__(self, settings: ServiceSettings, bundle: ServingBundle | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = RetrievalServer(settings, bundle)

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> ServerThread:
        self.thread.start()
        self.run(self.server.start())
        return self

    def stop(self) -> None:
        try:
            self.run(self.server.drain())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def metrics_text(self) -> str:
        import urllib.request

        url = f"http://127.0.0.1:{self.server.metrics_port}/metrics"
        return urllib.request.urlopen(url, timeout=5).read().decode()


def make_settings(redis_url: str, bundle_root: Path, **retrieval: Any) -> ServiceSettings:
    # No metrics endpoint unless a test reads it: stopping its HTTP server costs a 0.5 s poll.
    # A generous Redis bound: on a loaded CI machine the 30 ms default can expire now and then, and
    # a test asserting HIT would see STORE_UNAVAILABLE (the failure tests set their own bound).
    base = {
        "host": "127.0.0.1",
        "port": 0,
        "metrics_port": None,
        "drain_delay_s": 0.0,
        "watch_interval_s": 0,
        "store_timeout_ms": 2000,
        # In-process compute unless a test asks for worker processes (test_workers.py): a worker
        # loads its own copy of the bundle, a few seconds per server.
        "workers": 0,
    }
    return ServiceSettings.model_validate(
        {
            "retrieval": {**base, **retrieval},
            "redis": {"url": redis_url, "key_prefix": PREFIX, "connect_timeout_ms": 2000},
            "bundle": {"root": str(bundle_root)},
        }
    )


def put_record(
    client: redis.Redis,
    user_id: str,
    bundle: ServingBundle,
    clusters: list[int],
    *,
    bundle_id: str | None = None,
    embeddings: list[np.ndarray] | None = None,
    expires_in_ms: int = 3_600_000,
    labels: list[str] | None = None,
) -> None:
    """A record as the interest service writes it, steered by the clusters' centroids by default."""
    now = int(time.time() * 1000)
    centroids = bundle.bundle.centroids
    record = Record(
        interests=[
            Interest(
                c,
                labels[n] if labels else "",
                1.0 - 0.1 * n,
                f"why cluster {c}",
                embeddings[n] if embeddings else centroids[c],
            )
            for n, c in enumerate(clusters)
        ],
        bundle_id=bundle_id or bundle.bundle_id,
        model_id="test",
        prompt_version="test",
        created_at_ms=now,
        expires_at_ms=now + expires_in_ms,
    )
    client.set(record_key(PREFIX, user_id), encode_record(record))


def unexplored_clusters(bundle: ServingBundle, history: list[str], n: int) -> list[int]:
    """``n`` clusters none of the history's items belong to."""
    home = {bundle.item_clusters[bundle.item_index[i]] for i in history}
    return [c for c in range(bundle.n_clusters) if c not in home][:n]


def clone_bundle(src: Bundle, root: Path, bundle_id: str, edit: Callable[[Path], None] | None = None) -> Path:
    """A new, valid bundle (own id and manifest) with ``src``'s files, edited before it is hashed."""
    with BundleWriter(root, bundle_id, current=None) as w:
        for name in src.manifest.files:
            shutil.copy2(src.path / name, w.path(name))
        if edit:
            edit(w.tmp)
        return w.publish(
            dataset=src.manifest.dataset, config=src.manifest.config, summary=src.manifest.summary
        )


def retrain_model(bundle_dir: Path) -> None:
    """Shift every weight: another item space over the same taxonomy."""
    import torch

    path = bundle_dir / B.SEQMODEL
    payload = torch.load(path, weights_only=True)
    payload["state_dict"] = {
        k: v + 0.01 if v.is_floating_point() else v for k, v in payload["state_dict"].items()
    }
    torch.save(payload, path)


def relabel_taxonomy(bundle_dir: Path) -> None:
    """A different taxonomy file: cluster ids of other bundles may no longer mean the same."""
    import json

    path = bundle_dir / B.TAXONOMY
    raw = json.loads(path.read_text())
    raw["clusters"][0]["label"] += " (rebuilt)"
    path.write_text(json.dumps(raw))


@pytest.fixture(scope="session")
def serving_bundle(small_bundle: Bundle) -> ServingBundle:
    return load_serving_bundle(small_bundle.path)


@pytest.fixture(scope="session")
def histories(small_bundle: Bundle) -> dict[str, list[str]]:
    """MovieLens users' positive histories (oldest first), as the event pipeline would store them."""
    return user_histories(small_bundle.interactions, threshold=4.0)


@pytest.fixture
def seeded(redis_client: redis.Redis, histories: dict[str, list[str]]) -> redis.Redis:
    seed_histories(redis_client, PREFIX, histories)
    return redis_client


@pytest.fixture
def service(redis_server, small_bundle: Bundle, serving_bundle: ServingBundle) -> Iterator[ServerThread]:
    server = ServerThread(make_settings(redis_server.url, small_bundle.path), serving_bundle).start()
    yield server
    server.stop()


@pytest.fixture
def stub(service: ServerThread) -> Iterator[pb_grpc.RetrievalServiceStub]:
    with grpc.insecure_channel(service.target) as channel:
        yield pb_grpc.RetrievalServiceStub(channel)


def sources(resp: pb.RecommendResponse) -> list[int]:
    return [item.source for item in resp.items]

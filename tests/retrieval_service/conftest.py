"""Fixtures for the retrieval service tests: the real small bundle, real Redis, a real gRPC server.

The server runs in this process on its own event loop thread and is reached over loopback gRPC,
exactly as a frontend would reach it.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Coroutine, Iterator
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
    base = {"host": "127.0.0.1", "port": 0, "metrics_port": 0, "drain_delay_s": 0.0, "watch_interval_s": 0}
    return ServiceSettings.model_validate(
        {
            "retrieval": {**base, **retrieval},
            "redis": {"url": redis_url, "key_prefix": PREFIX},
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


def clone_bundle(src: Bundle, root: Path, bundle_id: str, *, perturb_model: bool = False) -> Path:
    """A new bundle (own id, own manifest) with the same files; optionally a retrained-looking model."""
    with BundleWriter(root, bundle_id, current=None) as w:
        for name in src.manifest.files:
            shutil.copy2(src.path / name, w.path(name))
        if perturb_model:
            import torch

            from serendip.bundle import bundle as B

            payload = torch.load(w.path(B.SEQMODEL), weights_only=True)
            for key, value in payload["state_dict"].items():
                if value.is_floating_point():
                    payload["state_dict"][key] = value + 0.01
            torch.save(payload, w.path(B.SEQMODEL))
        return w.publish(
            dataset=src.manifest.dataset, config=src.manifest.config, summary=src.manifest.summary
        )


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

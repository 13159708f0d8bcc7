"""Benchmark data in Redis: every synthetic user's history and, for most of them, a record.

Records are written with the core record format, the way the interest service writes them: three
clusters the user has not engaged with, steered by the clusters' centroids, a TTL of an hour.
"""

from __future__ import annotations

import time

import numpy as np
import redis

from serendip.bundle import Bundle
from serendip.store import Interest, Record, encode_record, record_key, seed_histories, user_histories

RECORD_TTL_S = 3600


def seed_bench_users(
    client: redis.Redis, prefix: str, bundle: Bundle, users: int, record_fraction: float = 0.9, seed: int = 0
) -> tuple[int, int]:
    """(users written, records written) for users u0..u{users-1}."""
    histories = user_histories(bundle.interactions, threshold=0.0)
    chosen = {f"u{i}": histories[f"u{i}"] for i in range(users) if f"u{i}" in histories}
    seed_histories(client, prefix, chosen)
    rng = np.random.default_rng(seed)
    item_clusters = bundle.taxonomy.item_clusters
    centroids = bundle.centroids
    n_clusters = len(centroids)
    index = bundle.item_index
    now = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    written = 0
    for user_id, items in chosen.items():
        if rng.random() >= record_fraction:
            continue
        home = {int(item_clusters[index[i]]) for i in items}
        novel: list[int] = []
        while len(novel) < 3:
            c = int(rng.integers(n_clusters))
            if c not in home and c not in novel:
                novel.append(c)
        record = Record(
            interests=[
                Interest(c, "", float(1.0 - 0.1 * n), "unexplored, close to what you watch", centroids[c])
                for n, c in enumerate(novel)
            ],
            bundle_id=bundle.bundle_id,
            model_id="bench",
            prompt_version="bench",
            created_at_ms=now,
            expires_at_ms=now + RECORD_TTL_S * 1000,
        )
        pipe.set(record_key(prefix, user_id), encode_record(record), ex=RECORD_TTL_S + 60)
        written += 1
        if written % 1000 == 0:
            pipe.execute()
    pipe.execute()
    return len(chosen), written

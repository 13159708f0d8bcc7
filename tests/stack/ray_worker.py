"""A refresh-shaped Ray worker for the engine test: per user it reads the recent history from Redis,
picks clusters the user has not seen (largest first) and writes a real record (same protobuf and
keys as the interest service). Imported by the Ray worker processes, so it lives at module level."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis

from serendip.bundle import load_bundle
from serendip.store import Interest, Record, encode_record, read_history, record_key


def make_worker(context: dict[str, Any]):
    bundle = load_bundle(Path(context["bundle"]), verify=False)
    tax, centroids, index = bundle.taxonomy, bundle.centroids, bundle.item_index
    by_size = sorted(range(tax.n_clusters), key=lambda c: -tax.clusters[c].size)
    client = redis.Redis.from_url(context["redis_url"])
    prefix = context["prefix"]

    def run(users: list[str]) -> dict[str, Any]:
        if context.get("fail_user") in users:
            raise RuntimeError(f"refusing shard with user {context['fail_user']}")
        now = int(time.time() * 1000)
        pipe = client.pipeline(transaction=False)
        for user in users:
            seen = {
                int(tax.item_clusters[index[i]]) for i in read_history(client, prefix, user) if i in index
            }
            novel = [c for c in by_size if c not in seen][:2]
            interests = [
                Interest(c, tax.clusters[c].label, 1.0, "ray test", np.asarray(centroids[c], np.float32))
                for c in novel
            ]
            rec = Record(interests, bundle.bundle_id, "ray-test", "test", now, now + 3_600_000)
            pipe.set(record_key(prefix, user), encode_record(rec))
        pipe.execute()
        return {"pid": os.getpid(), "users": list(users)}

    return run

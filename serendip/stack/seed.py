"""Seed recent-history lists in Redis from the published bundle's interactions.

``python -m serendip.stack.seed [--config FILE] [--only-missing]`` (the compose and Kubernetes one-shot
job); `serendip up` calls :func:`seed_from_bundle` directly. In production the feed's event pipeline
writes these lists instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import redis

from serendip.bundle import load_bundle, resolve_bundle_path
from serendip.config import Settings, load_settings
from serendip.store import history_key, seed_histories, user_histories


def seed_from_bundle(settings: Settings, redis_url: str, only_missing: bool = False) -> int:
    """Write every user's newest positives (oldest first); returns the number of users written."""
    path = resolve_bundle_path(Path(settings.bundle.root), settings.bundle.current)
    bundle = load_bundle(path, verify=False)
    histories = user_histories(bundle.interactions, settings.data.positive_threshold)
    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    try:
        prefix = settings.redis.key_prefix
        if only_missing:
            users = list(histories)
            pipe = client.pipeline(transaction=False)
            for u in users:
                pipe.exists(history_key(prefix, u))
            present = pipe.execute()
            histories = {u: histories[u] for u, p in zip(users, present, strict=True) if not p}
        return seed_histories(client, prefix, histories)
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serendip.stack.seed", description=__doc__)
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--only-missing", action="store_true", help="keep lists that already exist")
    args = p.parse_args(argv)
    settings = load_settings(args.config)
    if not settings.redis.url:
        print("redis.url must be set (SERENDIP_REDIS__URL)", file=sys.stderr)
        return 2
    n = seed_from_bundle(settings, settings.redis.url, args.only_missing)
    print(f"seeded recent histories of {n} users")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`serendip refresh --engine ray`: the refresh spread over Ray actors in user shards.

The driver lists the users (the same default as ``run_refresh``: every user with a history list in
Redis), cuts them into shards and hands them to ``serendip.stack.ray_engine.RayEngine``. Each actor
calls ``make_refresh_worker`` once — bundle, Redis client, backend (model load or vLLM client) and
engine are built once per actor — and then runs ``run_refresh`` on each shard it is given, which
selects the shard's stale users, writes their records and checkpoints per shard (a rerun of the same
users and shard size resumes). Per-shard stats come back small and picklable and are summed here.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interest_service.config import InterestConfig
from interest_service.refresh import RefreshStats, run_refresh
from serendip.stack.ray_engine import FailedShard, RayEngine


@dataclass
class ShardResult:
    users: list[str]  # the shard's users, as given (each user is in exactly one shard)
    stats: RefreshStats
    images: Counter[str]
    worker: str  # host:pid of the actor that ran it


@dataclass
class DistributedReport:
    stats: RefreshStats = field(default_factory=RefreshStats)
    images: Counter[str] = field(default_factory=Counter)
    users: int = 0
    shards: int = 0
    failed: list[FailedShard] = field(default_factory=list)
    workers: set[str] = field(default_factory=set)
    results: list[ShardResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.stats.outcomes.get("failed")


def worker_context(cfg: InterestConfig, bundle_path: Path, *, force: bool, fresh: bool) -> dict[str, Any]:
    """What an actor needs to build its engine, as plain JSON-able data (Ray pickles it once)."""
    return {
        "interest": cfg.model_dump(mode="json"),
        "bundle": str(bundle_path),
        "force": force,
        "fresh": fresh,
    }


def make_refresh_worker(context: dict[str, Any]) -> Callable[[list[str]], ShardResult]:
    """Runs once per Ray actor: load everything, then refresh one shard per call."""
    import redis

    from interest_service.backends import make_backend
    from interest_service.engine import InterestEngine
    from serendip.bundle import load_bundle

    cfg = InterestConfig.model_validate(context["interest"])
    if not cfg.redis_url:
        raise ValueError("redis.url is not set for the refresh workers")
    # The driver verified this exact bundle directory (not the moving `current` link) before sharding.
    bundle = load_bundle(Path(context["bundle"]), verify=False)
    client = redis.Redis.from_url(cfg.redis_url, socket_timeout=30)
    engine = InterestEngine(cfg, bundle, make_backend(cfg), client)
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def refresh_shard(users: list[str]) -> ShardResult:
        images_before = Counter(engine.images.stats)
        stats = run_refresh(engine, users, force=context["force"], fresh=context["fresh"])
        return ShardResult(list(users), stats, Counter(engine.images.stats) - images_before, worker)

    return refresh_shard


def unique(ids: Sequence[str]) -> list[str]:
    """Ids in first-seen order without repeats: a user listed twice must not land in two shards."""
    return list(dict.fromkeys(ids))


def merge(results: Sequence[ShardResult]) -> tuple[RefreshStats, Counter[str]]:
    total, images = RefreshStats(), Counter[str]()
    for r in results:
        s = r.stats
        total.selected += s.selected
        total.resumed_skipped += s.resumed_skipped
        total.selection.update(s.selection)
        total.outcomes.update(s.outcomes)
        total.dropped.update(s.dropped)
        total.tokens += s.tokens
        total.record_bytes_max = max(total.record_bytes_max, s.record_bytes_max)
        total.tuple_calls += s.tuple_calls
        total.tuple_hits += s.tuple_hits
        images.update(r.images)
    return total, images


def run_distributed(
    engine: RayEngine,
    cfg: InterestConfig,
    bundle_path: Path,
    user_ids: Sequence[str],
    *,
    force: bool = False,
    fresh: bool = False,
    on_shard: Callable[[ShardResult], None] | None = None,
) -> DistributedReport:
    """Refresh ``user_ids`` over ``engine``'s actors; failed shards are reported, never raised."""
    users = unique(user_ids)
    context = worker_context(cfg, bundle_path, force=force, fresh=fresh)
    report = engine.run(make_refresh_worker, context, users, on_result=on_shard)
    stats, images = merge(report.results)
    stats.seconds = report.seconds  # wall time of the whole run, not the sum over shards
    return DistributedReport(
        stats=stats,
        images=images,
        users=len(users),
        shards=report.shards,
        failed=report.failed,
        workers={r.worker for r in report.results},
        results=report.results,
    )

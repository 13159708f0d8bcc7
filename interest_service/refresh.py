"""`serendip refresh`: select users, propose in batches, write records, checkpoint after each batch."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from interest_service import metrics
from interest_service.checkpoint import Checkpoint
from interest_service.engine import InterestEngine
from interest_service.selection import scan_users, select_users
from interest_service.tuples import TupleTable
from serendip.pipeline import Progress


@dataclass
class RefreshStats:
    selected: int = 0
    resumed_skipped: int = 0  # finished by an earlier, interrupted run of the same refresh
    selection: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    tokens: int = 0
    seconds: float = 0.0
    record_bytes_max: int = 0
    tuple_calls: int = 0
    tuple_hits: int = 0

    @property
    def processed(self) -> int:
        return sum(self.outcomes.values())

    @property
    def users_per_s(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0


def run_refresh(
    engine: InterestEngine,
    user_ids: list[str] | None = None,
    *,
    force: bool = False,
    limit: int | None = None,
    progress: Progress | None = None,
    fresh: bool = False,
    stop_after_batches: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> RefreshStats:
    """Refresh the given users (default: every user with a history list in Redis).

    ``stop_after_batches`` ends the run early *without* finishing its checkpoint (as a killed run
    would), for tests and for bounded maintenance windows.
    """
    progress = progress or Progress()
    cfg = engine.cfg
    t0 = time.perf_counter()
    stats = RefreshStats()
    ids = list(user_ids) if user_ids is not None else sorted(scan_users(engine.client, cfg.redis_prefix))
    if limit is not None:
        ids = ids[:limit]
    # Checkpoint identity: the same bundle, users and options resume; anything else starts anew.
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    ckpt = Checkpoint.for_run(
        cfg.refresh.state_dir,
        engine.catalog.bundle_id,
        {"users": digest, "force": force, "tuple_mode": cfg.refresh.tuple_mode, "prompt": cfg.prompt.version},
    )
    if fresh and ckpt.resumed:
        ckpt.finish()
        ckpt = Checkpoint(ckpt.path, ckpt.header)
    todo_ids = [u for u in ids if u not in ckpt.done]
    stats.resumed_skipped = len(ids) - len(todo_ids)
    progress.stage("selecting users", total=None)
    sel = select_users(
        engine.client,
        cfg.redis_prefix,
        todo_ids,
        engine.catalog,
        history_len=cfg.refresh.history_len,
        stale_after_s=cfg.refresh.stale_after_s,
        n_recent_clusters=cfg.refresh.transition_recent,
        force=force,
    )
    stats.selection = sel.reasons
    stats.selected = len(sel.users)
    if ckpt.resumed:
        progress.note(f"resuming: {stats.resumed_skipped} users already done by an interrupted run")
    if cfg.refresh.tuple_mode and sel.users:
        progress.stage("cluster-tuple proposals", total=None)
        path = (
            cfg.refresh.state_dir / f"tuples-{engine.catalog.bundle_id}-{_safe(engine.backend.model_id)}.json"
        )
        engine.tuples = TupleTable.build(engine, sel.users, path)
        stats.tuple_calls = engine.tuples.calls
    progress.stage("refreshing users", total=len(sel.users))
    bs = cfg.refresh.batch_size
    for n, start in enumerate(range(0, len(sel.users), bs)):
        if stop_after_batches is not None and n >= stop_after_batches:
            stats.seconds = time.perf_counter() - t0
            return stats  # checkpoint left in place: the next run resumes
        batch = sel.users[start : start + bs]
        report = engine.run_batch(batch)
        stats.outcomes.update(report.outcomes)
        stats.dropped.update(report.dropped)
        stats.tokens += report.tokens
        stats.record_bytes_max = max([stats.record_bytes_max, *report.record_bytes])
        ckpt.commit([u.user_id for u in batch])
        progress.advance(len(batch))
        if on_batch:
            on_batch(n)
    if engine.tuples is not None:
        stats.tuple_hits = engine.tuples.hits
    ckpt.finish()
    stats.seconds = time.perf_counter() - t0
    metrics.REFRESH_LATENCY.observe(stats.seconds)
    return stats


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:80]

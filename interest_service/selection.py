"""Which users a refresh should touch: missing, corrupt, stale, other-bundle or changed-history records."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import redis

from interest_service.catalog import Catalog, UserContext
from serendip.store import RecordError, decode_record, history_key, record_key


@dataclass
class Selection:
    users: list[UserContext] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)  # why selected, or why skipped ("fresh", ...)


def scan_users(client: redis.Redis, prefix: str, count: int = 1000) -> Iterator[str]:
    """User ids that have a history list (the feed pipeline maintains them)."""
    head, tail = f"{prefix}:{{", "}:hist"
    for key in client.scan_iter(match=f"{prefix}:{{*}}:hist", count=count):
        k = key.decode() if isinstance(key, bytes) else key
        if k.startswith(head) and k.endswith(tail):
            yield k[len(head) : -len(tail)]


def select_users(
    client: redis.Redis,
    prefix: str,
    user_ids: Iterable[str],
    catalog: Catalog,
    *,
    history_len: int,
    stale_after_s: int,
    n_recent_clusters: int,
    force: bool = False,
    now_ms: int | None = None,
    chunk: int = 500,
) -> Selection:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    sel = Selection()
    ids = list(dict.fromkeys(user_ids))  # de-duplicated, order kept
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        pipe = client.pipeline(transaction=False)
        for uid in part:
            pipe.lrange(history_key(prefix, uid), 0, history_len - 1)
            pipe.get(record_key(prefix, uid))
        replies = pipe.execute()
        for k, uid in enumerate(part):
            raw_hist, raw_rec = replies[2 * k], replies[2 * k + 1]
            items = [x.decode() for x in raw_hist]
            if not items:
                sel.reasons["skip_no_history"] += 1
                continue
            ctx = UserContext.build(uid, items, catalog, n_recent_clusters)
            if not ctx.history:
                sel.reasons["skip_unknown_items"] += 1
                continue
            reason = "force" if force else _reason(raw_rec, ctx, catalog.bundle_id, now_ms, stale_after_s)
            if reason == "fresh":
                sel.reasons["skip_fresh"] += 1
                continue
            sel.reasons[reason] += 1
            sel.users.append(ctx)
    return sel


def _reason(raw: bytes | None, ctx: UserContext, bundle_id: str, now_ms: int, stale_after_s: int) -> str:
    if raw is None:
        return "missing"
    try:
        rec = decode_record(raw)
    except RecordError:
        return "corrupt"
    if rec.bundle_id != bundle_id:
        return "bundle_changed"
    if rec.is_expired(now_ms) or now_ms - rec.created_at_ms > stale_after_s * 1000:
        return "stale"
    if rec.history_fingerprint != ctx.fingerprint:
        return "history_changed"
    return "fresh"

"""Request validation: every field checked; a failure names the field for INVALID_ARGUMENT.

The message format is ``<field>: <reason>`` (``requests[2].k: ...`` inside a batch), so a caller can
tell which field to fix without parsing prose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from retrieval_service.config import MAX_K, RetrievalConfig
from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.store.keys import MAX_USER_ID_BYTES

MAX_ITEM_ID_BYTES = 256


class InvalidField(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


@dataclass(frozen=True)
class Query:
    """One validated Recommend request."""

    user_id: str
    k: int
    exploration_ratio: float
    recent_item_ids: tuple[str, ...]  # most recent first
    exclude_item_ids: tuple[str, ...]


def parse_request(req: pb.RecommendRequest, cfg: RetrievalConfig, prefix: str = "") -> Query:
    user_id = req.user_id
    if not user_id:
        raise InvalidField(prefix + "user_id", "must not be empty")
    if len(user_id.encode()) > MAX_USER_ID_BYTES:
        raise InvalidField(prefix + "user_id", f"longer than {MAX_USER_ID_BYTES} bytes")
    if "{" in user_id or "}" in user_id:
        raise InvalidField(prefix + "user_id", "must not contain '{' or '}'")
    if not 1 <= req.k <= MAX_K:
        raise InvalidField(prefix + "k", f"must be in 1..{MAX_K}, got {req.k}")
    ratio = cfg.exploration_ratio
    if req.HasField("exploration_ratio"):
        ratio = req.exploration_ratio
        if not (math.isfinite(ratio) and 0.0 <= ratio <= 1.0):
            raise InvalidField(prefix + "exploration_ratio", f"must be in 0..1, got {ratio}")
    recent = _item_ids(req.recent_item_ids, cfg.max_recent_items, prefix + "recent_item_ids")
    exclude = _item_ids(req.exclude_item_ids, cfg.max_exclude_items, prefix + "exclude_item_ids")
    return Query(user_id, req.k, ratio, recent, exclude)


def parse_batch(req: pb.BatchRecommendRequest, cfg: RetrievalConfig) -> list[Query]:
    n = len(req.requests)
    if not 1 <= n <= cfg.max_batch_requests:
        raise InvalidField("requests", f"must hold 1..{cfg.max_batch_requests} requests, got {n}")
    return [parse_request(r, cfg, prefix=f"requests[{i}].") for i, r in enumerate(req.requests)]


def _item_ids(ids: list[str], limit: int, field: str) -> tuple[str, ...]:
    if len(ids) > limit:
        raise InvalidField(field, f"at most {limit} ids, got {len(ids)}")
    for i, item_id in enumerate(ids):
        if not item_id:
            raise InvalidField(f"{field}[{i}]", "must not be empty")
        if len(item_id.encode()) > MAX_ITEM_ID_BYTES:
            raise InvalidField(f"{field}[{i}]", f"longer than {MAX_ITEM_ID_BYTES} bytes")
    return tuple(ids)

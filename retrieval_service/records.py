"""What a user's stored NovelInterestRecord means for the bundle being served.

Rules (docs/retrieval.md): no record → MISS; undecodable bytes, a wrong embedding dimension or a
cluster id outside the taxonomy → CORRUPT; past ``expires_at_ms`` → STALE; made for another bundle →
usable only when that bundle's taxonomy files are byte-identical to ours (same cluster ids), with the
record's embeddings used only when the sequence model is identical too (same item space) and our
cluster centroids used to steer otherwise; any other bundle → STALE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retrieval_service.serving_bundle import Compat, ServingBundle
from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.store.record import RecordError, decode_record

HIT = pb.RECORD_STATUS_HIT
MISS = pb.RECORD_STATUS_MISS
STALE = pb.RECORD_STATUS_STALE
CORRUPT = pb.RECORD_STATUS_CORRUPT
STORE_UNAVAILABLE = pb.RECORD_STATUS_STORE_UNAVAILABLE


@dataclass(frozen=True)
class UsableInterest:
    cluster_id: int
    label: str
    rationale: str
    score: float
    # Steering vector in the served bundle's item space, not yet unit length: the search normalises
    # a whole batch's vectors in one numpy call rather than one call per interest.
    direction: np.ndarray


def interpret_record(raw: bytes | None, sb: ServingBundle, now_ms: int) -> tuple[int, list[UsableInterest]]:
    """(RecordStatus, interests to steer with); interests are empty unless the status is HIT."""
    if raw is None:
        return MISS, []
    try:
        record = decode_record(raw)
    except RecordError:
        return CORRUPT, []
    if record.is_expired(now_ms):
        return STALE, []
    compat = sb.record_compat(record.bundle_id)
    if compat is Compat.NONE:
        return STALE, []
    if record.interests and compat is Compat.SAME and record.dim != sb.dim:
        return CORRUPT, []
    interests: list[UsableInterest] = []
    seen: set[int] = set()
    for interest in record.interests:
        c = interest.cluster_id
        if c >= sb.n_clusters:
            return CORRUPT, []
        if c in seen:
            continue
        seen.add(c)
        # A record from another item space steers with our centroid (so does a zero embedding: the
        # search swaps it in when it normalises).
        direction = interest.embedding if compat is Compat.SAME else sb.unit_centroids[c]
        interests.append(
            UsableInterest(
                cluster_id=c,
                label=interest.label or sb.cluster_labels[c],
                rationale=interest.rationale,
                score=interest.score,
                direction=direction,
            )
        )
    return HIT, interests

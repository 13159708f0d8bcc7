"""Writing per-user records: atomic, size-bounded, and never replacing a good record with a worse one.

* Atomic per user: one SET (with PX) inside WATCH/MULTI on the user's single key — a reader sees the
  old record or the new one, never a mix; the key carries the user's hash tag (Redis Cluster safe).
* A *fallback* record (cluster-transition model, written because the LLM failed) does not replace a
  good record: an unexpired LLM record for the same bundle stays (the last good result).
* ≤ ``max_bytes``: rationales are shortened (then dropped), then labels dropped, before a record is
  refused; with 3 interests at d = 64 the float16 embeddings alone take 384 of the 512 bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import redis

from interest_service.config import RecordConfig
from serendip.store import Record, RecordError, decode_record, encode_record, record_key
from serendip.store.record import ProposalSource

LLM_SOURCES = (ProposalSource.PROPOSAL_SOURCE_LLM, ProposalSource.PROPOSAL_SOURCE_LLM_TUPLE)


@dataclass
class WriteOutcome:
    written: bool
    reason: str  # "written" | "kept_good"
    size: int


def fit_record(record: Record, max_bytes: int) -> bytes:
    """Encode within ``max_bytes``, trimming rationales (longest first) if needed."""
    data = encode_record(record)
    if len(data) <= max_bytes:
        return data
    interests = list(record.interests)
    while len(data) > max_bytes and any(i.rationale for i in interests):
        longest = max(range(len(interests)), key=lambda k: len(interests[k].rationale))
        text = interests[longest].rationale
        cut = text[: len(text) // 2].rstrip()
        interests[longest] = replace(interests[longest], rationale=cut)
        data = encode_record(replace(record, interests=interests))
    if len(data) > max_bytes and any(i.label for i in interests):
        # Labels are redundant with cluster_id (the retrieval service maps ids to labels through the
        # bundle's taxonomy); at d=64 three embeddings leave no room for them within 512 bytes.
        interests = [replace(i, label="") for i in interests]
        data = encode_record(replace(record, interests=interests))
    if len(data) > max_bytes:
        raise RecordError(
            f"record of {len(data)} bytes exceeds {max_bytes} even without rationales and labels "
            "(shorten record.model_id or raise record.max_bytes)"
        )
    return data


def is_good(record: Record, bundle_id: str, now_ms: int) -> bool:
    return record.source in LLM_SOURCES and record.bundle_id == bundle_id and not record.is_expired(now_ms)


class RecordWriter:
    def __init__(self, client: redis.Redis, prefix: str, cfg: RecordConfig):
        self.client = client
        self.prefix = prefix
        self.cfg = cfg

    def expiry(self, now_ms: int) -> tuple[int, int]:
        """(logical expires_at_ms, Redis PX): Redis keeps the record a little past its expiry so a
        reader can still fall back to it while a refresh is late."""
        return now_ms + self.cfg.ttl_s * 1000, (self.cfg.ttl_s + self.cfg.ttl_grace_s) * 1000

    def read(self, user_id: str) -> Record | None:
        data = self.client.get(record_key(self.prefix, user_id))
        if data is None:
            return None
        return decode_record(data)

    def write(
        self, user_id: str, record: Record, now_ms: int | None = None, attempts: int = 5
    ) -> WriteOutcome:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        data = fit_record(record, self.cfg.max_bytes)
        px = max(1, record.expires_at_ms + self.cfg.ttl_grace_s * 1000 - now_ms)
        key = record_key(self.prefix, user_id)
        fallback = record.source not in LLM_SOURCES
        with self.client.pipeline(transaction=True) as pipe:
            for _ in range(attempts):
                try:
                    pipe.watch(key)
                    if fallback:
                        current = pipe.get(key)
                        if current is not None:
                            try:
                                if is_good(decode_record(current), record.bundle_id, now_ms):
                                    pipe.unwatch()
                                    return WriteOutcome(False, "kept_good", len(data))
                            except RecordError:
                                pass  # a corrupt record is replaced
                    pipe.multi()
                    pipe.set(key, data, px=px)
                    pipe.execute()
                    return WriteOutcome(True, "written", len(data))
                except redis.WatchError:
                    continue  # another writer touched the key between WATCH and EXEC: re-decide
        raise RecordError(f"could not write the record of {user_id!r}: the key kept changing")

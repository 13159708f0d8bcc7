"""Encoding and decoding of the per-user NovelInterestRecord (protos/serendip/api/record/v1)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from google.protobuf.message import DecodeError

from serendip.api.record.v1 import record_pb2

ProposalSource = record_pb2.ProposalSource


class RecordError(ValueError):
    """Bytes in Redis that are not a valid record (corrupt, truncated, wrong dimension)."""


@dataclass
class Interest:
    cluster_id: int
    label: str
    score: float
    rationale: str
    embedding: np.ndarray  # float32 (dim,), in item-embedding space


@dataclass
class Record:
    interests: list[Interest]
    bundle_id: str
    model_id: str
    prompt_version: str
    created_at_ms: int
    expires_at_ms: int
    source: int = record_pb2.PROPOSAL_SOURCE_LLM
    history_fingerprint: int = 0
    dim: int = field(default=0)

    def is_expired(self, now_ms: int | None = None) -> bool:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        return now_ms >= self.expires_at_ms


def encode_record(record: Record) -> bytes:
    dims = {int(i.embedding.shape[0]) for i in record.interests}
    if len(dims) > 1:
        raise RecordError(f"interests have different embedding dimensions: {sorted(dims)}")
    dim = dims.pop() if dims else record.dim
    msg = record_pb2.NovelInterestRecord(
        dim=dim,
        bundle_id=record.bundle_id,
        model_id=record.model_id,
        prompt_version=record.prompt_version,
        created_at_ms=record.created_at_ms,
        expires_at_ms=record.expires_at_ms,
        source=record.source,
        history_fingerprint=record.history_fingerprint,
    )
    for i in record.interests:
        msg.interests.add(
            cluster_id=i.cluster_id,
            label=i.label,
            score=i.score,
            rationale=i.rationale,
            embedding=np.asarray(i.embedding, dtype="<f2").tobytes(),
        )
    return msg.SerializeToString()


def decode_record(data: bytes) -> Record:
    msg = record_pb2.NovelInterestRecord()
    try:
        msg.ParseFromString(data)
    except DecodeError as exc:
        raise RecordError(f"undecodable record: {exc}") from exc
    parts = list(msg.interests)
    for i in parts:
        if len(i.embedding) != 2 * msg.dim:
            raise RecordError(
                f"interest {i.cluster_id}: {len(i.embedding)} embedding bytes for dim {msg.dim}"
            )
        if i.cluster_id < 0:
            raise RecordError(f"negative cluster id {i.cluster_id}")
    # One array for all interests (the retrieval hot path decodes a record per request): each
    # numpy call costs ~1 µs however small its input.
    table = np.frombuffer(b"".join(i.embedding for i in parts), dtype="<f2").astype(np.float32)
    if not np.isfinite(table).all():
        bad = next(i for i in parts if not np.isfinite(np.frombuffer(i.embedding, dtype="<f2")).all())
        raise RecordError(f"interest {bad.cluster_id}: non-finite embedding")
    rows = table.reshape(len(parts), msg.dim) if parts else table.reshape(0, msg.dim)
    interests = [Interest(i.cluster_id, i.label, i.score, i.rationale, rows[n]) for n, i in enumerate(parts)]
    return Record(
        interests=interests,
        bundle_id=msg.bundle_id,
        model_id=msg.model_id,
        prompt_version=msg.prompt_version,
        created_at_ms=msg.created_at_ms,
        expires_at_ms=msg.expires_at_ms,
        source=msg.source,
        history_fingerprint=msg.history_fingerprint,
        dim=msg.dim,
    )

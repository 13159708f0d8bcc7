"""Record writing: size budget (with and without rationale), TTL, atomic replace, last good kept."""

import numpy as np
import pytest

from interest_service.config import RecordConfig
from interest_service.records import RecordWriter, fit_record
from serendip.store import Interest, Record, RecordError, decode_record, encode_record, record_key
from serendip.store.record import ProposalSource

NOW = 1_795_000_000_000


def _record(
    source=ProposalSource.PROPOSAL_SOURCE_LLM,
    rationale="",
    bundle="movielens-small-261127004534-63a4e3",
    expires=NOW + 86_400_000,
    d=64,
    labels=True,
):
    rng = np.random.default_rng(1)
    return Record(
        interests=[
            Interest(c, label if labels else "", 0.9, rationale, rng.standard_normal(d).astype(np.float32))
            for c, label in (
                (3, "1990s · Thriller · Action"),
                (17, "Horror · Thriller"),
                (42, "anime · Fantasy"),
            )
        ],
        bundle_id=bundle,
        model_id="smollm2-135m",
        prompt_version="cot-v1",
        created_at_ms=NOW,
        expires_at_ms=expires,
        source=source,
        history_fingerprint=2**63 + 1,
    )


def test_sizes_with_and_without_rationale():
    """Measured sizes (3 interests, d = 64, real bundle/model ids) and what the writer keeps."""
    full = _record(rationale="x" * 32)  # labels + the default 32-char rationales
    sizes = {
        "bare": len(encode_record(_record(labels=False))),
        "labels": len(encode_record(_record())),
        "labels+rationale": len(encode_record(full)),
        "rationale": len(encode_record(_record(rationale="x" * 32, labels=False))),
    }
    print("record sizes, 3 interests at d=64:", sizes)
    assert sizes["bare"] <= 512 < sizes["labels+rationale"]
    kept = decode_record(fit_record(full, 512))  # what the writer stores: ids, scores, embeddings
    assert len(fit_record(full, 512)) <= 512 and [i.cluster_id for i in kept.interests] == [3, 17, 42]
    assert decode_record(fit_record(full, 1024)).interests[0].rationale == "x" * 32  # room: all kept
    small = _record(rationale="likes space horror", d=16)
    assert decode_record(fit_record(small, 512)).interests[0].label == "1990s · Thriller · Action"


def test_fit_trims_rationales_then_refuses():
    long = _record(rationale="a very long rationale " * 10, d=32)
    data = fit_record(long, 512)
    assert len(data) <= 512 and decode_record(data).interests[0].rationale.startswith("a very")
    with pytest.raises(RecordError, match="even without"):
        fit_record(_record(d=256), 512)  # embeddings alone are too big


def test_write_sets_ttl_and_fallback_never_replaces_a_good_record(redis_client):
    w = RecordWriter(redis_client, "t:v1", RecordConfig(ttl_s=3600, ttl_grace_s=60))
    assert w.write("u1", _record(), now_ms=NOW).written
    ttl = redis_client.pttl(record_key("t:v1", "u1"))
    assert 0 < ttl <= 86_400_000 + 60_000
    fb = _record(source=ProposalSource.PROPOSAL_SOURCE_TRANSITION)
    out = w.write("u1", fb, now_ms=NOW)
    assert not out.written and out.reason == "kept_good"
    assert w.read("u1").source == ProposalSource.PROPOSAL_SOURCE_LLM
    # ...but it does replace an expired record, one of another bundle, a fallback one or garbage.
    w.write("u2", _record(expires=NOW - 1), now_ms=NOW - 10)
    assert w.write("u2", fb, now_ms=NOW).written
    w.write("u3", _record(bundle="old"), now_ms=NOW)
    assert w.write("u3", fb, now_ms=NOW).written
    assert w.write("u2", fb, now_ms=NOW).written
    redis_client.set(record_key("t:v1", "u4"), b"\xff garbage")
    assert w.write("u4", fb, now_ms=NOW).written
    # A new LLM record always replaces.
    assert w.write("u1", _record(rationale="new", d=16), now_ms=NOW).written
    assert w.read("u1").interests[0].rationale == "new"

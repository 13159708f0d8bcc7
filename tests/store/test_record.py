import numpy as np
import pytest

from serendip.store import (
    Interest,
    Record,
    RecordError,
    decode_record,
    encode_record,
    history_key,
    record_key,
)


def _record(rationale: str = "", label: str = "") -> Record:
    rng = np.random.default_rng(0)
    return Record(
        interests=[
            Interest(c, label, 0.5, rationale, rng.standard_normal(64).astype(np.float32))
            for c in (3, 17, 42)
        ],
        bundle_id="movielens-small-261127003000-0a1b2c",
        model_id="smollm2-135m",
        prompt_version="cot-v1",
        created_at_ms=1_795_000_000_000,
        expires_at_ms=1_795_086_400_000,
        history_fingerprint=2**63 + 5,
    )


def test_round_trip_keeps_float16_embeddings():
    rec = _record(rationale="likes space horror", label="Horror · Sci-Fi")
    back = decode_record(encode_record(rec))
    assert [i.cluster_id for i in back.interests] == [3, 17, 42]
    assert back.dim == 64 and back.history_fingerprint == 2**63 + 5
    for a, b in zip(rec.interests, back.interests, strict=True):
        np.testing.assert_allclose(a.embedding, b.embedding, rtol=1e-3, atol=1e-3)
        assert b.rationale == "likes space horror"


def test_size_budget_three_interests_d64_without_rationale():
    assert len(encode_record(_record())) <= 512


def test_corrupt_bytes_are_a_record_error():
    with pytest.raises(RecordError):
        decode_record(b"\xff\xff\xff garbage")
    data = bytearray(encode_record(_record()))
    with pytest.raises(RecordError):
        decode_record(bytes(data[:-7]))


def _raw_with(edit) -> bytes:
    from serendip.api.record.v1 import record_pb2

    msg = record_pb2.NovelInterestRecord()
    msg.ParseFromString(encode_record(_record()))
    edit(msg)
    return msg.SerializeToString()


def test_each_bad_interest_is_named():
    def nan_in_second(msg):
        emb = bytearray(msg.interests[1].embedding)
        emb[10:12] = np.array([np.nan], dtype="<f2").tobytes()
        msg.interests[1].embedding = bytes(emb)

    with pytest.raises(RecordError, match="interest 17: non-finite"):
        decode_record(_raw_with(nan_in_second))

    def short_third(msg):
        msg.interests[2].embedding = msg.interests[2].embedding[:-2]

    with pytest.raises(RecordError, match="interest 42: 126 embedding bytes for dim 64"):
        decode_record(_raw_with(short_third))

    def negative(msg):
        msg.interests[0].cluster_id = -1

    with pytest.raises(RecordError, match="negative cluster id"):
        decode_record(_raw_with(negative))


def test_a_record_without_interests_decodes():
    back = decode_record(_raw_with(lambda msg: msg.ClearField("interests")))
    assert back.interests == [] and back.dim == 64


def test_keys_share_a_hash_tag_and_reject_braces():
    assert record_key("serendip:v1", "u1") == "serendip:v1:{u1}:rec"
    assert history_key("serendip:v1", "u1") == "serendip:v1:{u1}:hist"
    for bad in ("", "a{b", "x}"):
        with pytest.raises(ValueError):
            record_key("p", bad)


def test_record_survives_a_real_redis(redis_client):
    key = record_key("serendip:v1", "42")
    redis_client.set(key, encode_record(_record()), px=60_000)
    assert decode_record(redis_client.get(key)).interests[1].cluster_id == 17
    assert 0 < redis_client.pttl(key) <= 60_000


def test_history_lists_keep_newest_first(redis_client):
    import pandas as pd

    from serendip.store import push_history, read_history, seed_histories, user_histories

    inter = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "b"],
            "item_id": ["1", "2", "3", "4", "5"],
            "timestamp": [30, 10, 20, 5, 6],
            "weight": [5.0, 4.0, 2.0, 4.5, 4.0],
        }
    )
    hist = user_histories(inter, threshold=4.0)
    assert hist == {"a": ["2", "1"], "b": ["4", "5"]}
    assert seed_histories(redis_client, "p", hist) == 2
    assert read_history(redis_client, "p", "a") == ["1", "2"]
    push_history(redis_client, "p", "a", ["7", "8"], max_len=3)
    assert read_history(redis_client, "p", "a") == ["8", "7", "1"]

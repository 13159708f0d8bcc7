"""Every invalid field → INVALID_ARGUMENT naming it (over gRPC), never INTERNAL."""

from __future__ import annotations

import math

import grpc
import pytest

from serendip.api.retrieval.v1 import retrieval_pb2 as pb


def _ok(**fields) -> pb.RecommendRequest:
    base = {"user_id": "u1", "k": 10}
    return pb.RecommendRequest(**{**base, **fields})


CASES = [
    ("user_id", _ok(user_id="")),
    ("user_id", _ok(user_id="x" * 257)),
    ("user_id", _ok(user_id="é" * 129)),  # 258 bytes in UTF-8
    ("user_id", _ok(user_id="a{b}")),
    ("k", _ok(k=0)),
    ("k", _ok(k=-3)),
    ("k", _ok(k=501)),
    ("exploration_ratio", _ok(exploration_ratio=-0.01)),
    ("exploration_ratio", _ok(exploration_ratio=1.5)),
    ("exploration_ratio", _ok(exploration_ratio=math.nan)),
    ("exploration_ratio", _ok(exploration_ratio=math.inf)),
    ("recent_item_ids", _ok(recent_item_ids=["i"] * 101)),
    ("recent_item_ids[1]", _ok(recent_item_ids=["1", ""])),
    ("recent_item_ids[0]", _ok(recent_item_ids=["x" * 300])),
    ("exclude_item_ids", _ok(exclude_item_ids=[str(i) for i in range(1001)])),
    ("exclude_item_ids[2]", _ok(exclude_item_ids=["1", "2", ""])),
]


@pytest.mark.parametrize(("field", "request_"), CASES, ids=[f"{f}-{n}" for n, (f, _) in enumerate(CASES)])
def test_invalid_field_is_named(stub, field, request_):
    with pytest.raises(grpc.RpcError) as err:
        stub.Recommend(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"{field}: ")


def test_batch_names_the_request_and_field(stub):
    good = _ok()
    cases = [
        ("requests", pb.BatchRecommendRequest()),
        ("requests", pb.BatchRecommendRequest(requests=[good] * 65)),
        ("requests[1].k", pb.BatchRecommendRequest(requests=[good, _ok(k=0), good])),
        ("requests[0].user_id", pb.BatchRecommendRequest(requests=[_ok(user_id="")])),
    ]
    for field, request in cases:
        with pytest.raises(grpc.RpcError) as err:
            stub.BatchRecommend(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith(f"{field}: ")


def test_limits_are_inclusive(stub, seeded):
    """The largest valid values are accepted (k=500, 100 recent ids, 1000 exclusions, ratio 0 and 1)."""
    resp = stub.Recommend(
        _ok(
            k=500,
            exploration_ratio=1.0,
            recent_item_ids=[f"unknown-{i}" for i in range(100)],
            exclude_item_ids=[f"gone-{i}" for i in range(1000)],
            user_id="x" * 256,
        )
    )
    assert len(resp.items) == 500 and resp.unknown_recent_items == 100
    assert len(stub.Recommend(_ok(k=1, exploration_ratio=0.0)).items) == 1

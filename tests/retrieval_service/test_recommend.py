"""Recommend over loopback gRPC against the real small bundle and a real Redis."""

from __future__ import annotations

import grpc
import pytest

from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.api.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from serendip.store import record_key
from tests.retrieval_service.conftest import (
    PREFIX,
    ServerThread,
    make_settings,
    put_record,
    sources,
    unexplored_clusters,
)

NOVEL = pb.ITEM_SOURCE_NOVEL_INTEREST
RELEVANCE = pb.ITEM_SOURCE_RELEVANCE
COLD = pb.ITEM_SOURCE_COLD_START


@pytest.fixture
def user(histories: dict[str, list[str]]) -> str:
    """A user with a long history (its items must never come back)."""
    return max(sorted(histories), key=lambda u: min(len(histories[u]), 50))


def test_novel_slots_come_only_from_the_records_clusters(stub, seeded, serving_bundle, histories, user):
    clusters = unexplored_clusters(serving_bundle, histories[user], 2)
    put_record(seeded, user, serving_bundle, clusters, labels=["", "my own label"])
    resp = stub.Recommend(pb.RecommendRequest(user_id=user, k=20, exploration_ratio=0.3))

    assert resp.record_status == pb.RECORD_STATUS_HIT
    assert resp.bundle_id == serving_bundle.bundle_id
    assert resp.novel_slots == 6 and len(resp.items) == 20
    novel = [item for item in resp.items if item.source == NOVEL]
    assert len(novel) == 6
    for item in novel:
        true_cluster = serving_bundle.item_clusters[serving_bundle.item_index[item.item_id]]
        assert item.cluster_id == true_cluster and item.cluster_id in clusters
    # Both interests are represented before either gets a second item (round robin).
    assert {item.cluster_id for item in novel} == set(clusters)
    assert [i.cluster_id for i in resp.novel_interests] == clusters
    assert resp.novel_interests[0].label == serving_bundle.cluster_labels[clusters[0]]  # empty → taxonomy
    assert resp.novel_interests[1].label == "my own label"
    assert resp.novel_interests[0].rationale == f"why cluster {clusters[0]}"
    # The most relevant item leads; novel items are spread, not bunched at the end.
    assert resp.items[0].source == RELEVANCE
    positions = [n for n, s in enumerate(sources(resp)) if s == NOVEL]
    assert positions == [2, 5, 8, 11, 14, 17]
    ids = [item.item_id for item in resp.items]
    assert len(set(ids)) == len(ids)
    assert not set(ids) & set(histories[user][-50:])
    for item in resp.items:
        assert item.title == serving_bundle.titles[serving_bundle.item_index[item.item_id]]
        assert item.cluster_label == serving_bundle.cluster_labels[item.cluster_id]


def test_later_interests_fill_in_when_a_cluster_runs_out(stub, seeded, serving_bundle, histories, user):
    """Two slots draw on the first two interests; when the first's cluster has nothing left (every
    item excluded), round robin moves on to the third interest, as if all three were searched."""
    candidates = unexplored_clusters(serving_bundle, histories[user], 10)
    sizes = {c: serving_bundle.index.list_size(c) for c in candidates}
    a = min(candidates, key=lambda c: sizes[c])
    b, c = [x for x in candidates if x != a][:2]
    put_record(seeded, user, serving_bundle, [a, b, c])

    def novel_clusters(exclude: list[str]) -> list[int]:
        req = pb.RecommendRequest(user_id=user, k=10, exploration_ratio=0.2, exclude_item_ids=exclude)
        resp = stub.Recommend(req)
        assert resp.novel_slots == 2 and len(resp.items) == 10
        return sorted(item.cluster_id for item in resp.items if item.source == NOVEL)

    assert novel_clusters([]) == sorted([a, b])  # the third interest is not needed
    in_a = [serving_bundle.item_ids[i] for i, x in enumerate(serving_bundle.item_clusters) if x == a]
    assert len(in_a) <= 1000
    assert novel_clusters(in_a) == sorted([b, c])  # not two items from b


def test_novel_items_are_steered_inside_the_cluster(
    redis_server, seeded, small_bundle, serving_bundle, histories, user
):
    """With the interest embedding alone steering (weight 1), the cluster's best match to it leads."""
    import grpc
    import numpy as np

    from serendip.api.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
    from tests.retrieval_service.conftest import ServerThread, make_settings

    cluster = unexplored_clusters(serving_bundle, histories[user], 1)[0]
    members = [i for i, c in enumerate(serving_bundle.item_clusters) if c == cluster]
    vectors = serving_bundle.index.cpu_index.reconstruct_n(0, serving_bundle.n_items)[members]
    settings = make_settings(redis_server.url, small_bundle.path, novel_query_weight=1.0)
    server = ServerThread(settings, serving_bundle).start()
    firsts = set()
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.RetrievalServiceStub(channel)
            for member in (0, len(members) // 2, len(members) - 1):
                steer = vectors[member].astype(np.float16).astype(np.float32)  # as stored in the record
                put_record(seeded, user, serving_bundle, [cluster], embeddings=[steer])
                resp = stub.Recommend(pb.RecommendRequest(user_id=user, k=10, exploration_ratio=0.1))
                novel = [item.item_id for item in resp.items if item.source == NOVEL]
                expected = members[int(np.argmax(vectors @ steer))]
                assert novel == [serving_bundle.item_ids[expected]]
                firsts.add(novel[0])
    finally:
        server.stop()
    assert len(firsts) > 1  # different steering, different item: the embedding really steers


def test_missing_record_is_relevance_only(stub, seeded, histories, user):
    resp = stub.Recommend(pb.RecommendRequest(user_id=user, k=15, exploration_ratio=0.5))
    assert resp.record_status == pb.RECORD_STATUS_MISS
    assert resp.novel_slots == 0 and not resp.novel_interests
    assert sources(resp) == [RELEVANCE] * 15


def test_expired_record_is_stale_and_relevance_only(stub, seeded, serving_bundle, histories, user):
    put_record(
        seeded,
        user,
        serving_bundle,
        unexplored_clusters(serving_bundle, histories[user], 2),
        expires_in_ms=-1,
    )
    resp = stub.Recommend(pb.RecommendRequest(user_id=user, k=10, exploration_ratio=0.5))
    assert resp.record_status == pb.RECORD_STATUS_STALE
    assert sources(resp) == [RELEVANCE] * 10


def test_record_for_an_unknown_bundle_is_stale(stub, seeded, serving_bundle, histories, user):
    clusters = unexplored_clusters(serving_bundle, histories[user], 2)
    put_record(seeded, user, serving_bundle, clusters, bundle_id="some-other-bundle-000000-abcdef")
    resp = stub.Recommend(pb.RecommendRequest(user_id=user, k=10, exploration_ratio=0.5))
    assert resp.record_status == pb.RECORD_STATUS_STALE
    assert NOVEL not in sources(resp)


@pytest.mark.parametrize("damage", ["garbage", "wrong_type", "cluster_out_of_range", "wrong_dim"])
def test_corrupt_record_is_relevance_only(stub, seeded, serving_bundle, histories, user, damage):
    import numpy as np

    key = record_key(PREFIX, user)
    if damage == "garbage":
        seeded.set(key, b"\xff\xfe not a protobuf \x00\x01")
    elif damage == "wrong_type":
        seeded.rpush(key, "a list, not a record")
    elif damage == "cluster_out_of_range":
        bad_cluster = serving_bundle.n_clusters + 5
        put_record(seeded, user, serving_bundle, [bad_cluster], embeddings=[np.ones(serving_bundle.dim)])
    else:
        put_record(seeded, user, serving_bundle, [1], embeddings=[np.ones(serving_bundle.dim + 3)])
    resp = stub.Recommend(pb.RecommendRequest(user_id=user, k=10, exploration_ratio=0.5))
    assert resp.record_status == pb.RECORD_STATUS_CORRUPT
    assert sources(resp) == [RELEVANCE] * 10


def test_history_and_exclusions_are_never_returned(stub, seeded, serving_bundle, histories, user):
    first = stub.Recommend(pb.RecommendRequest(user_id=user, k=10, exploration_ratio=0.0))
    excluded = [item.item_id for item in first.items[:4]]
    fresh = first.items[4].item_id  # just watched: the frontend knows before Redis does
    resp = stub.Recommend(
        pb.RecommendRequest(
            user_id=user,
            k=10,
            exploration_ratio=0.0,
            exclude_item_ids=excluded,
            recent_item_ids=[fresh, "no-such-item"],
        )
    )
    ids = [item.item_id for item in resp.items]
    assert len(ids) == 10
    assert not set(ids) & {*excluded, fresh}
    assert not set(ids) & set(histories[user][-50:])
    assert resp.unknown_recent_items == 1


def test_cold_start_is_spread_over_clusters(stub, seeded, serving_bundle):
    resp = stub.Recommend(pb.RecommendRequest(user_id="never-seen-user", k=20))
    assert resp.record_status == pb.RECORD_STATUS_MISS
    assert sources(resp) == [COLD] * 20
    clusters = [item.cluster_id for item in resp.items]
    assert len(set(clusters)) == 20  # one per cluster before any cluster repeats (40 clusters)
    # Popular first: the head is each cluster's most engaged item.
    pop = serving_bundle.bundle.popularity
    head = serving_bundle.item_index[resp.items[0].item_id]
    members = [i for i, c in enumerate(serving_bundle.item_clusters) if c == clusters[0]]
    assert pop[head] == max(pop[m] for m in members)


def test_cold_user_with_a_record_gets_novel_slots_and_cold_start(stub, seeded, serving_bundle):
    put_record(seeded, "brand-new", serving_bundle, [3, 9])
    resp = stub.Recommend(pb.RecommendRequest(user_id="brand-new", k=10, exploration_ratio=0.4))
    assert resp.record_status == pb.RECORD_STATUS_HIT
    assert sorted(sources(resp)) == sorted([COLD] * 6 + [NOVEL] * 4)
    assert {item.cluster_id for item in resp.items if item.source == NOVEL} == {3, 9}


def test_recent_items_alone_drive_relevance_for_an_unknown_user(stub, seeded, histories, user):
    recent = list(reversed(histories[user][-10:]))  # most recent first
    resp = stub.Recommend(pb.RecommendRequest(user_id="anonymous-session", k=10, recent_item_ids=recent))
    assert sources(resp) == [RELEVANCE] * 10
    assert not {item.item_id for item in resp.items} & set(recent)


def test_default_ratio_and_round_half_up(stub, seeded, serving_bundle, histories, user):
    put_record(seeded, user, serving_bundle, unexplored_clusters(serving_bundle, histories[user], 3))
    default = stub.Recommend(pb.RecommendRequest(user_id=user, k=10))  # config default 0.2
    assert default.novel_slots == 2
    half = stub.Recommend(pb.RecommendRequest(user_id=user, k=5, exploration_ratio=0.5))  # 2.5 → 3
    assert half.novel_slots == 3 and sources(half).count(NOVEL) == 3
    everything = stub.Recommend(pb.RecommendRequest(user_id=user, k=12, exploration_ratio=1.0))
    assert sources(everything) == [NOVEL] * 12


def test_batch_answers_in_request_order(stub, seeded, serving_bundle, histories, user):
    put_record(seeded, user, serving_bundle, unexplored_clusters(serving_bundle, histories[user], 2))
    batch = stub.BatchRecommend(
        pb.BatchRecommendRequest(
            requests=[
                pb.RecommendRequest(user_id=user, k=5, exploration_ratio=0.4),
                pb.RecommendRequest(user_id="nobody-at-all", k=3),
                pb.RecommendRequest(user_id=user, k=7, exploration_ratio=0.0),
            ]
        )
    )
    assert [r.record_status for r in batch.responses] == [
        pb.RECORD_STATUS_HIT,
        pb.RECORD_STATUS_MISS,
        pb.RECORD_STATUS_HIT,
    ]
    assert [len(r.items) for r in batch.responses] == [5, 3, 7]
    assert sources(batch.responses[1]) == [COLD] * 3


def test_small_catalog_fills_from_cold_start_when_relevance_runs_short(
    redis_server, seeded, small_bundle, serving_bundle, user
):
    """k=500 with one probed list (of ~30, ~40 items each) finds < 500 items: the rest is cold start."""
    settings = make_settings(redis_server.url, small_bundle.path, relevance_nprobe=1)
    server = ServerThread(settings, serving_bundle).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            resp = pb_grpc.RetrievalServiceStub(channel).Recommend(
                pb.RecommendRequest(user_id=user, k=500, exploration_ratio=0.0)
            )
    finally:
        server.stop()
    assert len(resp.items) == 500
    assert {RELEVANCE, COLD} == set(sources(resp))
    ids = [item.item_id for item in resp.items]
    assert len(set(ids)) == 500

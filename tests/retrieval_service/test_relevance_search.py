"""The whole-catalog relevance search (the bundle's relevance index) and its fallback, over gRPC."""

from __future__ import annotations

import dataclasses
import time

import grpc
import numpy as np

from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.api.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from serendip.seqmodel import encode_users
from tests.retrieval_service.conftest import ServerThread, make_settings


def _user(histories):
    return max(sorted(histories), key=lambda u: min(len(histories[u]), 50))


def _exact_top(serving_bundle, history, k):
    """The model's own ranking: dot products with every item, the user's recent items removed."""
    idx = [serving_bundle.item_index[i] for i in history[-50:]]
    user = encode_users(serving_bundle.model, [idx])[0]
    scores = serving_bundle.bundle.item_embeddings @ user
    scores[idx] = -np.inf
    top = np.argsort(-scores, kind="stable")[:k]
    return [serving_bundle.item_ids[i] for i in top], scores


def test_relevance_items_are_the_models_best_unseen_items(stub, seeded, serving_bundle, histories):
    assert serving_bundle.relevance is not None
    user = _user(histories)
    resp = stub.Recommend(pb.RecommendRequest(user_id=user, k=10, exploration_ratio=0.0))
    got = [item.item_id for item in resp.items]
    expected, scores = _exact_top(serving_bundle, histories[user], 10)
    assert {item.source for item in resp.items} == {pb.ITEM_SOURCE_RELEVANCE}
    assert len(set(got) & set(expected)) >= 9  # 4-bit codes may swap the boundary item at most
    for item in resp.items:  # the scores are the model's exact dot products, not code estimates
        assert abs(item.score - scores[serving_bundle.item_index[item.item_id]]) < 1e-3


def test_exclusions_that_fill_the_narrow_search_are_searched_past(stub, seeded, serving_bundle, histories):
    """The first relevance search asks for k + RELEVANCE_BLOCKED_MARGIN; a user who excludes more
    than that of their own best items must still get k relevance items (the second, wider search),
    not cold-start filler."""
    from retrieval_service.recommender import RELEVANCE_BLOCKED_MARGIN

    user = _user(histories)
    ranking, _ = _exact_top(serving_bundle, histories[user], 10 + RELEVANCE_BLOCKED_MARGIN + 20)
    excluded = ranking[: RELEVANCE_BLOCKED_MARGIN + 20]
    resp = stub.Recommend(
        pb.RecommendRequest(user_id=user, k=10, exploration_ratio=0.0, exclude_item_ids=excluded)
    )
    got = [item.item_id for item in resp.items]
    assert len(got) == 10 and not set(got) & set(excluded)
    assert {item.source for item in resp.items} == {pb.ITEM_SOURCE_RELEVANCE}
    assert len(set(got) & set(ranking[len(excluded) :])) >= 9  # the next best, as without exclusions


def test_bundle_without_relevance_index_falls_back_to_the_cluster_index(
    redis_server, seeded, small_bundle, serving_bundle, histories
):
    old_style = dataclasses.replace(serving_bundle, relevance=None)
    server = ServerThread(
        make_settings(redis_server.url, small_bundle.path, relevance_nprobe=None), old_style
    ).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            user = _user(histories)
            resp = pb_grpc.RetrievalServiceStub(channel).Recommend(
                pb.RecommendRequest(user_id=user, k=10, exploration_ratio=0.0)
            )
    finally:
        server.stop()
    expected, _ = _exact_top(serving_bundle, histories[user], 10)
    assert [item.item_id for item in resp.items] == expected  # all clusters probed: exact


def test_connections_are_recycled_without_failing_calls(redis_server, seeded, small_bundle, serving_bundle):
    server = ServerThread(
        make_settings(
            redis_server.url, small_bundle.path, max_connection_age_s=0.3, max_connection_age_grace_s=0.2
        ),
        serving_bundle,
    ).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.RetrievalServiceStub(channel)
            seen_states = set()
            channel.subscribe(seen_states.add, try_to_connect=True)
            end = time.monotonic() + 1.5
            calls = 0
            while time.monotonic() < end:
                resp = stub.Recommend(pb.RecommendRequest(user_id="no-history-user", k=3), timeout=10)
                assert len(resp.items) == 3
                calls += 1
                time.sleep(0.02)
    finally:
        server.stop()
    assert calls > 20
    # The server's GOAWAY moved the channel out of READY at least once, and calls went on.
    assert grpc.ChannelConnectivity.IDLE in seen_states or grpc.ChannelConnectivity.CONNECTING in seen_states

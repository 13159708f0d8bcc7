"""Hot reload: verify-then-swap under load, bad bundles refused, the `current` link followed, and
records of sibling bundles judged by their taxonomy and model hashes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.api.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from serendip.bundle.store import point_current
from tests.retrieval_service.conftest import (
    ServerThread,
    clone_bundle,
    make_settings,
    put_record,
    relabel_taxonomy,
    retrain_model,
    unexplored_clusters,
)

A, B_ID = "clone-a-000001-aaaaaa", "clone-b-000002-bbbbbb"
RETRAINED, REBUILT, CORRUPT = "retrained-000003-cccccc", "rebuilt-000004-dddddd", "corrupt-000005-eeeeee"


@pytest.fixture(scope="module")
def bundle_root(tmp_path_factory: pytest.TempPathFactory, small_bundle) -> Path:
    root = tmp_path_factory.mktemp("reload-bundles")
    clone_bundle(small_bundle, root, A)
    clone_bundle(small_bundle, root, B_ID)
    clone_bundle(small_bundle, root, RETRAINED, edit=retrain_model)
    clone_bundle(small_bundle, root, REBUILT, edit=relabel_taxonomy)
    corrupt = clone_bundle(small_bundle, root, CORRUPT)
    with open(corrupt / "index.faiss", "ab") as f:  # after publishing: the hash no longer matches
        f.write(b"\0")
    return root


def _serving(admin: pb_grpc.RetrievalAdminServiceStub) -> str:
    return admin.GetServingInfo(pb.GetServingInfoRequest()).bundle_id


# 0: compute in the server process; 1: a worker process stages the bundle, then swaps on commit.
@pytest.mark.parametrize("workers", [0, 1])
def test_hot_reload_under_load_loses_no_request(bundle_root, redis_server, seeded, histories, workers):
    point_current(bundle_root, A)
    server = ServerThread(make_settings(redis_server.url, bundle_root, workers=workers)).start()
    users = sorted(histories)[:40]
    stop = threading.Event()
    answered: list[tuple[float, str]] = []
    failures: list[grpc.StatusCode] = []

    def drive() -> None:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.RetrievalServiceStub(channel)
            while not stop.is_set():
                for user in users:
                    try:
                        resp = stub.Recommend(pb.RecommendRequest(user_id=user, k=10), timeout=30)
                    except grpc.RpcError as exc:
                        failures.append(exc.code())
                        continue
                    answered.append((time.monotonic(), resp.bundle_id))
                    assert len(resp.items) == 10

    threads = [threading.Thread(target=drive) for _ in range(3)]
    windows = []
    try:
        for t in threads:
            t.start()
        time.sleep(0.3)
        with grpc.insecure_channel(server.target) as channel:
            admin = pb_grpc.RetrievalAdminServiceStub(channel)
            for target in (B_ID, A, B_ID):
                t0 = time.monotonic()
                result = admin.ReloadBundle(
                    pb.ReloadBundleRequest(path=str(bundle_root / target)), timeout=120
                )
                windows.append((t0, time.monotonic()))
                assert result.changed and result.bundle_id == target
                time.sleep(0.3)
            assert _serving(admin) == B_ID
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        server.stop()
    assert failures == []
    assert {bundle for _, bundle in answered} == {A, B_ID}
    for start, end in windows:  # requests kept being answered while each new bundle was loading
        assert any(start <= t <= end for t, _ in answered)


@pytest.mark.parametrize("workers", [0, 1])
def test_bad_bundle_is_refused_and_the_old_one_keeps_serving(
    bundle_root, redis_server, seeded, small_bundle, workers
):
    point_current(bundle_root, A)
    settings = make_settings(redis_server.url, bundle_root, metrics_port=0, workers=workers)
    server = ServerThread(settings).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            admin = pb_grpc.RetrievalAdminServiceStub(channel)
            stub = pb_grpc.RetrievalServiceStub(channel)
            bad_targets = {
                bundle_root / CORRUPT: "index.faiss",  # hash mismatch
                bundle_root / "no-such-bundle": "no bundle",
                small_bundle.path: "outside the bundle root",
            }
            for bad, reason in bad_targets.items():
                with pytest.raises(grpc.RpcError) as err:
                    admin.ReloadBundle(pb.ReloadBundleRequest(path=str(bad)), timeout=60)
                assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert "bundle refused" in err.value.details() and reason in err.value.details()
            assert _serving(admin) == A
            assert stub.Recommend(pb.RecommendRequest(user_id="1", k=5)).bundle_id == A
            unchanged = admin.ReloadBundle(pb.ReloadBundleRequest(path=str(bundle_root / A)))
            assert not unchanged.changed
        metrics = server.metrics_text()
        assert 'serendip_retrieval_bundle_reloads_total{result="refused"} 3.0' in metrics
        assert f'serendip_retrieval_bundle_info{{bundle_id="{A}",index_device="cpu"}} 1.0' in metrics
    finally:
        server.stop()


def test_watcher_follows_the_current_link_and_skips_bad_targets(bundle_root, redis_server):
    point_current(bundle_root, A)
    server = ServerThread(make_settings(redis_server.url, bundle_root, watch_interval_s=0.1)).start()

    def wait_for(bundle_id: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _serving(admin) != bundle_id:
            time.sleep(0.05)
        assert _serving(admin) == bundle_id

    try:
        with grpc.insecure_channel(server.target) as channel:
            admin = pb_grpc.RetrievalAdminServiceStub(channel)
            point_current(bundle_root, B_ID)
            wait_for(B_ID)
            point_current(bundle_root, CORRUPT)
            time.sleep(1.5)  # several polls: refused once, then left alone
            assert _serving(admin) == B_ID
            point_current(bundle_root, A)
            wait_for(A)
    finally:
        point_current(bundle_root, A)
        server.stop()


def test_records_of_sibling_bundles(bundle_root, redis_server, seeded, serving_bundle, histories):
    """Same taxonomy → the record's clusters are used (its embeddings only if the model is the same
    too, else our centroids steer); another taxonomy → STALE."""
    point_current(bundle_root, B_ID)
    server = ServerThread(make_settings(redis_server.url, bundle_root)).start()
    user = "414"
    clusters = unexplored_clusters(serving_bundle, histories[user], 2)
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.RetrievalServiceStub(channel)
            for made_for, status in (
                (A, pb.RECORD_STATUS_HIT),
                (RETRAINED, pb.RECORD_STATUS_HIT),
                (REBUILT, pb.RECORD_STATUS_STALE),
            ):
                put_record(seeded, user, serving_bundle, clusters, bundle_id=made_for)
                resp = stub.Recommend(pb.RecommendRequest(user_id=user, k=10, exploration_ratio=0.4))
                assert resp.record_status == status, made_for
                novel = [i.cluster_id for i in resp.items if i.source == pb.ITEM_SOURCE_NOVEL_INTEREST]
                if status == pb.RECORD_STATUS_HIT:
                    assert len(novel) == 4 and set(novel) == set(clusters)
                else:
                    assert novel == []
    finally:
        point_current(bundle_root, A)
        server.stop()

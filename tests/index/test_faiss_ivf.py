import numpy as np
import pytest

from serendip.index.faiss_ivf import FaissClusterIndex, build_ivf


@pytest.fixture(scope="module")
def clustered():
    rng = np.random.default_rng(1)
    n, d, k = 5000, 16, 25
    centers = rng.standard_normal((k, d)).astype(np.float32)
    assign = rng.integers(0, k, n)
    emb = (centers[assign] + 0.5 * rng.standard_normal((n, d))).astype(np.float32)
    centroids = np.stack([emb[assign == c].mean(0) for c in range(k)]).astype(np.float32)
    return emb, assign, centroids


def brute_force(emb, assign, q, clusters, k):
    members = np.flatnonzero(np.isin(assign, clusters))
    scores = emb[members] @ q
    return members[np.argsort(-scores, kind="stable")[:k]]


def test_restricted_search_equals_brute_force_over_those_clusters(clustered):
    emb, assign, centroids = clustered
    index = FaissClusterIndex(build_ivf(emb, assign, centroids))
    rng = np.random.default_rng(2)
    for _ in range(30):
        q = rng.standard_normal(emb.shape[1]).astype(np.float32)
        clusters = rng.choice(centroids.shape[0], 3, replace=False)
        _, ids = index.search_clusters(q[None], 10, clusters[None])
        assert ids[0].tolist() == brute_force(emb, assign, q, clusters, 10).tolist()
        assert set(assign[ids[0]]) <= set(clusters.tolist())


def test_lists_are_exactly_the_given_clusters(clustered):
    emb, assign, centroids = clustered
    index = FaissClusterIndex(build_ivf(emb, assign, centroids))
    sizes = np.bincount(assign, minlength=centroids.shape[0])
    assert [index.list_size(c) for c in range(index.n_clusters)] == sizes.tolist()


def test_ragged_cluster_sets_padded_with_minus_one(clustered):
    emb, assign, centroids = clustered
    index = FaissClusterIndex(build_ivf(emb, assign, centroids))
    q = emb[:2] + 0.01
    lists = np.array([[4, -1, -1], [1, 2, -1]])
    _, ids = index.search_clusters(q, 5, lists)
    assert set(assign[ids[0]]) == {4}
    assert set(assign[ids[1]]) <= {1, 2}


def test_full_search_is_exact_and_nprobe_limits_it(clustered):
    emb, assign, centroids = clustered
    index = FaissClusterIndex(build_ivf(emb, assign, centroids))
    q = emb[7] + 0.1
    _, ids = index.search(q[None], 10)
    want = np.argsort(-(emb @ q), kind="stable")[:10]
    assert ids[0].tolist() == want.tolist()
    _, probed = index.search(q[None], 10, nprobe=1)
    best = int(np.argmax(centroids @ q))
    assert set(assign[probed[0][probed[0] >= 0]]) == {best}


def test_bad_cluster_ids_are_rejected(clustered):
    emb, assign, centroids = clustered
    with pytest.raises(ValueError, match="outside"):
        build_ivf(emb, np.full(len(emb), centroids.shape[0]), centroids)
    index = FaissClusterIndex(build_ivf(emb, assign, centroids))
    with pytest.raises(ValueError, match="outside"):
        index.search_clusters(emb[:1], 5, np.array([[999]]))


def test_gpu_request_without_gpu_is_a_clear_error(clustered):
    from serendip.index.faiss_ivf import gpu_available

    if gpu_available():
        pytest.skip("a GPU is present; the GPU path is exercised by the device check script")
    emb, assign, centroids = clustered
    with pytest.raises(RuntimeError, match="no usable GPU"):
        FaissClusterIndex(build_ivf(emb, assign, centroids), device="gpu")
    assert FaissClusterIndex(build_ivf(emb, assign, centroids), device="auto").device == "cpu"

"""steering_queries: the per-interest query vectors of the novel search, built per batch."""

from __future__ import annotations

import numpy as np

from retrieval_service.recommender import steering_queries


def test_mixes_unit_interest_and_unit_user_and_falls_back_where_either_is_missing():
    centroids = np.eye(4, dtype=np.float32)  # unit centroid of cluster c = e_c
    directions = np.array(
        [[3, 0, 0, 0], [0, 0, 0, 0], [0, 2, 0, 0], [0, 0, 5, 0]], dtype=np.float32
    )  # interest 1 has a zero embedding
    clusters = np.array([0, 3, 1, 2])
    users = np.array([[0, 4, 0, 0], [0, 0, 0, 0]], dtype=np.float32)  # user 1: zero embedding
    rows = np.array([0, 0, -1, 1])  # interest 2's user has no history
    q = steering_queries(directions, clusters, rows, users, centroids, weight=0.75)
    assert q.dtype == np.float32 and q.flags.c_contiguous
    np.testing.assert_allclose(q[0], [0.75, 0.25, 0, 0])  # 0.75·e0 + 0.25·unit(user 0)
    np.testing.assert_allclose(q[1], [0, 0.25, 0, 0.75])  # zero embedding → cluster 3's centroid
    np.testing.assert_allclose(q[2], [0, 1, 0, 0])  # no history: the interest alone
    np.testing.assert_allclose(q[3], [0, 0, 1, 0])  # zero user embedding: the interest alone
    only = steering_queries(directions, clusters, rows, users, centroids, weight=1.0)
    np.testing.assert_allclose(only, [[1, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0]])

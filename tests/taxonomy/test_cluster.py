import math
from collections import Counter

import numpy as np

from serendip.taxonomy.cluster import balanced_kmeans, capacity_assign, group_clusters
from serendip.taxonomy.labels import item_keywords, rank_cluster_keywords, unique_labels


def test_balanced_kmeans_respects_capacity_even_for_skewed_data():
    rng = np.random.default_rng(0)
    # 80% of points in one tight blob: plain k-means would make a giant cluster.
    big = rng.standard_normal((1600, 8)) * 0.05 + 3
    rest = rng.standard_normal((400, 8)) * 2
    x = np.vstack([big, rest]).astype(np.float32)
    assign, centroids = balanced_kmeans(x, 20, balance=1.5, iters=10, seed=0)
    sizes = np.bincount(assign, minlength=20)
    assert sizes.max() <= math.ceil(1.5 * len(x) / 20)
    assert sizes.min() >= 1
    assert centroids.shape == (20, 8)


def test_capacity_assign_prefers_nearest_when_room():
    c = np.eye(3, dtype=np.float32)
    x = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.9, 0.1, 0]], dtype=np.float32)
    assert capacity_assign(x, c, capacity=2).tolist() == [0, 1, 2, 0]
    # Capacity 1 for 3 clusters cannot hold 4 rows.
    try:
        capacity_assign(x, c, capacity=1)
    except ValueError as exc:
        assert "cannot hold" in str(exc)
    else:
        raise AssertionError("expected a capacity error")


def test_group_clusters_makes_requested_groups():
    rng = np.random.default_rng(3)
    centroids = rng.standard_normal((40, 6)).astype(np.float32)
    parents = group_clusters(centroids, np.full(40, 10), 5, seed=0)
    assert sorted(set(parents.tolist())) == [0, 1, 2, 3, 4]


def test_labels_are_unique_and_readable():
    kws = [
        item_keywords("Toy Story (1995)", {"genres": ["Animation", "Children"], "year": "1995"}),
        item_keywords("Toy Story 2 (1999)", {"genres": ["Animation", "Children"], "year": "1999"}),
        item_keywords("Alien (1979)", {"genres": ["Horror", "Sci-Fi"], "tags": ["Space"], "year": "1979"}),
        item_keywords("Aliens (1986)", {"genres": ["Horror", "Sci-Fi"], "tags": ["space"], "year": "1986"}),
        item_keywords("Heat (1995)", {"genres": ["Action", "Crime"], "year": "1995"}),
        item_keywords("Casino (1995)", {"genres": ["Crime", "Drama"], "year": "1995"}),
    ]
    assert kws[0]["1990s"] == 1.0 and kws[2]["space"] == 1.0
    ranked = rank_cluster_keywords(kws, [0, 0, 1, 1, 2, 2], 3)
    assert "Animation" in ranked[0][:2] and "Children" in ranked[0][:3]
    assert "space" in ranked[1][:3] or "Horror" in ranked[1][:3]
    labels = unique_labels(ranked)
    assert len(set(labels)) == 3 and all(labels)


def test_unique_labels_extends_then_numbers():
    labels = unique_labels([["a", "b", "c"], ["a", "b", "d"], ["a", "b"], ["a", "b"]])
    assert len(set(labels)) == 4
    assert labels[0] == "a · b · c" and labels[1] == "a · b · d"
    assert Counter(labels[2:]) == Counter(["a · b", "a · b (2)"])

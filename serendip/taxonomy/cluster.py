"""Size-balanced, two-level clustering of item embeddings into interest clusters."""

from __future__ import annotations

import math

import faiss
import numpy as np


def _normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def capacity_assign(x: np.ndarray, centroids: np.ndarray, capacity: int, shortlist: int = 16) -> np.ndarray:
    """Assign each row to its most similar centroid that still has room.

    Greedy over (row, centroid) pairs in descending similarity — the pairs a row likes most are
    served first, so only rows whose favourites are full move, and they move to their next best.
    """
    n, k = len(x), len(centroids)
    if capacity * k < n:
        raise ValueError(f"capacity {capacity} x {k} clusters cannot hold {n} items")
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    m = min(shortlist, k)
    sims, cand = index.search(np.ascontiguousarray(x, dtype=np.float32), m)
    order = np.argsort(-sims, axis=None, kind="stable")
    rows, cols = np.unravel_index(order, sims.shape)
    assign = np.full(n, -1, dtype=np.int64)
    load = np.zeros(k, dtype=np.int64)
    for r, c in zip(rows.tolist(), cand[rows, cols].tolist(), strict=True):
        if assign[r] < 0 and load[c] < capacity:
            assign[r] = c
            load[c] += 1
    # Rows whose whole shortlist was full: take the best centroid with room, over all of them.
    for r in np.flatnonzero(assign < 0).tolist():
        scores = centroids @ x[r]
        scores[load >= capacity] = -np.inf
        c = int(np.argmax(scores))
        assign[r] = c
        load[c] += 1
    return assign


def balanced_kmeans(
    x: np.ndarray, k: int, balance: float, iters: int, seed: int, refine_rounds: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means followed by capacity-constrained reassignment.

    Returns (assignments, centroids); no cluster exceeds ceil(balance * n / k) rows and none is empty.
    """
    x = _normalize(np.asarray(x, dtype=np.float32))
    n = len(x)
    if k > n:
        raise ValueError(f"cannot make {k} clusters from {n} items")
    km = faiss.Kmeans(x.shape[1], k, niter=iters, seed=seed, spherical=True, min_points_per_centroid=1)
    km.train(x)
    centroids = km.centroids.copy()
    capacity = max(1, math.ceil(balance * n / k))
    assign = capacity_assign(x, centroids, capacity)
    for _ in range(refine_rounds):
        centroids = _centroids_of(x, assign, k, fallback=centroids)
        assign = capacity_assign(x, centroids, capacity)
    assign = _fill_empty(x, assign, k)
    return assign, _centroids_of(x, assign, k, fallback=centroids)


def cluster_means(x: np.ndarray, assign: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster mean of the rows (float64; zeros for empty clusters) and the cluster sizes."""
    sums = np.zeros((k, x.shape[1]), dtype=np.float64)
    np.add.at(sums, assign, x)
    counts = np.bincount(assign, minlength=k)
    return sums / np.maximum(counts, 1)[:, None], counts


def _centroids_of(x: np.ndarray, assign: np.ndarray, k: int, fallback: np.ndarray) -> np.ndarray:
    means, counts = cluster_means(x, assign, k)
    # An empty cluster keeps its previous centroid rather than collapsing to the origin.
    out = np.where((counts > 0)[:, None], means, fallback.astype(np.float64))
    return _normalize(out)


def _fill_empty(x: np.ndarray, assign: np.ndarray, k: int) -> np.ndarray:
    """Give each empty cluster one row taken from the currently largest cluster."""
    assign = assign.copy()
    counts = np.bincount(assign, minlength=k)
    for c in np.flatnonzero(counts == 0).tolist():
        donor = int(np.argmax(counts))
        members = np.flatnonzero(assign == donor)
        assign[members[0]] = c
        counts[donor] -= 1
        counts[c] += 1
    return assign


def group_clusters(centroids: np.ndarray, sizes: np.ndarray, n_groups: int, seed: int) -> np.ndarray:
    """Coarse level: weighted k-means over fine centroids → parent id per fine cluster."""
    if n_groups >= len(centroids):
        return np.arange(len(centroids), dtype=np.int64)
    # Weight by repetition (bounded) so big fine clusters pull their coarse centroid harder.
    reps = np.clip(np.round(sizes / max(1.0, sizes.mean())).astype(int), 1, 5)
    pts = np.repeat(centroids, reps, axis=0).astype(np.float32)
    km = faiss.Kmeans(
        centroids.shape[1], n_groups, niter=30, seed=seed, spherical=True, min_points_per_centroid=1
    )
    km.train(pts)
    capacity = max(1, math.ceil(1.6 * len(centroids) / n_groups))
    parents = capacity_assign(_normalize(centroids), km.centroids, capacity)
    return _fill_empty(_normalize(centroids), parents, n_groups)

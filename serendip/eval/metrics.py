"""Offline metrics: interest-level (novel-cluster hit@m) and item-level (accuracy, serendipity, beyond).

Notation for one user u: R = the top-k list (item indices, best first; always k long in the replay,
whose catalog is far larger than k plus a history), T = the user's future positives, PM = the
*primitive* list (popularity top-k with the user's seen items removed), H = clusters of the user's
history positives, pop(i) = number of distinct users with a history-period interaction with i,
N = number of users in the history period, v_i = item i's vector.

    hit@m           = 1[ P[:m] ∩ (C(T) \\ H) ≠ ∅ ]     P = proposed clusters, C(T) = clusters of T
    Recall@k        = |R ∩ T| / |T|
    NDCG@k          = Σ_{r ≤ k, R_r ∈ T} 1/log2(r+1)  /  Σ_{r ≤ min(k, |T|)} 1/log2(r+1)
    serendipity@k   = |(R \\ PM) ∩ T| / k                           (Ge, Delgado-Battenfeld & Jannach 2010)
    unexpectedness@k = |R \\ PM| / k                                  (Ge et al.'s UNEXP set, as a share)
    novelty@k       = (1/k) Σ_{i ∈ R} −log2( max(pop(i), 1) / N )      (self-information)
    ILD@k           = (1 / (k(k−1))) Σ_{i ≠ j ∈ R} (1 − cos(v_i, v_j))  (intra-list diversity)
    new-cluster share@k = |{i ∈ R : cluster(i) ∉ H}| / k
    coverage@k      = |∪_u R_u| / |catalog|                            (over all evaluated users)

Per-user values are averaged over users. Peer mapping (tests/eval/test_metrics.py checks each on
random inputs against rectools 0.19): Recall, NDCG (= its ``divide_by_achievable=True``; its
default divides every user by the k-item ideal), novelty (= MeanInvUserFreq, which also counts
unseen items as 1 user), ILD (= IntraListDiversity with a cosine distance) and coverage
(= CatalogCoverage(normalize=True)) are the same formulas. rectools' ``Serendipity`` is a different
metric (a rank-difference score after Lab41, not Ge et al.); Ge's serendipity equals rectools'
``Precision@k`` of R with the PM items removed and ranks kept, which is what the test checks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def hit_at_m(proposed: Sequence[int], novel_future_clusters: set[int], m: int) -> float:
    return float(any(c in novel_future_clusters for c in list(proposed)[:m]))


def recall_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    if not relevant:
        raise ValueError("recall needs at least one relevant item")
    return sum(1 for i in list(ranked)[:k] if i in relevant) / len(relevant)


def ndcg_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    if not relevant:
        raise ValueError("ndcg needs at least one relevant item")
    dcg = sum(1.0 / math.log2(r + 2) for r, i in enumerate(list(ranked)[:k]) if i in relevant)
    idcg = sum(1.0 / math.log2(r + 2) for r in range(min(k, len(relevant))))
    return dcg / idcg


def serendipity_at_k(ranked: Sequence[int], relevant: set[int], primitive: set[int], k: int) -> float:
    return sum(1 for i in list(ranked)[:k] if i in relevant and i not in primitive) / k


def unexpectedness_at_k(ranked: Sequence[int], primitive: set[int], k: int) -> float:
    return sum(1 for i in list(ranked)[:k] if i not in primitive) / k


def novelty_at_k(ranked: Sequence[int], item_users: np.ndarray, n_users: int, k: int) -> float:
    top = np.asarray(list(ranked)[:k], dtype=np.int64)
    counts = np.maximum(item_users[top], 1).astype(np.float64)
    return float(-np.log2(counts / n_users).sum() / k)


def intra_list_diversity(ranked: Sequence[int], unit_vectors: np.ndarray, k: int) -> float:
    """Mean pairwise cosine distance; ``unit_vectors`` rows are L2-normalised item vectors."""
    if k < 2:
        raise ValueError("intra-list diversity needs k >= 2")
    v = unit_vectors[np.asarray(list(ranked)[:k], dtype=np.int64)]
    sims = v @ v.T
    n = len(v)
    return float((n * n - n - (sims.sum() - np.trace(sims))) / (k * (k - 1)))


def new_cluster_share(ranked: Sequence[int], item_clusters: np.ndarray, history: set[int], k: int) -> float:
    return sum(1 for i in list(ranked)[:k] if int(item_clusters[i]) not in history) / k


def catalog_coverage(lists: Sequence[Sequence[int]], n_items: int, k: int) -> float:
    return len({i for ranked in lists for i in list(ranked)[:k]}) / n_items


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval for a proportion (sound for small n and proportions near 0)."""
    if n <= 0:
        return (0.0, 0.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_interval(
    values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-user values."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))

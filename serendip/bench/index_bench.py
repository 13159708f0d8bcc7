"""Restricted cluster search vs the naive way (flat top-k over the catalog, then filter)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import faiss
import numpy as np

from serendip.index.faiss_ivf import FaissClusterIndex


@dataclass
class IndexBenchResult:
    n_items: int
    n_clusters: int
    n_queries: int
    k: int
    clusters_per_query: int
    restricted_ms: float
    naive_ms: float
    naive_k: int
    recall_restricted: float
    recall_naive: float
    # Exact naive alternative: a flat scan of the whole catalog with an ID filter on the clusters.
    selector_ms: float = 0.0
    recall_selector: float = 0.0

    @property
    def ratio(self) -> float:
        return self.naive_ms / max(self.restricted_ms, 1e-9)


def bench_index(
    index: FaissClusterIndex,
    item_clusters: np.ndarray,
    item_embeddings: np.ndarray,
    n_queries: int = 200,
    k: int = 10,
    clusters_per_query: int = 3,
    naive_k: int = 100,
    seed: int = 0,
) -> IndexBenchResult:
    """One thread, batch 1 (the online shape). Ground truth: brute force over the chosen clusters."""
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(seed)
    n_clusters = index.n_clusters
    queries = item_embeddings[rng.integers(0, len(item_embeddings), n_queries)].astype(np.float32)
    queries += rng.standard_normal(queries.shape).astype(np.float32) * 0.1
    chosen = np.stack([rng.choice(n_clusters, clusters_per_query, replace=False) for _ in range(n_queries)])

    flat = faiss.IndexFlatIP(item_embeddings.shape[1])
    flat.add(np.ascontiguousarray(item_embeddings, dtype=np.float32))

    # Ground truth, computed outside the timed loops.
    order = np.argsort(item_clusters, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(item_clusters, minlength=n_clusters))])
    truth = []
    for q, cl in zip(queries, chosen, strict=True):
        members = np.concatenate([order[bounds[c] : bounds[c + 1]] for c in cl])
        scores = item_embeddings[members] @ q
        top = members[np.argsort(-scores, kind="stable")[:k]]
        truth.append(set(top.tolist()))

    restricted_hits = naive_hits = 0
    t = time.perf_counter()
    restricted_ids = [
        index.search_clusters(queries[i : i + 1], k, chosen[i : i + 1])[1][0] for i in range(n_queries)
    ]
    restricted_ms = (time.perf_counter() - t) * 1000 / n_queries

    # Naive: flat top-`naive_k`, keep those in the chosen clusters (may keep fewer than k).
    t = time.perf_counter()
    naive_ids = []
    for i in range(n_queries):
        _, ids = flat.search(queries[i : i + 1], naive_k)
        ids = ids[0]
        keep = ids[np.isin(item_clusters[ids], chosen[i])][:k]
        naive_ids.append(keep)
    naive_ms = (time.perf_counter() - t) * 1000 / n_queries

    # Member lists are prepared outside the timed loop (a favour to the naive way).
    selectors = [
        faiss.IDSelectorBatch(np.concatenate([order[bounds[c] : bounds[c + 1]] for c in cl]).astype(np.int64))
        for cl in chosen
    ]
    t = time.perf_counter()
    selector_ids = [
        flat.search(queries[i : i + 1], k, params=faiss.SearchParameters(sel=selectors[i]))[1][0]
        for i in range(n_queries)
    ]
    selector_ms = (time.perf_counter() - t) * 1000 / n_queries

    selector_hits = 0
    for got_r, got_n, got_s, want in zip(restricted_ids, naive_ids, selector_ids, truth, strict=True):
        restricted_hits += len(set(got_r.tolist()) & want)
        naive_hits += len(set(got_n.tolist()) & want)
        selector_hits += len(set(got_s.tolist()) & want)
    total = sum(len(t) for t in truth)
    return IndexBenchResult(
        n_items=index.n_items,
        n_clusters=n_clusters,
        n_queries=n_queries,
        k=k,
        clusters_per_query=clusters_per_query,
        restricted_ms=restricted_ms,
        naive_ms=naive_ms,
        naive_k=naive_k,
        recall_restricted=restricted_hits / total,
        recall_naive=naive_hits / total,
        selector_ms=selector_ms,
        recall_selector=selector_hits / total,
    )

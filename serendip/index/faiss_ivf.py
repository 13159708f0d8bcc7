"""FAISS IVF index whose inverted lists are exactly the interest clusters.

Lists are filled from the taxonomy's assignments (``add_preassigned``), never re-clustered by
k-means, so "search these clusters" is a pure list restriction (``search_preassigned``) — exact over
the chosen clusters and independent of the catalog size. The coarse quantizer holds the clusters'
centroids in the same space, so whole-catalog search with ``nprobe`` < n_clusters probes the
clusters nearest to the query.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
from faiss.contrib.ivf_tools import add_preassigned


def gpu_available() -> bool:
    """True when the installed faiss was built with GPU support and sees a device."""
    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    return bool(get_num_gpus and get_num_gpus() > 0)


def to_device(index: faiss.Index, device: str) -> tuple[faiss.Index, object | None, str]:
    """(searchable index, GPU resources to keep alive or None, "cpu"|"gpu") for ``index.device``."""
    if device == "gpu" or (device == "auto" and gpu_available()):
        if not gpu_available():
            raise RuntimeError("index.device=gpu but the installed faiss has no usable GPU")
        resources = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(resources, 0, index), resources, "gpu"
    return index, None, "cpu"


def build_ivf(embeddings: np.ndarray, assignments: np.ndarray, centroids: np.ndarray) -> faiss.IndexIVFFlat:
    """An inner-product IVF with one inverted list per cluster, filled from ``assignments``."""
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    assignments = np.asarray(assignments, dtype=np.int64)
    n, dim = embeddings.shape
    n_clusters = centroids.shape[0]
    if assignments.shape != (n,):
        raise ValueError(f"assignments shape {assignments.shape} != ({n},)")
    if n and (assignments.min() < 0 or assignments.max() >= n_clusters):
        raise ValueError("assignments reference clusters outside 0..n_clusters-1")
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(centroids)
    index = faiss.IndexIVFFlat(quantizer, dim, n_clusters, faiss.METRIC_INNER_PRODUCT)
    index.is_trained = True  # the lists are given, not learned
    # add_preassigned assigns ids 0..n-1 in order when none are given — ids are internal indices.
    add_preassigned(index, embeddings, assignments)
    index.nprobe = n_clusters
    return index


class FaissClusterIndex:
    """`ItemIndex` over a FAISS IVF, on the CPU or (when available and asked for) a GPU.

    ``search_preassigned`` wants exactly ``nprobe`` list ids per query, and ``nprobe`` is index
    state; so it is fixed once at ``max_restricted`` and shorter cluster sets are padded with -1
    (skipped), which keeps concurrent searches free of shared mutable state.
    """

    def __init__(self, index: faiss.IndexIVFFlat, device: str = "cpu", max_restricted: int = 64):
        self.cpu_index = index
        self.n_items = int(index.ntotal)
        self.n_clusters = int(index.nlist)
        self.dim = int(index.d)
        self.max_restricted = max(1, min(max_restricted, self.n_clusters))
        index.nprobe = self.max_restricted
        self._index, self._resources, self.device = to_device(index, device)
        self._index.nprobe = self.max_restricted
        self._list_sizes = np.array(
            [index.invlists.list_size(c) for c in range(self.n_clusters)], dtype=np.int64
        )

    @classmethod
    def load(cls, path: Path, device: str = "cpu", max_restricted: int = 64) -> FaissClusterIndex:
        index = faiss.read_index(str(path))
        if not isinstance(index, faiss.IndexIVFFlat):
            index = faiss.downcast_index(index)
        return cls(index, device, max_restricted)

    def save(self, path: Path) -> None:
        faiss.write_index(self.cpu_index, str(path))

    def list_size(self, cluster_id: int) -> int:
        return int(self._list_sizes[cluster_id])

    def search(self, xq: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        xq = np.ascontiguousarray(xq, dtype=np.float32).reshape(-1, self.dim)
        probe = self.n_clusters if nprobe is None else max(1, min(int(nprobe), self.n_clusters))
        params = faiss.SearchParametersIVF(nprobe=probe)
        distances, ids = self._index.search(xq, k, params=params)
        return distances, ids

    def search_clusters(
        self, xq: np.ndarray, k: int, cluster_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        xq = np.ascontiguousarray(xq, dtype=np.float32).reshape(-1, self.dim)
        lists = np.asarray(cluster_ids, dtype=np.int64).reshape(len(xq), -1)
        if lists.size and lists.max() >= self.n_clusters:
            raise ValueError(f"cluster id {int(lists.max())} outside 0..{self.n_clusters - 1}")
        width = lists.shape[1]
        if width > self.max_restricted:
            raise ValueError(f"{width} clusters per query; at most {self.max_restricted} supported")
        padded = np.full((len(xq), self.max_restricted), -1, dtype=np.int64)
        padded[:, :width] = lists  # -1 entries are skipped by search_preassigned
        coarse_dis = np.zeros(padded.shape, dtype=np.float32)
        distances, ids = self._index.search_preassigned(xq, k, padded, coarse_dis)
        return distances, ids

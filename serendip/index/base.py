"""The item-index protocol: whole-catalog search and search restricted to interest clusters."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ItemIndex(Protocol):
    """Inner-product index over item embeddings whose partitions are the interest clusters.

    Ids returned are internal item indices; -1 marks an empty slot (fewer than k results).
    """

    device: str
    n_items: int
    n_clusters: int
    dim: int

    def search(self, xq: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k over the catalog; ``nprobe=None`` scans every cluster (exact)."""
        ...

    def search_clusters(
        self, xq: np.ndarray, k: int, cluster_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k restricted to the given clusters, one row of cluster ids per query (-1 = none)."""
        ...

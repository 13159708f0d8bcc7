"""Collaborative item vectors: truncated SVD of the (item x user) positive-engagement matrix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds


def collaborative_vectors(
    item_idx: np.ndarray, user_idx: np.ndarray, n_items: int, n_users: int, dim: int, seed: int = 7
) -> np.ndarray:
    """L2-normalised item factors; items nobody engaged with get zeros (they cluster on content)."""
    out = np.zeros((n_items, dim), dtype=np.float32)
    if len(item_idx) == 0 or n_users < 2:
        return out
    data = np.ones(len(item_idx), dtype=np.float32)
    m = sp.csr_matrix((data, (item_idx, user_idx)), shape=(n_items, n_users))
    m.data[:] = 1.0  # repeated (item, user) pairs count once
    # Damp heavy users/items (like TF-IDF) so blockbusters do not own every factor.
    item_norm = np.sqrt(np.asarray(m.sum(axis=1)).ravel() + 1.0)
    user_norm = np.sqrt(np.asarray(m.sum(axis=0)).ravel() + 1.0)
    m = sp.diags(1.0 / item_norm) @ m @ sp.diags(1.0 / user_norm)
    k = max(1, min(dim, min(m.shape) - 1))
    u, s, _ = svds(m.astype(np.float64), k=k, random_state=seed)
    factors = (u * np.sqrt(s)).astype(np.float32)
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    nonzero = norms[:, 0] > 1e-9
    out[nonzero, :k] = factors[nonzero] / norms[nonzero]
    return out

import numpy as np
import pandas as pd
import pytest

from interest_service.embeddings import novel_embeddings
from interest_service.transitions import TransitionModel


def _inter(seqs):
    rows = []
    for u, seq in enumerate(seqs):
        for t, item in enumerate(seq):
            rows.append((str(u), str(item), t, 5.0, item))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "weight", "item_idx"])


def test_learns_novel_transitions_and_excludes_history():
    item_clusters = np.array([0, 1, 2, 3])  # item i is in cluster i
    # Users who start in 0 move on to 2; users in 1 move on to 3 (items repeat → no new arrival).
    inter = _inter([[0, 0, 2]] * 5 + [[1, 3]] * 5 + [[3, 3]])
    model = TransitionModel.fit(inter, item_clusters, 4, threshold=4.0, window=3, smoothing=0.01)
    assert model.n_transitions == 10
    assert model.propose([0], exclude={0}, k=1)[0][0] == 2
    assert model.propose([1], exclude={1}, k=1)[0][0] == 3
    top = model.propose([0], exclude={0, 2}, k=3)
    assert 2 not in [c for c, _ in top] and abs(sum(p for _, p in model.propose([0], {0}, 4)) - 1) < 1e-9
    assert model.propose([0], exclude={0, 1, 2, 3}, k=2) == []


def test_balanced_prior_damps_popular_clusters():
    item_clusters = np.array([0, 1, 2])
    inter = _inter([[0, 1]] * 100 + [[0, 2]] * 4)
    model = TransitionModel.fit(inter, item_clusters, 3, threshold=4.0, smoothing=0.0)
    assert model.prior[1] / model.prior[2] == pytest.approx(5.0)  # sqrt(100)/sqrt(4), not 25


def test_embedding_blend():
    rng = np.random.default_rng(0)
    centroids = rng.standard_normal((5, 16)).astype(np.float32)
    user = rng.standard_normal(16).astype(np.float32) * 3
    (c_only,) = novel_embeddings(centroids, user, [2], alpha=1.0)
    (u_only,) = novel_embeddings(centroids, user, [2], alpha=0.0)
    (mid,) = novel_embeddings(centroids, user, [2], alpha=0.5)
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    assert cos(c_only, centroids[2]) > 0.999 and cos(u_only, user) > 0.999
    assert abs(np.linalg.norm(mid) - np.linalg.norm(user)) < 1e-4  # user-embedding scale
    assert cos(mid, centroids[2]) > cos(u_only, centroids[2]) and cos(mid, user) > cos(c_only, user)
    (cold,) = novel_embeddings(centroids, np.zeros(16, np.float32), [1], alpha=0.3)
    assert cos(cold, centroids[1]) > 0.999

"""Per-user time split and full-catalog top-k metrics (no sampled negatives).

For a user u with held-out items T_u and top-k list R_u (ranked over the whole catalog, items of the
user's training history removed when ``exclude_seen``):

    Recall@k(u) = |R_u ∩ T_u| / |T_u|
    NDCG@k(u)   = DCG / IDCG,  DCG = Σ_{r=1..k, R_u[r] ∈ T_u} 1 / log2(r + 1),
                               IDCG = Σ_{r=1..min(k, |T_u|)} 1 / log2(r + 1)

Reported values are means over evaluated users (those with a non-empty T_u).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from serendip.seqmodel.encode import encode_users
from serendip.seqmodel.model import SASRec

MIN_POSITIVES = 3


def time_split(
    sequences: Sequence[np.ndarray], holdout: int = 1
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Hold out the last ``holdout`` items of every user with ≥ max(3, holdout + 2) positives.

    Returns ``(train_sequences, targets)`` aligned with ``sequences``; users too short to split keep
    their whole sequence for training and get an empty target array.
    """
    if holdout < 1:
        raise ValueError("holdout must be >= 1")
    train: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        if len(seq) >= max(MIN_POSITIVES, holdout + 2):
            train.append(seq[:-holdout])
            targets.append(seq[-holdout:])
        else:
            train.append(seq)
            targets.append(np.empty(0, dtype=np.int64))
    return train, targets


def _metrics(top: np.ndarray, targets: Sequence[np.ndarray], k: int) -> dict[str, float]:
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recalls, ndcgs = [], []
    for ranked, target in zip(top, targets, strict=True):
        truth = set(target.tolist())
        hits = np.fromiter((int(i) in truth for i in ranked[:k]), dtype=bool, count=min(k, len(ranked)))
        recalls.append(hits.sum() / len(truth))
        ndcgs.append((discounts[: len(hits)] * hits).sum() / discounts[: min(k, len(truth))].sum())
    n = len(recalls)
    return {
        "recall": float(np.mean(recalls)) if n else 0.0,
        "ndcg": float(np.mean(ndcgs)) if n else 0.0,
        "users": n,
    }


def _top_k(scores: np.ndarray, seen: Sequence[np.ndarray], k: int, exclude_seen: bool) -> np.ndarray:
    """Row-wise top-k item indices of ``scores`` [B, n_items], best first."""
    scores = scores.copy()
    if exclude_seen:
        for row, items in enumerate(seen):
            scores[row, items] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _evaluated(train_sequences: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> list[int]:
    if len(train_sequences) != len(targets):
        raise ValueError("train_sequences and targets must be aligned")
    return [u for u, t in enumerate(targets) if len(t)]


def evaluate_model(
    model: SASRec,
    train_sequences: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    k: int = 10,
    exclude_seen: bool = True,
    batch_size: int = 512,
) -> dict[str, float]:
    """Recall@k / NDCG@k of ``encode(history) @ item_embeddings().T`` over the full catalog."""
    users = _evaluated(train_sequences, targets)
    with torch.inference_mode():
        table = model.item_embeddings().detach().numpy()
    tops = []
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        histories = [train_sequences[u] for u in batch]
        scores = encode_users(model, histories) @ table.T
        tops.append(_top_k(scores, histories, k, exclude_seen))
    top = np.concatenate(tops) if tops else np.zeros((0, k), dtype=np.int64)
    return _metrics(top, [targets[u] for u in users], k)


def evaluate_popularity(
    train_sequences: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    n_items: int,
    k: int = 10,
    exclude_seen: bool = True,
) -> dict[str, float]:
    """Same protocol for the most-popular baseline (positive counts in ``train_sequences``)."""
    users = _evaluated(train_sequences, targets)
    counts = np.zeros(n_items, dtype=np.float64)
    for seq in train_sequences:
        np.add.at(counts, np.asarray(seq, dtype=np.int64), 1.0)
    # Tiny index-based tie-break keeps the ranking deterministic.
    counts -= np.arange(n_items) * 1e-9
    tops = []
    for start in range(0, len(users), 512):
        batch = users[start : start + 512]
        scores = np.broadcast_to(counts, (len(batch), n_items))
        tops.append(_top_k(scores, [train_sequences[u] for u in batch], k, exclude_seen))
    top = np.concatenate(tops) if tops else np.zeros((0, k), dtype=np.int64)
    return _metrics(top, [targets[u] for u in users], k)

"""Fallback proposer: P(new cluster | recent clusters), learned from the interactions.

From each user's chronological positives we count *novel transitions*: when a positive item falls
in a cluster the user had never engaged with, every distinct cluster among their few preceding
positives "led to" that new cluster. Rows are normalised per source cluster, so a user's score for a
candidate is the mean over their recent clusters of P(candidate | recent cluster), mixed with a small
prior. The prior is the *balanced* novel-arrival rate (square-rooted counts) so that popular clusters
do not win every fallback — the same balancing the paper applies to its fine-tuning data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class TransitionModel:
    probs: np.ndarray  # [C, C] row-stochastic: P(new | from)
    prior: np.ndarray  # [C] balanced novel-arrival distribution
    prior_weight: float = 0.2
    n_transitions: int = 0

    @classmethod
    def fit(
        cls,
        interactions: pd.DataFrame,
        item_clusters: np.ndarray,
        n_clusters: int,
        threshold: float,
        window: int = 5,
        smoothing: float = 0.1,
        prior_weight: float = 0.2,
    ) -> TransitionModel:
        counts = np.zeros((n_clusters, n_clusters), dtype=np.float64)
        arrivals = np.zeros(n_clusters, dtype=np.float64)
        pos = interactions[interactions["weight"] >= threshold]
        pos = pos.sort_values(["user_id", "timestamp"], kind="stable")
        n = 0
        for _, idx in pos.groupby("user_id", sort=False)["item_idx"]:
            seq = item_clusters[idx.to_numpy(dtype=np.int64)]
            seen: set[int] = set()
            recent: list[int] = []
            for c in seq.tolist():
                if c not in seen and recent:
                    for src in set(recent[-window:]):
                        counts[src, c] += 1.0
                    arrivals[c] += 1.0
                    n += 1
                seen.add(c)
                recent.append(c)
        counts += smoothing
        np.fill_diagonal(counts, 0.0)  # a cluster is never "new" after itself
        sums = counts.sum(axis=1, keepdims=True)
        # A cluster nobody left for another (possible without smoothing) contributes nothing.
        probs = np.divide(counts, sums, out=np.zeros_like(counts), where=sums > 0)
        balanced = np.sqrt(arrivals) + smoothing
        prior = balanced / balanced.sum()
        return cls(probs=probs, prior=prior, prior_weight=prior_weight, n_transitions=n)

    def scores(self, recent_clusters: Sequence[int]) -> np.ndarray:
        if recent_clusters:
            cond = self.probs[np.asarray(recent_clusters, dtype=np.int64)].mean(axis=0)
        else:
            cond = self.prior
        return (1.0 - self.prior_weight) * cond + self.prior_weight * self.prior

    def propose(self, recent_clusters: Sequence[int], exclude: set[int], k: int) -> list[tuple[int, float]]:
        """Top-k new clusters with their probability (renormalised over the allowed clusters)."""
        s = self.scores(recent_clusters).copy()
        if exclude:
            s[np.fromiter(exclude, dtype=np.int64)] = 0.0
        total = s.sum()
        if total <= 0:
            return []
        s /= total
        order = np.argsort(-s, kind="stable")[:k]
        return [(int(c), float(s[c])) for c in order if s[c] > 0]

"""Interest proposers: given a user's history, rank clusters the user has not explored.

The protocol is all ``serendip eval`` needs; the dataset-agnostic baselines live here, the ones that
need the interest service (transition model, LLMs) are implemented there
(``interest_service/evaluation.py``), since the core never imports a service.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from serendip.eval import metrics as M
from serendip.eval.replay import EvalUser


class Proposer(Protocol):
    name: str

    def propose(self, users: Sequence[EvalUser], m: int) -> list[list[int]]:
        """Per user (same order), up to ``m`` distinct clusters outside ``user.clusters``, best first."""
        ...


@dataclass
class RandomNewCluster:
    n_clusters: int
    seed: int = 0
    name: str = "random new cluster"

    def propose(self, users: Sequence[EvalUser], m: int) -> list[list[int]]:
        rng = np.random.default_rng(self.seed)
        out = []
        for u in users:
            allowed = np.setdiff1d(np.arange(self.n_clusters), np.fromiter(u.clusters, dtype=np.int64))
            out.append(rng.permutation(allowed)[:m].tolist())
        return out


@dataclass
class PopularNewCluster:
    """Clusters ranked by history-period positive engagements (sum of their items' popularity)."""

    cluster_popularity: np.ndarray
    name: str = "most popular new cluster"

    @classmethod
    def from_items(
        cls, popularity: np.ndarray, item_clusters: np.ndarray, n_clusters: int
    ) -> PopularNewCluster:
        return cls(np.bincount(item_clusters, weights=popularity, minlength=n_clusters))

    def propose(self, users: Sequence[EvalUser], m: int) -> list[list[int]]:
        order = np.lexsort((np.arange(len(self.cluster_popularity)), -self.cluster_popularity)).tolist()
        out = []
        for u in users:
            out.append([c for c in order if c not in u.clusters][:m])
        return out


@dataclass
class HitScores:
    name: str
    users: int  # users with at least one novel future cluster (the only ones a hit is possible for)
    hits: dict[int, float]  # m → hit rate
    intervals: dict[int, tuple[float, float]]  # m → 95 % Wilson interval
    invalid: int = 0  # proposals that named an explored or unknown cluster (dropped before scoring)
    note: str = ""


def score_proposals(
    name: str,
    proposals: Sequence[Sequence[int]],
    users: Sequence[EvalUser],
    ms: Sequence[int],
    n_clusters: int,
) -> HitScores:
    """hit@m over users with a novel future cluster; invalid picks are dropped, not counted as hits."""
    invalid = 0
    hits = {m: 0.0 for m in ms}
    n = 0
    for u, picks in zip(users, proposals, strict=True):
        valid = [c for c in picks if 0 <= c < n_clusters and c not in u.clusters]
        invalid += len(picks) - len(valid)
        if not u.novel_clusters:
            continue
        n += 1
        for m in ms:
            hits[m] += M.hit_at_m(valid, u.novel_clusters, m)
    return HitScores(
        name,
        n,
        {m: hits[m] / n if n else 0.0 for m in ms},
        {m: M.wilson_interval(hits[m], n) for m in ms},
        invalid,
    )

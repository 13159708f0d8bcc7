"""Offline replay of the item-level systems on the history bundle, scored on the future period.

Systems (every list is k long, history-period items never recommended):

* **relevance** — the sequence model alone: top-k of ``encode(history) · item_table``.
* **popularity** — most positives in the history period; also the *primitive* recommender that
  serendipity and unexpectedness are measured against.
* **Serendip(r)** — what the retrieval service serves: ``round(k · r)`` exploration slots filled
  round robin from the proposed novel clusters (each searched only inside that cluster with the
  steering vector below), interleaved with the relevance list by ``serendip.ranking.assemble``.
* **MMR(λ)** — maximal marginal relevance re-ranking of the top relevance candidates (Carbonell &
  Goldstein 1998): greedily add argmax_i λ·rel(i) − (1−λ)·max_{j chosen} cos(v_i, v_j), with rel
  the min-max normalised model score over the candidate pool. The diversity baseline.

Steering vector for a novel cluster c and user vector u (the same vector the interest service stores,
``interest_service/embeddings.py``, combined as the retrieval service does):
``q = w · unit(α·unit(centroid_c) + (1−α)·unit(u)) + (1−w) · unit(u)``, α = centroid weight (0.6),
w = novel query weight (0.7). Cluster-restricted search is exact here (numpy over the cluster's
members), as FAISS ``search_preassigned`` is over the cluster's list.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from serendip.eval import metrics as M
from serendip.ranking import assemble, novel_slot_count

RELEVANCE, NOVEL, FALLBACK = 0, 1, 2


@dataclass
class EvalUser:
    user_id: str
    history: np.ndarray  # history-period positives, oldest first (item indices)
    seen: np.ndarray  # every history-period item of the user: never recommended
    clusters: set[int]  # clusters of the history positives: the user's explored interests
    future: set[int]  # future-period positives: what counts as relevant
    novel_clusters: set[int]  # clusters of the future positives outside ``clusters``

    @property
    def recent_first(self) -> list[int]:
        return self.history[::-1].tolist()


def build_users(
    history: pd.DataFrame,
    future: pd.DataFrame,
    item_index: dict[str, int],
    item_clusters: np.ndarray,
    threshold: float,
) -> list[EvalUser]:
    """Users with at least one positive in each period (the only ones a hit or a recall can score)."""
    hist = history.assign(item_idx=history["item_id"].map(item_index)).dropna(subset=["item_idx"])
    fut = future.assign(item_idx=future["item_id"].map(item_index)).dropna(subset=["item_idx"])
    seen_by_user = {u: g["item_idx"].to_numpy(np.int64) for u, g in hist.groupby("user_id", sort=False)}
    hist_pos = hist[hist["weight"] >= threshold].sort_values(["user_id", "timestamp"], kind="stable")
    fut_pos = fut[fut["weight"] >= threshold]
    future_by_user = {u: set(g["item_idx"].astype(np.int64).tolist()) for u, g in fut_pos.groupby("user_id")}
    users = []
    for user, g in hist_pos.groupby("user_id", sort=True):
        items = g["item_idx"].to_numpy(np.int64)
        target = future_by_user.get(user)
        if not target:
            continue
        clusters = {int(c) for c in item_clusters[items]}
        future_clusters = {int(item_clusters[i]) for i in target}
        users.append(
            EvalUser(str(user), items, seen_by_user[user], clusters, target, future_clusters - clusters)
        )
    return users


def item_user_counts(
    history: pd.DataFrame, item_index: dict[str, int], n_items: int
) -> tuple[np.ndarray, int]:
    """Distinct users per item in the history period, and the number of users (novelty's pop(i), N)."""
    pairs = history[["user_id", "item_id"]].drop_duplicates()
    idx = pairs["item_id"].map(item_index).dropna().to_numpy(np.int64)
    return np.bincount(idx, minlength=n_items), int(history["user_id"].nunique())


def steering_query(centroid: np.ndarray, user_unit: np.ndarray, alpha: float, weight: float) -> np.ndarray:
    c = centroid / max(float(np.linalg.norm(centroid)), 1e-12)
    d = alpha * c + (1.0 - alpha) * user_unit
    d = d / max(float(np.linalg.norm(d)), 1e-12)
    return weight * d + (1.0 - weight) * user_unit


@dataclass
class Lists:
    """One system's top-k lists, aligned with the users."""

    name: str
    lists: list[list[int]]


class Replay:
    def __init__(
        self,
        model,  # serendip.seqmodel.SASRec
        item_clusters: np.ndarray,
        centroids: np.ndarray,
        popularity: np.ndarray,
        users: Sequence[EvalUser],
        k: int = 10,
        pool: int = 100,
        centroid_weight: float = 0.6,
        query_weight: float = 0.7,
    ) -> None:
        from serendip.seqmodel import encode_users

        self.k = k
        self.users = list(users)
        self.item_emb = model.item_embeddings().detach().numpy().astype(np.float32)
        self.item_clusters = np.asarray(item_clusters, dtype=np.int64)
        self.centroids = centroids
        self.alpha, self.weight = centroid_weight, query_weight
        self.members = [np.flatnonzero(self.item_clusters == c) for c in range(len(centroids))]
        self.unit_items = M.unit_rows(self.item_emb)
        n_items = len(self.item_emb)
        self.user_emb = (
            encode_users(model, [u.history for u in self.users])
            if self.users
            else np.zeros((0, self.item_emb.shape[1]), np.float32)
        )
        self.user_unit = M.unit_rows(self.user_emb)
        # The relevance pool: top ``pool`` unseen items per user, best first.
        self.pool: list[tuple[np.ndarray, np.ndarray]] = []
        for start in range(0, len(self.users), 256):
            scores = self.user_emb[start : start + 256] @ self.item_emb.T
            for row, u in enumerate(self.users[start : start + 256]):
                s = scores[row]
                s[u.seen] = -np.inf
                n = min(pool, n_items - len(u.seen))
                top = np.argpartition(-s, n - 1)[:n]
                top = top[np.argsort(-s[top], kind="stable")]
                self.pool.append((top, s[top]))
        order = np.lexsort((np.arange(n_items), -popularity))  # most popular first, ties by index
        self.popular_order = order
        self.popular = Lists("popularity", [self._popular_for(u, k) for u in self.users])

    def _popular_for(self, u: EvalUser, n: int) -> list[int]:
        seen = set(u.seen.tolist())
        out = []
        for i in self.popular_order:
            if int(i) not in seen:
                out.append(int(i))
                if len(out) == n:
                    break
        return out

    def relevance(self) -> Lists:
        return Lists("relevance-only", [top[: self.k].tolist() for top, _ in self.pool])

    def _novel_candidates(self, row: int, cluster: int) -> Iterator[tuple[int, float]]:
        members = self.members[cluster]
        q = steering_query(self.centroids[cluster], self.user_unit[row], self.alpha, self.weight)
        scores = self.item_emb[members] @ q
        order = np.argsort(-scores, kind="stable")
        return ((int(members[j]), float(scores[j])) for j in order)

    def serendip(self, proposals: Sequence[Sequence[int]], ratio: float, name: str) -> Lists:
        """The retrieval service's list with ``proposals[u]`` as the user's novel clusters."""
        if len(proposals) != len(self.users):
            raise ValueError("proposals must be aligned with the users")
        slots = novel_slot_count(self.k, ratio)
        out = []
        for row, (u, clusters) in enumerate(zip(self.users, proposals, strict=True)):
            top, scores = self.pool[row]
            novel = [self._novel_candidates(row, c) for c in clusters] if slots and clusters else []
            fallback = ((i, 0.0) for i in self.popular_order.tolist())
            ranked = assemble(
                self.k,
                slots if novel else 0,
                novel,
                zip(top.tolist(), scores.tolist(), strict=True),
                RELEVANCE,
                fallback,
                set(u.seen.tolist()),
                novel_source=NOVEL,
                fallback_source=FALLBACK,
            )
            out.append([i for i, _, _ in ranked])
        return Lists(name, out)

    def mmr(self, lam: float, candidates: int = 50) -> Lists:
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"MMR lambda must be in [0, 1], got {lam}")
        out = []
        for top, scores in self.pool:
            cand, s = top[:candidates], scores[:candidates].astype(np.float64)
            span = s.max() - s.min()
            rel = (s - s.min()) / span if span > 0 else np.ones_like(s)
            sims = self.unit_items[cand] @ self.unit_items[cand].T
            chosen: list[int] = []
            max_sim = np.full(len(cand), -np.inf)
            free = np.ones(len(cand), dtype=bool)
            for _ in range(min(self.k, len(cand))):
                penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
                value = np.where(free, lam * rel - (1.0 - lam) * penalty, -np.inf)
                j = int(np.argmax(value))
                chosen.append(j)
                free[j] = False
                max_sim = np.maximum(max_sim, sims[j])
            out.append(cand[chosen].tolist())
        return Lists(f"MMR (λ={lam:g})", out)


@dataclass
class ItemScores:
    name: str
    users: int
    values: dict[str, float]  # metric name → mean over users
    per_user: dict[str, np.ndarray]


ITEM_METRICS = (
    "recall",
    "ndcg",
    "serendipity",
    "unexpectedness",
    "novelty",
    "ild",
    "new_cluster_share",
    "coverage",
)


def score_lists(
    lists: Lists,
    users: Sequence[EvalUser],
    primitive: Lists,
    item_users: np.ndarray,
    n_history_users: int,
    unit_vectors: np.ndarray,
    item_clusters: np.ndarray,
    k: int,
) -> ItemScores:
    per_user: dict[str, list[float]] = {m: [] for m in ITEM_METRICS if m != "coverage"}
    for u, ranked, pm in zip(users, lists.lists, primitive.lists, strict=True):
        pm_set = set(pm)
        per_user["recall"].append(M.recall_at_k(ranked, u.future, k))
        per_user["ndcg"].append(M.ndcg_at_k(ranked, u.future, k))
        per_user["serendipity"].append(M.serendipity_at_k(ranked, u.future, pm_set, k))
        per_user["unexpectedness"].append(M.unexpectedness_at_k(ranked, pm_set, k))
        per_user["novelty"].append(M.novelty_at_k(ranked, item_users, n_history_users, k))
        per_user["ild"].append(M.intra_list_diversity(ranked, unit_vectors, k))
        per_user["new_cluster_share"].append(M.new_cluster_share(ranked, item_clusters, u.clusters, k))
    arrays = {m: np.asarray(v, dtype=np.float64) for m, v in per_user.items()}
    values = {m: float(a.mean()) if len(a) else 0.0 for m, a in arrays.items()}
    values["coverage"] = M.catalog_coverage(lists.lists, len(unit_vectors), k)
    return ItemScores(lists.name, len(users), values, arrays)

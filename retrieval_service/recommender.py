"""The hot path for one micro-batch: Redis read → records → encode → search → rank → protobuf.

Every stage runs once per batch (one Redis round trip, one model call, one FAISS call per search
kind), which is what keeps the per-request cost low under concurrency. A batch never runs on the
event loop: grpc.aio accepts each new call through event-loop turns, so a loop blocked for a
millisecond per batch would starve the accept loop and batches would never grow (measured: batch
size 1.2 and ~450 RPS at 32 clients with inline compute). It runs in a compute worker process
(worker_pool.py), or with ``workers = 0`` on a thread of the server process (compute.py).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from time import perf_counter

import numpy as np

from retrieval_service.config import RetrievalConfig
from retrieval_service.metrics import RetrievalMetrics
from retrieval_service.ranking import (
    COLD_START,
    NOVEL,
    RELEVANCE,
    Candidate,
    Ranked,
    assemble,
    novel_slot_count,
)
from retrieval_service.records import CORRUPT, STORE_UNAVAILABLE, UsableInterest, interpret_record
from retrieval_service.serving_bundle import ServingBundle
from retrieval_service.store import StoredUser, UserStore
from retrieval_service.validation import Query
from serendip.api.retrieval.v1 import retrieval_pb2 as pb


def limit_faiss_threads(threads: int) -> None:
    """Call on every thread that searches. FAISS sizes its OpenMP teams from the calling thread's
    own setting, which a new thread takes from the defaults (all cores), not from the main thread.
    Unset on the compute thread, every search started a team whose idle members spin: 1.25 → 0.65 ms
    of CPU per call at 32 clients (measured, 2 cores). torch is not touched here: its thread count
    is process-wide (serve-retrieval sets it).
    """
    import faiss

    faiss.omp_set_num_threads(threads)
    # Coarse quantizers compare a batch's queries with every list centroid; below this many queries
    # FAISS uses a per-query loop instead of one BLAS call (default 20 — our micro-batches are
    # ~1-32): at 4,000 lists and 16 queries BLAS is ~3× faster. Process-wide, set once here.
    faiss.cvar.distance_compute_blas_threshold = 1


# Relevance searches ask for k + this many candidates, not k + every blocked item (see
# _search_relevance): most users' top results hold only a few of their history items.
RELEVANCE_BLOCKED_MARGIN = 16


class BundleHolder:
    """The bundle being served. Readers take ``current`` once per batch; a reload replaces it."""

    def __init__(self, bundle: ServingBundle) -> None:
        self.current = bundle


@dataclass
class Recommendation:
    items: list[Ranked]
    interests: list[UsableInterest]
    record_status: int
    bundle: ServingBundle  # the one the item indices refer to
    novel_slots: int
    unknown_recent_items: int


@dataclass
class _User:
    query: Query
    status: int
    interests: list[UsableInterest]
    history: list[int]  # internal indices, most recent first
    blocked: set[int]
    unknown_recent: int
    novel_slots: int
    embedding_row: int = -1  # row in the batch's user embeddings; -1: no history (cold start)


class Recommender:
    def __init__(
        self, store: UserStore, bundles: BundleHolder, cfg: RetrievalConfig, metrics: RetrievalMetrics
    ) -> None:
        self.store = store
        self.bundles = bundles
        self.cfg = cfg
        self.metrics = metrics

    def close(self) -> None:
        self.store.close()

    def respond(self, queries: list[Query]) -> list[pb.RecommendResponse]:
        """The whole batch, on one compute thread: a micro-batcher thread in the server process, or a
        compute worker process's main thread. One batch at a time per recommender."""
        sb = self.bundles.current  # one bundle for the whole batch, whatever a reload does meanwhile
        t0 = perf_counter()
        stored = self.store.read([q.user_id for q in queries])
        self.metrics.stage["store"].observe(perf_counter() - t0)
        self.metrics.batch_size.observe(len(queries))
        return [to_response(r) for r in self.compute(sb, queries, stored)]

    def compute(
        self, sb: ServingBundle, queries: list[Query], stored: list[StoredUser] | None
    ) -> list[Recommendation]:
        now_ms = int(time.time() * 1000)
        if stored is None:
            users = [self._prepare(sb, q, None, [], now_ms) for q in queries]
        else:
            histories = stored_histories(sb, stored)
            users = [
                self._prepare(sb, q, s, h, now_ms) for q, s, h in zip(queries, stored, histories, strict=True)
            ]

        t0 = perf_counter()
        with_history = [u for u in users if u.history]
        for row, u in enumerate(with_history):
            u.embedding_row = row
        if with_history:
            # The encoder wants oldest first and keeps the newest model.max_len itself.
            user_emb = sb.encoder.encode([u.history[::-1] for u in with_history])
        else:
            user_emb = np.zeros((0, sb.dim), dtype=np.float32)
        t1 = perf_counter()
        self.metrics.stage["encode"].observe(t1 - t0)

        relevance = self._search_relevance(sb, with_history, user_emb)
        novel = self._search_novel(sb, users, user_emb)
        t2 = perf_counter()
        self.metrics.stage["search"].observe(t2 - t1)

        cold = sb.cold_start
        lists = []
        for n, u in enumerate(users):
            if u.embedding_row >= 0:
                primary, source = relevance[u.embedding_row], RELEVANCE
            else:
                primary, source = iter(cold), COLD_START
            lists.append(assemble(u.query.k, u.novel_slots, novel[n], primary, source, cold, u.blocked))
        self._count(users, lists)
        out = [
            Recommendation(items, u.interests, u.status, sb, u.novel_slots, u.unknown_recent)
            for u, items in zip(users, lists, strict=True)
        ]
        self.metrics.stage["rank"].observe(perf_counter() - t2)
        return out

    def _prepare(
        self, sb: ServingBundle, q: Query, stored: StoredUser | None, stored_idx: list[int], now_ms: int
    ) -> _User:
        if stored is None:
            status, interests = STORE_UNAVAILABLE, []
        elif stored.record_unreadable:
            status, interests = CORRUPT, []
        else:
            status, interests = interpret_record(stored.record, sb, now_ms)
        get = sb.item_index.get
        # Unknown ids are ignored (documented: an item newer than the bundle, or a typo).
        history = [i for i in map(get, q.recent_item_ids) if i is not None]
        unknown = len(q.recent_item_ids) - len(history)
        if history:
            # The frontend's view and the stored list overlap once the event pipeline catches up:
            # an item already in the request is not read twice.
            fresh = set(history)
            history.extend(i for i in stored_idx if i not in fresh)
        else:
            history = stored_idx
        blocked = set(history)
        if q.exclude_item_ids:
            blocked.update(i for i in map(get, q.exclude_item_ids) if i is not None)
        slots = novel_slot_count(q.k, q.exploration_ratio) if interests else 0
        return _User(q, status, interests, history, blocked, unknown, slots)

    def _search_relevance(
        self, sb: ServingBundle, users: list[_User], user_emb: np.ndarray
    ) -> list[Iterator[Candidate]]:
        if not users:
            return []
        # Each blocked item can hide at most one candidate, so k + |blocked| always suffices — but
        # a history of 50 would make every search 6× wider than k = 10, and the shortlist, its
        # rescoring and the heap grow with it. Search k + a margin; the rare user whose blocked
        # items take more than the margin from that list is searched again at full width.
        n = sb.n_items
        wide = [min(n, u.query.k + len(u.blocked)) for u in users]
        narrow = [min(n, u.query.k + min(len(u.blocked), RELEVANCE_BLOCKED_MARGIN)) for u in users]
        ids, scores = self._relevance_lists(sb, user_emb, max(narrow))
        again = [
            r
            for r, u in enumerate(users)
            if wide[r] > narrow[r] and _unblocked(ids[r], u.blocked) < u.query.k
        ]
        if again:
            more_ids, more_scores = self._relevance_lists(sb, user_emb[again], max(wide[r] for r in again))
            for j, r in enumerate(again):
                ids[r], scores[r] = more_ids[j], more_scores[j]
        return [_candidates(i, s) for i, s in zip(ids, scores, strict=True)]

    def _relevance_lists(
        self, sb: ServingBundle, user_emb: np.ndarray, k: int
    ) -> tuple[list[list[int]], list[list[float]]]:
        k = min(sb.n_items, k)
        if sb.relevance is None:
            scores, ids = sb.index.search(user_emb, k, nprobe=self.cfg.relevance_nprobe)
        else:
            scores, ids = sb.relevance.search(
                user_emb, k, nprobe=self.cfg.relevance_nprobe, refine=self.cfg.relevance_refine
            )
        return ids.tolist(), scores.tolist()

    def _search_novel(
        self, sb: ServingBundle, users: list[_User], user_emb: np.ndarray
    ) -> list[list[Iterator[Candidate]]]:
        """Per user, one candidate list per novel interest that can matter, each searched only
        inside its cluster.

        Round robin takes one item per interest before any second, so n novel slots draw on the
        first n interests only, unless one of their clusters runs out (fewer unblocked items than
        slots; novel lists share no items, their clusters being distinct). The later interests are
        searched only then: the lists assembled are the ones searching every interest would give,
        for 2/3 of the searches at the defaults (3 interests, 2 slots).
        """
        first = [u.interests[: u.novel_slots] for u in users]
        per_user, short = self._search_interests(sb, users, first, user_emb)
        if short:
            rest = [u.interests[u.novel_slots :] if n in short else [] for n, u in enumerate(users)]
            more, _ = self._search_interests(sb, users, rest, user_emb)
            for n in short:
                per_user[n].extend(more[n])
        return per_user

    def _search_interests(
        self,
        sb: ServingBundle,
        users: list[_User],
        interests: list[list[UsableInterest]],
        user_emb: np.ndarray,
    ) -> tuple[list[list[Iterator[Candidate]]], set[int]]:
        """One restricted search for every (user, interest) given; also the users for whom some
        cluster returned fewer candidates than asked for (it has no more items)."""
        w = self.cfg.novel_query_weight
        steered = [u for u, wanted in zip(users, interests, strict=True) if wanted]
        # A search inside cluster c can only lose the blocked items that are in c (for a novel
        # cluster usually none: only exclusions), so k stays ~slots, not slots + |history|: FAISS
        # keeps a k-heap per query, and k = 3 instead of 32 halves this search's cost. The blocked
        # items' clusters come from one gather for the whole batch.
        n_blocked = sum(len(u.blocked) for u in steered)
        blocked = np.fromiter(chain.from_iterable(u.blocked for u in steered), np.int64, n_blocked)
        blocked_clusters = sb.item_cluster_array[blocked].tolist()
        vectors, clusters, owners, user_rows, ks = [], [], [], [], []
        start = 0
        for n, (u, wanted) in enumerate(zip(users, interests, strict=True)):
            if not wanted:
                continue
            end = start + len(u.blocked)
            wanted_clusters = {i.cluster_id for i in wanted}
            blocked_in = Counter(c for c in blocked_clusters[start:end] if c in wanted_clusters)
            start = end
            for interest in wanted:
                vectors.append(interest.direction)
                clusters.append(interest.cluster_id)
                owners.append(n)
                user_rows.append(u.embedding_row)
                ks.append(u.novel_slots + blocked_in[interest.cluster_id])
        per_user: list[list[Iterator[Candidate]]] = [[] for _ in users]
        short: set[int] = set()
        if not vectors:
            return per_user, short
        cluster_ids = np.asarray(clusters, dtype=np.int64)
        queries = steering_queries(
            np.stack(vectors), cluster_ids, np.asarray(user_rows), user_emb, sb.unit_centroids, w
        )
        k = min(sb.n_items, max(ks))
        scores, ids = sb.index.search_clusters(queries, k, cluster_ids.reshape(-1, 1))
        for n, want, row_ids, row_scores in zip(owners, ks, ids.tolist(), scores.tolist(), strict=True):
            per_user[n].append(_candidates(row_ids, row_scores))
            if want > k or row_ids[want - 1] < 0:  # FAISS pads a short result with -1
                short.add(n)
        return per_user, short

    def _count(self, users: list[_User], lists: list[list[Ranked]]) -> None:
        """Metrics for the batch: summed first, one increment per series (each costs a lock)."""
        m = self.metrics
        statuses: dict[int, int] = {}
        by_source = {RELEVANCE: 0, NOVEL: 0, COLD_START: 0}
        slots = filled = 0
        for u, items in zip(users, lists, strict=True):
            statuses[u.status] = statuses.get(u.status, 0) + 1
            novel = 0
            for _, _, source in items:
                by_source[source] += 1
                novel += source == NOVEL
            if u.novel_slots:
                slots += u.novel_slots
                filled += novel
                m.fill_ratio.observe(novel / u.novel_slots)
        for status, count in statuses.items():
            m.record_status[status].inc(count)
        for source, count in by_source.items():
            if count:
                m.items[source].inc(count)
        if slots:
            m.novel_slots.inc(slots)
            m.novel_filled.inc(filled)


def to_response(rec: Recommendation) -> pb.RecommendResponse:
    sb = rec.bundle
    resp = pb.RecommendResponse(
        record_status=rec.record_status,
        bundle_id=sb.bundle_id,
        novel_slots=rec.novel_slots,
        unknown_recent_items=rec.unknown_recent_items,
    )
    ids, titles, clusters, labels = sb.item_ids, sb.titles, sb.item_clusters, sb.cluster_labels
    add = resp.items.add  # in place: ~40 % cheaper than building the messages and then the list
    for i, score, source in rec.items:
        c = clusters[i]
        add(
            item_id=ids[i], score=score, source=source, cluster_id=c, cluster_label=labels[c], title=titles[i]
        )
    if rec.novel_slots:  # only interests that had slots were used for this list
        for n in rec.interests:
            resp.novel_interests.add(
                cluster_id=n.cluster_id, label=n.label, rationale=n.rationale, score=n.score
            )
    return resp


def steering_queries(
    directions: np.ndarray,
    cluster_ids: np.ndarray,
    user_rows: np.ndarray,
    user_emb: np.ndarray,
    unit_centroids: np.ndarray,
    weight: float,
) -> np.ndarray:
    """One query per novel interest: ``weight · unit(direction) + (1 - weight) · unit(user)``.

    A zero direction steers with its cluster's centroid; a user without history (row -1) or with a
    zero embedding is steered by the interest alone. The whole batch in a few numpy calls.
    """
    norms = np.linalg.norm(directions, axis=1, keepdims=True)
    zero = norms[:, 0] == 0
    if zero.any():
        directions = directions.copy()
        directions[zero], norms[zero] = unit_centroids[cluster_ids[zero]], 1.0
    queries = directions / norms
    if weight >= 1.0 or not len(user_emb):
        return np.ascontiguousarray(queries, dtype=np.float32)
    users = user_emb[np.maximum(user_rows, 0)]
    user_norms = np.linalg.norm(users, axis=1, keepdims=True)
    steer = (user_rows >= 0)[:, None] & (user_norms > 0)
    mixed = weight * queries + (1 - weight) * users / np.where(user_norms > 0, user_norms, 1.0)
    return np.ascontiguousarray(np.where(steer, mixed, queries), dtype=np.float32)


def stored_histories(sb: ServingBundle, stored: list[StoredUser]) -> list[list[int]]:
    """Each user's stored history as internal indices (most recent first), in one lookup for the
    whole batch. Ids the bundle does not know (newer items, bytes we did not write) are dropped."""
    keys = [h for s in stored for h in s.history]
    if not keys:
        return [[] for _ in stored]
    found = sb.stored_id_index.get_indexer(keys).tolist()
    out, start = [], 0
    for s in stored:
        end = start + len(s.history)
        out.append([i for i in found[start:end] if i >= 0])
        start = end
    return out


def _unblocked(ids: list[int], blocked: set[int]) -> int:
    return sum(1 for i in ids if i >= 0 and i not in blocked)


def _candidates(ids: list[int], scores: list[float]) -> Iterator[Candidate]:
    """(item, score) best first; FAISS pads short results with id -1."""
    return ((i, s) for i, s in zip(ids, scores, strict=True) if i >= 0)

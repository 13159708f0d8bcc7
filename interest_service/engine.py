"""Users → prompts → LLM → validated picks (+ fallback) → embeddings → records.

The engine holds what one bundle needs (catalog, prompt builder, fallback model, user encoder) and
turns a batch of users into written records. ``refresh.py`` drives it over many users with
checkpoints; the gRPC server calls it for a few users on demand.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import redis

from interest_service import metrics
from interest_service.answer import AnswerError, ValidPick, parse_proposal, validate_picks
from interest_service.backends.base import Backend, GenRequest, GenResult
from interest_service.catalog import Catalog, UserContext
from interest_service.config import InterestConfig
from interest_service.embeddings import novel_embeddings
from interest_service.images import ImagePolicy
from interest_service.prompt import ItemDescriber, PromptBuilder
from interest_service.records import RecordWriter
from interest_service.transitions import TransitionModel
from interest_service.tuples import TupleTable
from serendip.bundle import Bundle
from serendip.store import Interest, Record
from serendip.store.record import ProposalSource

log = logging.getLogger(__name__)


@dataclass
class Proposal:
    user: UserContext
    picks: list[tuple[int, str, float, str]]  # (cluster_id, label, score, rationale)
    source: int
    error: str | None = None  # why the LLM answer was not used, when it was not


@dataclass
class BatchReport:
    outcomes: Counter[str] = field(default_factory=Counter)  # refreshed/tuple/fallback/kept/failed
    dropped: Counter[str] = field(default_factory=Counter)
    tokens: int = 0
    record_bytes: list[int] = field(default_factory=list)


class InterestEngine:
    def __init__(self, cfg: InterestConfig, bundle: Bundle, backend: Backend, client: redis.Redis):
        self.cfg = cfg
        self.bundle = bundle
        self.backend = backend
        self.client = client
        self.catalog = Catalog.from_bundle(bundle)
        self.images = ImagePolicy(cfg.images)
        state = cfg.refresh.state_dir
        self.describer = ItemDescriber(
            backend,
            self.catalog,
            cfg.prompt,
            self.images,
            cache_path=state / f"descriptions-{bundle.bundle_id}.json",
        )
        transport_url = cfg.backend == "openai" and cfg.openai.image_transport == "url"
        self.builder = PromptBuilder(
            self.catalog,
            cfg.prompt,
            self.images,
            self.describer,
            with_images=backend.supports_images,
            url_transport=transport_url,
        )
        self.writer = RecordWriter(client, cfg.redis_prefix, cfg.record)
        self.tuples: TupleTable | None = None

    @cached_property
    def transitions(self) -> TransitionModel:
        return TransitionModel.fit(
            self.bundle.interactions,
            self.catalog.item_clusters,
            self.catalog.n_clusters,
            self.cfg.positive_threshold,
            window=self.cfg.refresh.transition_recent,
        )

    @property
    def m(self) -> int:
        return self.cfg.prompt.n_interests

    # -- proposing ------------------------------------------------------------------------------
    def propose(self, users: list[UserContext], report: BatchReport) -> list[Proposal]:
        """One proposal per user: tuple table where it covers them, else the LLM; fallback fills in."""
        results: dict[str, GenResult] = {}
        from_tuple: dict[str, list[ValidPick]] = {}
        llm_users = []
        for u in users:
            picks = self.tuples.lookup(u, self.catalog) if self.tuples is not None else None
            if picks is not None:
                from_tuple[u.user_id] = picks[: self.m]
            else:
                llm_users.append(u)
        if llm_users:
            self.builder.prepare(llm_users)
            requests = [self.builder.build(u) for u in llm_users]
            t0 = time.perf_counter()
            for r in self.backend.generate(requests):
                results[r.key] = r
                report.tokens += r.completion_tokens
            per_user = (time.perf_counter() - t0) / len(llm_users)
            for _ in llm_users:
                metrics.USER_LATENCY.observe(per_user)
        proposals = []
        for u in users:
            if u.user_id in from_tuple:
                proposals.append(
                    self._complete(u, from_tuple[u.user_id], ProposalSource.PROPOSAL_SOURCE_LLM_TUPLE)
                )
                continue
            res = results[u.user_id]
            try:
                if not res.ok:
                    raise AnswerError(res.error or "no answer")
                answer = parse_proposal(res.text)
                picks, dropped = validate_picks(answer, self.catalog.label_to_id, u.clusters, self.m)
                report.dropped.update(dropped)
                for reason, n in dropped.items():
                    metrics.DROPPED.labels(reason=reason).inc(n)
                if not picks:
                    raise AnswerError("no valid cluster left after validation")
            except AnswerError as exc:
                metrics.BACKEND_ERRORS.labels(kind="invalid_answer" if res.ok else "failed").inc()
                proposals.append(self._fallback(u, str(exc)))
                continue
            proposals.append(self._complete(u, picks, ProposalSource.PROPOSAL_SOURCE_LLM))
        return proposals

    def _complete(self, u: UserContext, picks: list[ValidPick], source: int) -> Proposal:
        """LLM picks first (score by rank), topped up from the transition model when short."""
        out = [
            (p.cluster_id, p.label, round(1.0 - k / (2 * self.m), 3), p.reason) for k, p in enumerate(picks)
        ]
        if len(out) < self.m:
            taken = u.clusters | {p.cluster_id for p in picks}
            for cid, prob in self.transitions.propose(u.recent_clusters, taken, self.m - len(out)):
                out.append((cid, self.catalog.labels[cid], round(prob * 0.5, 3), ""))
        return Proposal(u, out, source)

    def _fallback(self, u: UserContext, error: str) -> Proposal:
        top = self.transitions.propose(u.recent_clusters, u.clusters, self.m)
        picks = [(cid, self.catalog.labels[cid], round(p, 3), "") for cid, p in top]
        return Proposal(u, picks, ProposalSource.PROPOSAL_SOURCE_TRANSITION, error=error)

    # -- writing --------------------------------------------------------------------------------
    def user_vectors(self, users: list[UserContext]) -> np.ndarray:
        from serendip.seqmodel import encode_users

        return encode_users(self.bundle.model, [u.history for u in users])

    def write(self, proposals: list[Proposal], report: BatchReport, now_ms: int | None = None) -> None:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        vectors = self.user_vectors([p.user for p in proposals]) if proposals else np.zeros((0, 0))
        centroids = self.bundle.centroids
        rcfg = self.cfg.record
        for p, uvec in zip(proposals, vectors, strict=True):
            try:
                if not p.picks:
                    raise ValueError("no cluster to propose (every cluster already explored)")
                embs = novel_embeddings(centroids, uvec, [c for c, *_ in p.picks], rcfg.centroid_weight)
                interests = [
                    Interest(
                        cid,
                        label,
                        float(score),
                        _rationale(reason, rcfg.rationale, rcfg.max_rationale_chars),
                        e,
                    )
                    for (cid, label, score, reason), e in zip(p.picks, embs, strict=True)
                ]
                expires, _ = self.writer.expiry(now_ms)
                record = Record(
                    interests=interests,
                    bundle_id=self.catalog.bundle_id,
                    model_id=(rcfg.model_id or self.backend.model_id)
                    if p.source != ProposalSource.PROPOSAL_SOURCE_TRANSITION
                    else "transition",
                    prompt_version=self.cfg.prompt.version,
                    created_at_ms=now_ms,
                    expires_at_ms=expires,
                    source=p.source,
                    history_fingerprint=p.user.fingerprint,
                    dim=int(centroids.shape[1]),
                )
                outcome = self.writer.write(p.user.user_id, record, now_ms=now_ms)
            except Exception as exc:  # one user's failure never stops the batch; the old record stays
                log.warning("user %s: record not written: %s", p.user.user_id, exc)
                report.outcomes["failed"] += 1
                metrics.USERS.labels(outcome="failed").inc()
                continue
            if not outcome.written:
                kind = "kept"
            elif p.source == ProposalSource.PROPOSAL_SOURCE_TRANSITION:
                kind = "fallback"
            elif p.source == ProposalSource.PROPOSAL_SOURCE_LLM_TUPLE:
                kind = "tuple"
            else:
                kind = "refreshed"
            report.outcomes[kind] += 1
            report.record_bytes.append(outcome.size)
            metrics.USERS.labels(outcome=kind).inc()
            if outcome.written:
                metrics.PROPOSALS.labels(source=ProposalSource.Name(p.source)).inc()

    def run_batch(self, users: list[UserContext], now_ms: int | None = None) -> BatchReport:
        report = BatchReport()
        try:
            proposals = self.propose(users, report)
        except Exception as exc:  # e.g. the backend raised instead of returning errors
            log.exception("proposing failed; falling back for the whole batch")
            metrics.BACKEND_ERRORS.labels(kind=type(exc).__name__).inc()
            proposals = [self._fallback(u, str(exc)) for u in users]
        self.write(proposals, report, now_ms)
        return report

    def tuple_requests(self, keys: list[tuple[int, ...]]) -> list[GenRequest]:
        picks = max(self.m, self.cfg.refresh.tuple_picks)
        builder = PromptBuilder(
            self.catalog,
            self.cfg.prompt.model_copy(update={"n_interests": picks}),
            self.images,
            self.describer,
            with_images=self.builder.with_images,
            url_transport=self.builder.url_transport,
        )
        return [builder.build(TupleTable.pseudo_user(k, self.catalog, self.bundle)) for k in keys]


def _rationale(reason: str, keep: bool, limit: int) -> str:
    if not keep or not reason:
        return ""
    return reason if len(reason) <= limit else reason[: max(0, limit - 1)].rstrip() + "…"

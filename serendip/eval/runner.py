"""`serendip eval` without the CLI: split → history bundle (cached) → proposals → replay → scores.

Leakage rule: every fitted artifact (taxonomy, sequence model, popularity, and whatever a proposer
fits, e.g. the transition model) comes from ``history_dataset(...)``; the future period is read only
by ``build_users`` to know what to score against.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serendip.bundle import Bundle, BundleError, load_bundle
from serendip.config import Settings
from serendip.data.schema import Dataset
from serendip.eval.proposers import HitScores, Proposer, score_proposals
from serendip.eval.replay import (
    EvalUser,
    ItemScores,
    Replay,
    build_users,
    item_user_counts,
    score_lists,
)
from serendip.eval.split import HistoryFutureSplit, history_dataset, split_history_future
from serendip.pipeline import Progress


@dataclass
class EvalOptions:
    k: int = 10
    ms: tuple[int, ...] = (1, 3)
    n_interests: int = 3  # clusters per user handed to Serendip (the record's interests)
    ratios: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5)
    default_ratio: float = 0.2  # the retrieval service's default exploration ratio
    mmr_lambdas: tuple[float, ...] = (0.9, 0.8, 0.7, 0.5, 0.3, 0.2, 0.1, 0.0)
    mmr_candidates: int = 50
    future_fraction: float = 0.2
    min_history: int = 5
    min_future: int = 1
    sample_users: int = 50  # users for the expensive (LLM) proposers
    seed: int = 0
    serendip_proposer: str = "cluster-transition model"  # whose clusters Serendip uses for all users

    def __post_init__(self) -> None:
        if self.k < 2:
            raise ValueError("k must be >= 2")
        if not self.ms or min(self.ms) < 1:
            raise ValueError("ms must be positive")
        if self.default_ratio not in self.ratios:
            self.ratios = tuple(sorted({*self.ratios, self.default_ratio}))
        for r in self.ratios:
            if not 0.0 <= r <= 1.0:
                raise ValueError(f"exploration ratio {r} is outside [0, 1]")


@dataclass
class EvalContext:
    dataset: Dataset
    settings: Settings
    split: HistoryFutureSplit
    bundle: Bundle  # fitted on the history period only
    users: list[EvalUser]
    reused_bundle: bool


@dataclass
class EvalResult:
    options: EvalOptions
    dataset: dict[str, Any]
    hits: list[HitScores]  # every proposer on every user with a novel future cluster
    sample_hits: list[HitScores]  # every proposer on the sample
    items: list[ItemScores]  # item-level systems on every scored user
    sample_items: list[ItemScores]  # relevance vs Serendip(each proposer) on the sample
    tradeoff: dict[str, list[dict[str, float]]]  # curve name → points (ratio/λ, recall, serendipity…)
    targets: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        def hit(h: HitScores) -> dict[str, Any]:
            return {
                "name": h.name,
                "users": h.users,
                "hit": {str(m): v for m, v in h.hits.items()},
                "ci95": {str(m): list(v) for m, v in h.intervals.items()},
                "invalid": h.invalid,
                "note": h.note,
            }

        def item(s: ItemScores) -> dict[str, Any]:
            return {"name": s.name, "users": s.users, **s.values}

        return {
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self.options).items()},
            "dataset": self.dataset,
            "hits": [hit(h) for h in self.hits],
            "sample_hits": [hit(h) for h in self.sample_hits],
            "items": [item(s) for s in self.items],
            "sample_items": [item(s) for s in self.sample_items],
            "tradeoff": self.tradeoff,
            "targets": self.targets,
            "notes": self.notes,
            "timings": self.timings,
        }


def _cache_key(dataset: Dataset, settings: Settings, options: EvalOptions) -> str:
    fitted = settings.model_dump(mode="json", include={"data", "embedding", "taxonomy", "seqmodel"})
    fitted["data"].pop("path", None)  # the fingerprint already names the data
    payload = {
        "fingerprint": dataset.fingerprint,
        "split": [options.future_fraction, options.min_history, options.min_future],
        "settings": fitted,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def prepare(
    dataset: Dataset,
    settings: Settings,
    work_dir: Path,
    options: EvalOptions,
    progress: Progress | None = None,
) -> EvalContext:
    """Split, then build (or reuse) the history-period bundle under ``work_dir``."""
    from serendip.pipeline import build_bundle

    progress = progress or Progress()
    split = split_history_future(
        dataset.interactions,
        future_fraction=options.future_fraction,
        min_future=options.min_future,
        min_history=options.min_history,
    )
    if split.future.empty:
        raise ValueError(
            f"no user of {dataset.name} has {options.min_history} + {options.min_future} interactions: "
            "nothing to score"
        )
    root = Path(work_dir) / f"history-bundle-{_cache_key(dataset, settings, options)}"
    reused = True
    try:
        bundle = load_bundle(root)
        progress.note(f"reusing the history-period bundle {bundle.path}")
    except (BundleError, FileNotFoundError):
        reused = False
        hist_settings = settings.model_copy(deep=True)
        hist_settings.bundle.root = root
        result = build_bundle(history_dataset(dataset, split), hist_settings, progress, evaluate=False)
        bundle = load_bundle(result.path)
    users = build_users(
        split.history,
        split.future,
        bundle.item_index,
        np.asarray(bundle.taxonomy.item_clusters),
        settings.data.positive_threshold,
    )
    if not users:
        raise ValueError("no user has a positive in both periods: nothing to score")
    return EvalContext(dataset, settings, split, bundle, users, reused)


def sample_users(users: Sequence[EvalUser], n: int, seed: int) -> list[int]:
    """A fixed random sample (sorted row numbers) of users with at least one novel future cluster."""
    eligible = [i for i, u in enumerate(users) if u.novel_clusters]
    if n >= len(eligible):
        return eligible
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(eligible, size=n, replace=False).tolist())


def _interp(points: list[dict[str, float]], x: float, xkey: str, ykey: str) -> float | None:
    """Linear interpolation of y at x along a curve (None outside its x range)."""
    pts = sorted((p[xkey], p[ykey]) for p in points)
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    if pts and abs(pts[0][0] - x) < 1e-12:
        return pts[0][1]
    return None


def run_evaluation(
    ctx: EvalContext,
    proposers: Sequence[Proposer],
    sampled: Sequence[Proposer] = (),
    options: EvalOptions | None = None,
    progress: Progress | None = None,
    skipped: Sequence[tuple[str, str]] = (),
) -> EvalResult:
    """``proposers`` run on every user; ``sampled`` (LLMs) on a fixed sample; ``skipped`` = (name, why)."""
    options = options or EvalOptions()
    progress = progress or Progress()
    b, users, k = ctx.bundle, ctx.users, options.k
    m_max = max(max(options.ms), options.n_interests)
    n_clusters = b.taxonomy.n_clusters
    timings: dict[str, float] = {}
    notes: list[str] = []

    proposals: dict[str, list[list[int]]] = {}
    for p in proposers:
        progress.stage(f"proposing: {p.name}")
        t = time.perf_counter()
        proposals[p.name] = p.propose(users, m_max)
        timings[f"propose {p.name} (s)"] = round(time.perf_counter() - t, 2)
    hits = [score_proposals(n, props, users, options.ms, n_clusters) for n, props in proposals.items()]

    rows = sample_users(users, options.sample_users, options.seed) if sampled else []
    sample = [users[i] for i in rows]
    sample_props = {n: [props[i] for i in rows] for n, props in proposals.items()} if sampled else {}
    for p in sampled:
        progress.stage(f"proposing: {p.name} ({len(sample)} users)", total=len(sample))
        t = time.perf_counter()
        sample_props[p.name] = p.propose(sample, m_max)
        secs = time.perf_counter() - t
        timings[f"propose {p.name} (s)"] = round(secs, 2)
        rate = len(sample) / max(secs, 1e-9)
        notes.append(f"{p.name}: {len(sample)} users in {secs:.0f} s ({rate:.2f} users/s)")
    sample_hits = [
        score_proposals(n, props, sample, options.ms, n_clusters) for n, props in sample_props.items()
    ]
    for name, why in skipped:
        sample_hits.append(
            HitScores(
                name,
                0,
                {m: float("nan") for m in options.ms},
                {m: (float("nan"), float("nan")) for m in options.ms},
                note=why,
            )
        )

    progress.stage("replaying item-level systems")
    t = time.perf_counter()
    item_users, n_hist_users = item_user_counts(ctx.split.history, b.item_index, len(b.item_ids))

    def scorer(replay: Replay, who: Sequence[EvalUser]):
        return lambda lists: score_lists(
            lists, who, replay.popular, item_users, n_hist_users, replay.unit_items, replay.item_clusters, k
        )

    replay = Replay(b.model, b.taxonomy.item_clusters, b.centroids, b.popularity, users, k)
    score = scorer(replay, users)
    relevance = score(replay.relevance())
    items = [relevance, score(replay.popular)]
    tradeoff: dict[str, list[dict[str, float]]] = {}
    mmr_points = [{"lambda": 1.0, **relevance.values}]
    for lam in options.mmr_lambdas:
        s = score(replay.mmr(lam, options.mmr_candidates))
        items.append(s)
        mmr_points.append({"lambda": lam, **s.values})
    tradeoff["MMR"] = mmr_points
    serendip_props = proposals.get(options.serendip_proposer)
    if serendip_props is None:
        raise ValueError(f"serendip_proposer {options.serendip_proposer!r} is not among the proposers")
    serendip_points = [{"ratio": 0.0, **relevance.values}]
    default_serendip = None
    for r in options.ratios:
        props = [p[: options.n_interests] for p in serendip_props]
        s = score(replay.serendip(props, r, f"Serendip (r={r:g})"))
        items.append(s)
        serendip_points.append({"ratio": r, **s.values})
        if r == options.default_ratio:
            default_serendip = s
    tradeoff[f"Serendip ({options.serendip_proposer})"] = serendip_points

    sample_items: list[ItemScores] = []
    if sampled and sample:
        sreplay = Replay(b.model, b.taxonomy.item_clusters, b.centroids, b.popularity, sample, k)
        sscore = scorer(sreplay, sample)
        sample_items.append(sscore(sreplay.relevance()))
        for name, props in sample_props.items():
            cut = [p[: options.n_interests] for p in props]
            sample_items.append(sscore(sreplay.serendip(cut, options.default_ratio, f"Serendip ({name})")))
    timings["replay (s)"] = round(time.perf_counter() - t, 2)

    targets = _targets(hits + sample_hits, relevance, default_serendip, mmr_points, options)
    return EvalResult(
        options=options,
        dataset={
            "name": ctx.dataset.name,
            "items": int(ctx.dataset.n_items),
            "interactions": len(ctx.dataset.interactions),
            "history_interactions": len(ctx.split.history),
            "future_interactions": len(ctx.split.future),
            "scored_users": len(users),
            "users_with_novel_future_cluster": sum(1 for u in users if u.novel_clusters),
            "sample_users": len(sample),
            "clusters": n_clusters,
            "history_bundle": str(b.path),
            "history_bundle_reused": ctx.reused_bundle,
        },
        hits=hits,
        sample_hits=sample_hits,
        items=items,
        sample_items=sample_items,
        tradeoff=tradeoff,
        targets=targets,
        notes=notes,
        timings=timings,
    )


FINETUNED = "fine-tuned LLM"
TRANSITION = "cluster-transition model"


def _targets(
    hits: list[HitScores],
    relevance: ItemScores,
    serendip: ItemScores | None,
    mmr_points: list[dict[str, float]],
    options: EvalOptions,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    m = 3 if 3 in options.ms else max(options.ms)
    by_name = {h.name: h for h in hits if h.users}  # sample entries come last: same-users comparison
    ft, tr = by_name.get(FINETUNED), by_name.get(TRANSITION)
    if ft is not None and tr is not None:
        ratio = ft.hits[m] / tr.hits[m] if tr.hits[m] else float("inf")
        out.append(
            {
                "target": f"fine-tuned LLM hit@{m} ≥ 1.2× transition",
                "value": f"{ratio:.2f}×",
                "met": ratio >= 1.2,
            }
        )
    else:
        out.append({"target": f"fine-tuned LLM hit@{m} ≥ 1.2× transition", "value": "not run", "met": None})
    if serendip is not None:
        r = options.default_ratio
        rel_s, rel_r = relevance.values["serendipity"], relevance.values["recall"]
        s_ratio = serendip.values["serendipity"] / rel_s if rel_s else float("inf")
        r_ratio = serendip.values["recall"] / rel_r if rel_r else float("inf")
        out.append(
            {
                "target": f"Serendip serendipity@{options.k} ≥ 2× relevance-only (r={r:g})",
                "value": f"{s_ratio:.2f}×",
                "met": s_ratio >= 2.0,
            }
        )
        out.append(
            {
                "target": f"Serendip Recall@{options.k} ≥ 95 % of relevance-only (r={r:g})",
                "value": f"{100 * r_ratio:.1f} %",
                "met": r_ratio >= 0.95,
            }
        )
        mmr_s = _interp(mmr_points, serendip.values["recall"], "recall", "serendipity")
        if mmr_s is None:
            out.append(
                {
                    "target": "Serendip serendipity > MMR at equal Recall",
                    "value": "MMR curve does not reach Serendip's recall",
                    "met": None,
                }
            )
        else:
            out.append(
                {
                    "target": f"Serendip serendipity@{options.k} > MMR at equal Recall@{options.k}",
                    "value": f"{serendip.values['serendipity']:.4f} vs {mmr_s:.4f}",
                    "met": serendip.values["serendipity"] > mmr_s,
                }
            )
    return out

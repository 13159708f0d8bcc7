"""`serendip sft-data`: real novel-interest transitions as chat examples for fine-tuning.

Only the *history period* of ``serendip.eval.split`` is read, so an evaluation on the future period
never sees its own answers in training. For each user, their positives are walked in time order
(the order of the Redis history lists); at position t whose item falls in a cluster none of the
user's earlier positives touched, the user as the refresh would see them then (the last
``history_len`` positives before t) is turned into the refresh's own prompt, and the answer names that
new cluster first. Candidates are then balanced — at most ``max_per_cluster`` examples per target
cluster and ``max_per_user`` per user, sampled with a fixed seed — so popular clusters do not dominate.

The assistant message is a JSON answer the refresh's schema accepts, with the compact separators the
grammar emits. Fields other than the target are filled briefly and deterministically from metadata:

* ``interests[0]`` = the target; ``reason`` = the target cluster's leading keywords;
* ``interests[1:]`` = the next distinct clusters new to the user later in their history period (real
  engagements too), topped up with the transition model's proposals (fitted on the history period);
* ``summary`` = "Enjoys " + the labels of the user's most recent clusters (clipped);
* ``items`` (``describe = "inline"`` only) = each recent item's catalog text (clipped).

Prompts are built with metadata descriptions (no LLM item descriptions): serve an adapter with
``prompt.describe = "metadata"`` to see exactly the training distribution.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from interest_service.catalog import Catalog, UserContext
from interest_service.config import InterestConfig, PromptConfig
from interest_service.prompt import PromptBuilder, clean, item_text
from interest_service.transitions import TransitionModel

FORMAT = "serendip-sft-v1"


@dataclass(frozen=True)
class Transition:
    user_id: str
    position: int  # index of the target positive in the user's chronological positives
    target: int  # its cluster: new to the user at that point


@dataclass
class SftExample:
    messages: list[dict[str, str]]  # system, user (the refresh's prompt), assistant (the answer)
    user_id: str
    target: int
    target_label: str
    target_item: str  # the positive that first entered the target cluster
    timestamp: int  # when it was engaged with
    explored: list[int]  # the user's history clusters at that point (never allowed in the answer)
    n_shown: int  # recent items shown in the prompt (the inline schema's item count)
    split: str = "train"  # train | heldout

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SftExample:
        return cls(**raw)


@dataclass
class UserPositives:
    items: np.ndarray  # item indices, oldest first
    item_ids: list[str]
    timestamps: np.ndarray


def user_positives(history: pd.DataFrame, catalog: Catalog, threshold: float) -> dict[str, UserPositives]:
    """Each user's history-period positives in the order the Redis history lists keep them."""
    pos = history[history["weight"] >= threshold]
    pos = pos[pos["item_id"].astype(str).isin(catalog.item_index)]
    pos = pos.sort_values(["user_id", "timestamp"], kind="stable")
    out = {}
    for user, group in pos.groupby("user_id", sort=True):
        ids = group["item_id"].astype(str).tolist()
        out[str(user)] = UserPositives(
            np.fromiter((catalog.item_index[i] for i in ids), dtype=np.int64, count=len(ids)),
            ids,
            group["timestamp"].to_numpy(dtype=np.int64),
        )
    return out


def find_transitions(
    positives: dict[str, UserPositives], item_clusters: np.ndarray, min_context: int
) -> list[Transition]:
    """Every step into a cluster the user had no positive in before (after ``min_context`` positives)."""
    found = []
    for user, p in positives.items():
        seen: set[int] = set()
        for t, c in enumerate(item_clusters[p.items].tolist()):
            if c not in seen and t >= min_context:
                found.append(Transition(user, t, int(c)))
            seen.add(int(c))
    return found


def balance(
    transitions: list[Transition], max_per_cluster: int, max_per_user: int, seed: int
) -> list[Transition]:
    """A seeded sample with at most ``max_per_cluster`` per target and ``max_per_user`` per user."""
    order = np.random.default_rng(seed).permutation(len(transitions))
    per_cluster: Counter[int] = Counter()
    per_user: Counter[str] = Counter()
    kept = []
    for k in order.tolist():
        tr = transitions[k]
        if per_cluster[tr.target] < max_per_cluster and per_user[tr.user_id] < max_per_user:
            per_cluster[tr.target] += 1
            per_user[tr.user_id] += 1
            kept.append(tr)
    kept.sort(key=lambda tr: (tr.user_id, tr.position))
    return kept


def dump_answer(answer: dict[str, Any]) -> str:
    """JSON exactly as the constrained decoder spells it (compact separators, UTF-8 labels)."""
    return json.dumps(answer, separators=(",", ":"), ensure_ascii=False)


class ExampleMaker:
    """Turns transitions into chat examples with the refresh's own prompt builder."""

    def __init__(
        self,
        catalog: Catalog,
        prompt: PromptConfig,
        fallback: TransitionModel,
        history_len: int,
        n_recent_clusters: int,
    ):
        self.catalog = catalog
        self.prompt = prompt
        self.builder = PromptBuilder(catalog, prompt)  # no describer, no images: metadata text
        self.fallback = fallback
        self.history_len = history_len
        self.n_recent_clusters = n_recent_clusters

    def context(self, user_id: str, p: UserPositives, t: int) -> UserContext:
        ids = p.item_ids[max(0, t - self.history_len) : t]
        return UserContext.build(user_id, ids[::-1], self.catalog, self.n_recent_clusters)

    def make(self, tr: Transition, p: UserPositives) -> SftExample:
        ctx = self.context(tr.user_id, p, tr.position)
        if tr.target in ctx.clusters:  # find_transitions guarantees this; a cheap guard against drift
            raise ValueError(f"user {tr.user_id}: target cluster {tr.target} is already explored")
        req = self.builder.build(ctx)
        user_text = "\n".join(part.text for part in req.parts if part.kind == "text")
        answer = self.answer(ctx, tr, p)
        return SftExample(
            messages=[
                {"role": "system", "content": req.system},
                {"role": "user", "content": user_text},
                {"role": "assistant", "content": dump_answer(answer)},
            ],
            user_id=tr.user_id,
            target=tr.target,
            target_label=self.catalog.labels[tr.target],
            target_item=p.item_ids[tr.position],
            timestamp=int(p.timestamps[tr.position]),
            explored=sorted(ctx.clusters),
            n_shown=len(ctx.recent[: self.prompt.n_recent]),
        )

    def picks(self, ctx: UserContext, tr: Transition, p: UserPositives) -> list[int]:
        m = min(self.prompt.n_interests, self.catalog.n_clusters - len(ctx.clusters))
        chosen = [tr.target]
        clusters = self.catalog.item_clusters
        seen = {int(c) for c in clusters[p.items[: tr.position + 1]]} | ctx.clusters
        for idx in p.items[tr.position + 1 :].tolist():
            c = int(clusters[idx])
            if len(chosen) >= m:
                break
            if c not in seen and c not in chosen:
                chosen.append(c)
            seen.add(c)  # explored from here on, whether picked or not
        if len(chosen) < m:
            taken = ctx.clusters | set(chosen)
            chosen += [c for c, _ in self.fallback.propose(ctx.recent_clusters, taken, m - len(chosen))]
        return chosen

    def answer(self, ctx: UserContext, tr: Transition, p: UserPositives) -> dict[str, Any]:
        cfg = self.prompt
        labels = self.catalog.labels
        answer: dict[str, Any] = {}
        if cfg.describe == "inline":
            recent = ctx.recent[: cfg.n_recent]
            answer["items"] = [clean(item_text(self.catalog, i), cfg.max_description_chars) for i in recent]
        recent_labels = [labels[c] for c in ctx.recent_clusters[:2]]
        answer["summary"] = clean("Enjoys " + "; ".join(recent_labels), cfg.max_summary_chars)
        answer["interests"] = [
            {"cluster": labels[c], "reason": clean(self._reason(c), cfg.max_reason_chars)}
            for c in self.picks(ctx, tr, p)
        ]
        return answer

    def _reason(self, cid: int) -> str:
        cluster = self.catalog.taxonomy.clusters[cid]
        words = [k for k in cluster.keywords if k not in cluster.label][:3]
        return "New: " + ", ".join(words or [cluster.label])


@dataclass
class SftSet:
    examples: list[SftExample]
    manifest: dict[str, Any]


def curate(
    history: pd.DataFrame,
    catalog: Catalog,
    cfg: InterestConfig,
    *,
    split_params: dict[str, Any],
    bundle_period: str,
    progress: Callable[[int], None] | None = None,
) -> SftSet:
    """Balanced chat examples from the history-period interactions ``history`` (see the module doc)."""
    fcfg = cfg.finetune
    positives = user_positives(history, catalog, cfg.positive_threshold)
    found = find_transitions(positives, catalog.item_clusters, fcfg.min_context)
    kept = balance(found, fcfg.max_per_cluster, fcfg.max_per_user, fcfg.seed)
    hist = history.assign(item_idx=[catalog.item_index.get(str(i), -1) for i in history["item_id"].tolist()])
    fallback = TransitionModel.fit(
        hist[hist["item_idx"] >= 0],
        catalog.item_clusters,
        catalog.n_clusters,
        cfg.positive_threshold,
        window=cfg.refresh.transition_recent,
    )
    maker = ExampleMaker(
        catalog, cfg.prompt, fallback, cfg.refresh.history_len, cfg.refresh.transition_recent
    )
    rng = np.random.default_rng(fcfg.seed)
    users = sorted({tr.user_id for tr in kept})
    heldout = {u for u, r in zip(users, rng.random(len(users)), strict=True) if r < fcfg.heldout_fraction}
    examples = []
    for tr in kept:
        ex = maker.make(tr, positives[tr.user_id])
        ex.split = "heldout" if tr.user_id in heldout else "train"
        examples.append(ex)
        if progress:
            progress(1)
    per_cluster = Counter(ex.target_label for ex in examples)
    manifest = {
        "format": FORMAT,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bundle_id": catalog.bundle_id,
        "bundle_period": bundle_period,
        "prompt_version": cfg.prompt.version,
        "prompt": cfg.prompt.model_dump(mode="json"),
        "descriptions": "metadata",
        "split": split_params,
        "positive_threshold": cfg.positive_threshold,
        "history_len": cfg.refresh.history_len,
        "n_recent_clusters": cfg.refresh.transition_recent,
        "balance": {
            "max_per_cluster": fcfg.max_per_cluster,
            "max_per_user": fcfg.max_per_user,
            "min_context": fcfg.min_context,
            "heldout_fraction": fcfg.heldout_fraction,
            "seed": fcfg.seed,
        },
        "n_candidates": len(found),
        "n_examples": len(examples),
        "n_train": sum(ex.split == "train" for ex in examples),
        "n_heldout": sum(ex.split == "heldout" for ex in examples),
        "n_users": len(users),
        "n_target_clusters": len(per_cluster),
        "candidates_per_cluster_max": max(Counter(tr.target for tr in found).values(), default=0),
        "per_cluster": dict(sorted(per_cluster.items(), key=lambda kv: (-kv[1], kv[0]))),
        "labels": catalog.labels,
    }
    return SftSet(examples, manifest)


def manifest_path(data: Path) -> Path:
    return data.with_name(data.stem + ".manifest.json")


def write_sft(path: Path, sft: SftSet) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for ex in sft.examples:
            fh.write(json.dumps(ex.to_json(), ensure_ascii=False) + "\n")
    tmp.replace(path)
    mpath = manifest_path(path)
    mpath.write_text(json.dumps(sft.manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    return mpath


def read_sft(path: Path) -> SftSet:
    """Examples and manifest; a malformed line is an error naming the file and line."""
    if not path.is_file():
        raise FileNotFoundError(f"SFT data not found: {path}")
    mpath = manifest_path(path)
    if not mpath.is_file():
        raise FileNotFoundError(f"SFT manifest not found next to the data: {mpath}")
    manifest = json.loads(mpath.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{mpath}: format {manifest.get('format')!r} is not {FORMAT!r}")
    examples = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                ex = SftExample.from_json(json.loads(line))
            except (json.JSONDecodeError, TypeError) as exc:
                raise ValueError(f"{path}, line {n}: not an SFT example: {exc}") from exc
            roles = [m.get("role") for m in ex.messages]
            if roles != ["system", "user", "assistant"]:
                raise ValueError(f"{path}, line {n}: messages must be system, user, assistant (got {roles})")
            examples.append(ex)
    return SftSet(examples, manifest)

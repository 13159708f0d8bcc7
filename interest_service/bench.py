"""`serendip bench refresh`: users/s of the batched, prefix-reusing path vs a naive loop, same run.

All modes use the same model instance, the same users and the same prompts:

* **batched**: up to ``local.batch_size`` users in flight (continuous batching: a finished row is
  replaced by the next user), the static prefix encoded once and attended to by every row
  (``shared_prefix.py``), grammar-forced text appended without sampling steps (jump-forward,
  ``decode.py``; off with ``local.jump_forward = false``), item descriptions from the cache;
* **naive**: one user at a time, the full prompt (prefix included) encoded for every user, through
  ``model.generate`` with transformers' own attention (sdpa) and the same grammar as a logits
  processor, one token per step — what a straightforward implementation does;
* **inline**: batched, but step 1 (describing the items) inside every user's answer instead of the
  per-item cache — what the description cache saves.

Describing the bench users' items once is timed separately and also reported amortised.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from interest_service.answer import AnswerError, parse_proposal
from interest_service.backends.decode import DecodeStats
from interest_service.backends.local import LocalBackend
from interest_service.catalog import Catalog, UserContext
from interest_service.config import InterestConfig
from interest_service.images import ImagePolicy
from interest_service.prompt import ItemDescriber, PromptBuilder
from serendip.bundle import Bundle
from serendip.pipeline import Progress
from serendip.store import user_histories


@dataclass
class ModeResult:
    users: int
    seconds: float
    tokens: int
    valid: int  # answers that parsed (before cluster validation)

    @property
    def users_per_s(self) -> float:
        return self.users / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_user(self) -> float:
        return self.tokens / self.users if self.users else 0.0


@dataclass
class RefreshBench:
    model_id: str
    dtype: str
    threads: int
    batch_size: int
    n_clusters: int
    prefix_tokens: int
    load_s: float
    describe_items: int
    describe_s: float
    batched: ModeResult
    naive: ModeResult
    inline: ModeResult | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def speedup(self) -> float:
        return self.batched.users_per_s / self.naive.users_per_s if self.naive.users_per_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["speedup"] = self.speedup
        for k in ("batched", "naive", "inline"):
            if d[k] is not None:
                mode = getattr(self, k)
                d[k]["users_per_s"] = mode.users_per_s
                d[k]["tokens_per_user"] = mode.tokens_per_user
        return d


def _run(backend: LocalBackend, builder: PromptBuilder, users: list[UserContext]) -> ModeResult:
    requests = [builder.build(u) for u in users]
    t0 = time.perf_counter()
    results = backend.generate(requests)
    seconds = time.perf_counter() - t0
    valid = 0
    for r in results:
        try:
            parse_proposal(r.text)
            valid += 1
        except AnswerError:
            pass
    return ModeResult(len(users), seconds, sum(r.completion_tokens for r in results), valid)


def _run_naive(backend: LocalBackend, builder: PromptBuilder, users: list[UserContext]) -> ModeResult:
    """One user per ``model.generate`` call on the full prompt, transformers' own attention (sdpa)."""
    shared, bs, attn = (
        backend.use_shared_prefix,
        backend.cfg.batch_size,
        backend.model.config._attn_implementation,
    )
    backend.use_shared_prefix, backend.cfg.batch_size = False, 1
    backend.model.set_attn_implementation("sdpa")
    try:
        return _run(backend, builder, users)
    finally:
        backend.use_shared_prefix, backend.cfg.batch_size = shared, bs
        backend.model.set_attn_implementation(attn)


def bench_refresh(
    bundle: Bundle,
    cfg: InterestConfig,
    n_users: int = 32,
    naive_users: int = 4,
    inline_users: int = 8,
    progress: Progress | None = None,
) -> RefreshBench:
    progress = progress or Progress()
    catalog = Catalog.from_bundle(bundle)
    histories = user_histories(bundle.interactions, cfg.positive_threshold, cfg.refresh.history_len)
    users = [
        UserContext.build(uid, items[::-1], catalog, cfg.refresh.transition_recent)
        for uid, items in list(histories.items())[:n_users]
    ]
    progress.stage("loading the model")
    t0 = time.perf_counter()
    backend = LocalBackend(cfg.local)
    load_s = time.perf_counter() - t0
    images = ImagePolicy(cfg.images)
    describer = ItemDescriber(backend, catalog, cfg.prompt, images)
    builder = PromptBuilder(catalog, cfg.prompt, images, describer, with_images=backend.supports_images)

    progress.stage("describing items once (cached)")
    t0 = time.perf_counter()
    if cfg.prompt.describe == "cached":
        builder.prepare(users)
    describe_s = time.perf_counter() - t0

    progress.stage(f"batched + shared prefix ({len(users)} users)")
    backend.decode_stats = DecodeStats()
    batched = _run(backend, builder, users)
    batched_stats = asdict(backend.decode_stats)

    progress.stage(f"naive one-at-a-time ({naive_users} users)")
    naive = _run_naive(backend, builder, users[:naive_users])

    inline = None
    if inline_users and cfg.prompt.describe == "cached":
        progress.stage(f"batched, items described inline ({inline_users} users)")
        inline_cfg = cfg.prompt.model_copy(update={"describe": "inline"})
        inline_builder = PromptBuilder(catalog, inline_cfg, images, None, with_images=backend.supports_images)
        inline = _run(backend, inline_builder, users[:inline_users])

    prefix_text, _ = backend._split_template(builder.system)
    prefix_tokens = len(backend.tokenizer(prefix_text, add_special_tokens=False).input_ids)
    import torch

    return RefreshBench(
        model_id=backend.model_id,
        dtype=str(backend.model.dtype).replace("torch.", ""),
        threads=torch.get_num_threads(),
        batch_size=cfg.local.batch_size,
        n_clusters=catalog.n_clusters,
        prefix_tokens=prefix_tokens,
        load_s=load_s,
        describe_items=describer.generated + describer.failed,
        describe_s=describe_s,
        batched=batched,
        naive=naive,
        inline=inline,
        extra={"batched_decode": batched_stats, "jump_forward": cfg.local.jump_forward},
    )

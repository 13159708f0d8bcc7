"""Held-out check: how often the constrained answer's first cluster is the user's real next new cluster.

Each held-out example is replayed through a backend exactly as the refresh would ask it: the example's
system and user messages, the answer schema whose cluster enum is every label except the user's
explored clusters (rebuilt from the data manifest). ``hit1`` = the first valid pick is the target;
``hitm`` = the target is among the M picks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from interest_service.answer import (
    AnswerError,
    max_tokens_for,
    parse_proposal,
    proposal_schema,
    validate_picks,
)
from interest_service.backends.base import Backend, GenRequest, Part
from interest_service.config import PromptConfig
from interest_service.finetune.data import SftExample


@dataclass
class CheckResult:
    n: int
    valid: int  # schema-valid answers with at least one valid pick
    hit1: int
    hitm: int

    def as_dict(self) -> dict[str, Any]:
        n = max(self.n, 1)
        return {
            "n": self.n,
            "valid": self.valid,
            "hit1": self.hit1,
            "hitm": self.hitm,
            "hit1_rate": round(self.hit1 / n, 4),
            "hitm_rate": round(self.hitm / n, 4),
        }


def requests_for(examples: Sequence[SftExample], manifest: dict[str, Any]) -> list[GenRequest]:
    prompt = PromptConfig.model_validate(manifest["prompt"])
    labels: list[str] = manifest["labels"]
    out = []
    for k, ex in enumerate(examples):
        explored = set(ex.explored)
        allowed = [label for cid, label in enumerate(labels) if cid not in explored]
        n_inline = ex.n_shown if prompt.describe == "inline" else 0
        schema = proposal_schema(allowed, prompt, n_inline)
        out.append(
            GenRequest(
                key=str(k),
                system=ex.messages[0]["content"],
                parts=[Part("text", ex.messages[1]["content"])],
                schema=schema,
                max_tokens=max_tokens_for(schema),
                check=parse_proposal,
            )
        )
    return out


def check_backend(backend: Backend, examples: Sequence[SftExample], manifest: dict[str, Any]) -> CheckResult:
    labels: list[str] = manifest["labels"]
    label_to_id = {label: i for i, label in enumerate(labels)}
    m = int(manifest["prompt"]["n_interests"])
    res = CheckResult(len(examples), 0, 0, 0)
    for ex, out in zip(examples, backend.generate(requests_for(examples, manifest)), strict=True):
        try:
            if not out.ok:
                continue
            picks, _ = validate_picks(parse_proposal(out.text), label_to_id, set(ex.explored), m)
        except AnswerError:
            continue
        if not picks:
            continue
        res.valid += 1
        res.hit1 += picks[0].cluster_id == ex.target
        res.hitm += any(p.cluster_id == ex.target for p in picks)
    return res

"""The LLM's answer: its JSON schema (cluster field = enum of allowed labels), parsing and validation.

The schema is what constrained decoding enforces (xgrammar locally, ``response_format`` on an
OpenAI-compatible server); parsing and validation run anyway, because a server may ignore the
constraint (vLLM silently drops unknown fields) and the cluster must also be *new to this user*.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from interest_service.config import PromptConfig


class AnswerError(ValueError):
    """Text that is not a well-formed answer (not JSON, wrong shape, too long)."""


class Pick(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cluster: str = Field(min_length=1, max_length=300)
    reason: str = Field(max_length=400)


class ProposalAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[str] | None = None  # inline mode: the model's description of each recent item
    summary: str = Field(max_length=800)
    interests: list[Pick] = Field(min_length=1, max_length=20)


class DescriptionAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = Field(max_length=400)


def proposal_schema(allowed_labels: list[str], cfg: PromptConfig, n_inline_items: int = 0) -> dict[str, Any]:
    """Steps 2-3 of the chain of thought (and step 1 when items are described inline)."""
    if not allowed_labels:
        raise ValueError("no cluster is left to propose (the user has explored them all)")
    m = min(cfg.n_interests, len(allowed_labels))
    props: dict[str, Any] = {}
    required = []
    if n_inline_items:
        props["items"] = {
            "type": "array",
            "items": {"type": "string", "maxLength": cfg.max_description_chars},
            "minItems": n_inline_items,
            "maxItems": n_inline_items,
        }
        required.append("items")
    props["summary"] = {"type": "string", "maxLength": cfg.max_summary_chars}
    props["interests"] = {
        "type": "array",
        "minItems": m,
        "maxItems": m,
        "items": {
            "type": "object",
            "properties": {
                "cluster": {"type": "string", "enum": list(allowed_labels)},
                "reason": {"type": "string", "maxLength": cfg.max_reason_chars},
            },
            "required": ["cluster", "reason"],
            "additionalProperties": False,
        },
    }
    required += ["summary", "interests"]
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def description_schema(cfg: PromptConfig) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"description": {"type": "string", "maxLength": cfg.max_description_chars}},
        "required": ["description"],
        "additionalProperties": False,
    }


def max_tokens_for(schema: dict[str, Any]) -> int:
    """An upper bound on the tokens a schema-constrained answer needs (every token emits ≥ 1 char).

    Generous on purpose: the grammar, not this bound, ends the answer; hitting the bound means the
    answer is truncated and goes to the fallback.
    """
    props = schema["properties"]
    chars = 40
    if "description" in props:
        chars += props["description"]["maxLength"] + 20
    if "items" in props:
        chars += props["items"]["maxItems"] * (props["items"]["items"]["maxLength"] + 4) + 12
    if "summary" in props:
        chars += props["summary"]["maxLength"] + 16
    if "interests" in props:
        item = props["interests"]["items"]["properties"]
        longest = max(len(json.dumps(label)) for label in item["cluster"]["enum"])
        chars += props["interests"]["maxItems"] * (longest + item["reason"]["maxLength"] + 28)
    return chars


def parse_proposal(text: str | None) -> ProposalAnswer:
    if not text:
        raise AnswerError("empty answer")
    try:
        return ProposalAnswer.model_validate(json.loads(text))
    except (json.JSONDecodeError, ValidationError, TypeError) as exc:
        raise AnswerError(f"malformed answer: {str(exc)[:200]}") from exc


def parse_description(text: str | None) -> str:
    if not text:
        raise AnswerError("empty answer")
    try:
        return DescriptionAnswer.model_validate(json.loads(text)).description.strip()
    except (json.JSONDecodeError, ValidationError, TypeError) as exc:
        raise AnswerError(f"malformed description: {str(exc)[:200]}") from exc


@dataclass(frozen=True)
class ValidPick:
    cluster_id: int
    label: str
    reason: str


def validate_picks(
    answer: ProposalAnswer, label_to_id: dict[str, int], history_clusters: set[int], limit: int
) -> tuple[list[ValidPick], Counter[str]]:
    """Map labels to ids; drop unknown, already-explored and duplicate clusters (counted by reason)."""
    dropped: Counter[str] = Counter()
    picks: list[ValidPick] = []
    seen: set[int] = set()
    for pick in answer.interests:
        cid = label_to_id.get(pick.cluster.strip())
        if cid is None:
            dropped["unknown"] += 1
        elif cid in history_clusters:
            dropped["in_history"] += 1
        elif cid in seen:
            dropped["duplicate"] += 1
        elif len(picks) < limit:
            seen.add(cid)
            picks.append(ValidPick(cid, pick.cluster.strip(), " ".join(pick.reason.split())))
    return picks, dropped

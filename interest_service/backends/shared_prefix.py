"""Attention over one shared prompt prefix held once, whatever the batch size.

Every user's prompt starts with the same static prefix (instructions + taxonomy, ~1-2k tokens).
Copying its KV cache into every row of a batch makes each decode step read and concatenate
B × prefix × layers tensors — at batch 16 on a 2-core CPU that costs more than the model's matmuls.
Instead the prefix's keys/values are computed once (batch 1) and this attention function attends to
them by broadcasting; the per-row cache then only holds each user's own suffix and generated tokens.
The softmax runs over the concatenation [prefix scores | suffix scores], so the result equals plain
attention over prefix + suffix (tested against a full forward pass).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

import torch

ATTN_NAME = "serendip_shared_prefix"
# From this many queries per row on (a prefill), the prefix is copied per row for a fused kernel.
SDPA_MIN_QUERIES = 16

# Per-layer (keys, values) of the current shared prefix, each [1, kv_heads, P, head_dim], post-RoPE.
_PREFIX: contextvars.ContextVar[Sequence[tuple[torch.Tensor, torch.Tensor]] | None] = contextvars.ContextVar(
    "serendip_prefix_kv", default=None
)


def shared_prefix_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # [B, H, q, D]
    key: torch.Tensor,  # [B, Hkv, s, D] (the row's own cache + current tokens)
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,  # additive float [B, 1, q, s] (eager mask)
    scaling: float,
    dropout: float = 0.0,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    b, h, q, d = query.shape
    hkv = key.shape[1]
    prefix = _PREFIX.get()
    if attention_mask is not None and q >= SDPA_MIN_QUERIES:
        if prefix is None:  # encoding the prefix itself: plain causal attention, fused
            mask = attention_mask[:, :, -q:, -key.shape[2] :].to(query.dtype)
            out = torch.nn.functional.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, scale=scaling, enable_gqa=True
            )
            return out.transpose(1, 2).contiguous(), None
        return _prefill_attention(module, query, key, value, attention_mask, scaling, prefix), None
    g = h // hkv
    # Group the query heads by their kv head instead of repeating K/V (GQA): [B, Hkv, g*q, D].
    qg = query.reshape(b, hkv, g * q, d)
    scores = torch.matmul(qg, key.transpose(-1, -2)) * scaling  # [B, Hkv, g*q, s]
    if attention_mask is not None:
        s = key.shape[2]
        mask = attention_mask[:, :, -q:, -s:]  # [B, 1, q, s]
        scores = (scores.view(b, hkv, g, q, s) + mask.unsqueeze(2)).view(b, hkv, g * q, s)
    if prefix is None:  # computing the prefix itself, or a model used without one
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        out = torch.matmul(weights, value)
    else:
        pk, pv = prefix[module.layer_idx]  # type: ignore[index]
        p_len = pk.shape[2]
        # Fold the batch into the rows of one matmul per kv head ([Hkv, B*g*q, D] @ [Hkv, D, P]):
        # a broadcast matmul against the batch-1 prefix would materialise B copies of it.
        q_rows = qg.transpose(0, 1).reshape(hkv, b * g * q, d)
        p_scores = torch.bmm(q_rows, pk[0].transpose(-1, -2)) * scaling  # [Hkv, B*g*q, P]
        p_scores = p_scores.view(hkv, b, g * q, p_len).transpose(0, 1)  # [B, Hkv, g*q, P]
        weights = torch.softmax(torch.cat([p_scores, scores], dim=-1), dim=-1, dtype=torch.float32)
        weights = weights.to(query.dtype)
        w_p = weights[..., :p_len].transpose(0, 1).reshape(hkv, b * g * q, p_len)
        out_p = torch.bmm(w_p, pv[0]).view(hkv, b, g * q, d).transpose(0, 1)
        out = out_p + torch.matmul(weights[..., p_len:], value)
    out = out.reshape(b, h, q, d).transpose(1, 2).contiguous()  # [B, q, H, D]
    return out, None


def _prefill_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor,
    scaling: float,
    prefix: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> torch.Tensor:
    """Many queries per row (prefill): copy the prefix into each row and use fused attention.

    The copy is B x prefix per layer, once for the whole suffix, and the fused kernel never
    materialises the [B, H, q, prefix + s] score tensor that dominates a long prefill otherwise.
    """
    b, _, q, _ = query.shape
    pk, pv = prefix[module.layer_idx]  # type: ignore[index]
    keys = torch.cat([pk.expand(b, -1, -1, -1), key], dim=2)
    values = torch.cat([pv.expand(b, -1, -1, -1), value], dim=2)
    mask = attention_mask[:, :, -q:, -key.shape[2] :]
    mask = torch.nn.functional.pad(mask, (pk.shape[2], 0))  # the prefix is visible to every query
    out = torch.nn.functional.scaled_dot_product_attention(
        query, keys, values, attn_mask=mask.to(query.dtype), scale=scaling, enable_gqa=True
    )
    return out.transpose(1, 2).contiguous()  # [B, q, H, D]


def register() -> str:
    """Register the attention (and its mask: the eager additive mask) with transformers; idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTN_NAME, shared_prefix_attention)
    AttentionMaskInterface.register(ATTN_NAME, eager_mask)
    return ATTN_NAME


@contextlib.contextmanager
def using_prefix(kv: Sequence[tuple[torch.Tensor, torch.Tensor]] | None) -> Iterator[None]:
    token = _PREFIX.set(kv)
    try:
        yield
    finally:
        _PREFIX.reset(token)

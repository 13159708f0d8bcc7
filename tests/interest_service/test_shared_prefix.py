"""Shared-prefix attention equals plain attention over prefix + suffix (tiny random Llama)."""

import pytest
import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from interest_service.backends import shared_prefix


@pytest.mark.parametrize(
    "lengths",
    [(7, 4), (24, 17)],
    ids=["short-suffixes", "prefill-path"],  # >= SDPA_MIN_QUERIES queries: the fused prefill path
)
def test_matches_full_forward_with_left_padding(lengths):
    assert max(lengths) >= shared_prefix.SDPA_MIN_QUERIES or max(lengths) < 8
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    model = LlamaForCausalLM(cfg).eval()
    model.set_attn_implementation(shared_prefix.register())
    prefix = torch.randint(3, 97, (1, 20))
    suffixes = [torch.randint(3, 97, (n,)) for n in lengths]
    w = max(lengths)
    with torch.inference_mode():
        model.set_attn_implementation("eager")  # the reference: transformers' own attention
        ref = [model(torch.cat([prefix[0], s])[None]).logits[0, -1] for s in suffixes]
        model.set_attn_implementation(shared_prefix.ATTN_NAME)
        cache = DynamicCache()
        model(prefix, cache=cache, use_cache=True)
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        ids = torch.zeros(2, w, dtype=torch.long)
        mask = torch.zeros(2, w, dtype=torch.long)
        for row, s in enumerate(suffixes):  # left padding
            ids[row, w - len(s) :] = s
            mask[row, w - len(s) :] = 1
        pos = (20 + mask.cumsum(-1) - 1).clamp(min=20)
        with shared_prefix.using_prefix(kv):
            rows = DynamicCache()
            out = model(ids, attention_mask=mask, position_ids=pos, cache=rows, use_cache=True).logits[:, -1]
            # One decode step too: the prefix is still attended to, the row cache has grown.
            nxt = out.argmax(-1)
            mask2 = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], 1)
            step = model(
                nxt[:, None], attention_mask=mask2, position_ids=pos[:, -1:] + 1, cache=rows, use_cache=True
            ).logits[:, -1]
        for row, s in enumerate(suffixes):
            torch.testing.assert_close(out[row], ref[row], atol=1e-4, rtol=1e-4)
            full = torch.cat([prefix[0], s, nxt[row : row + 1]])[None]
            model.set_attn_implementation("eager")
            torch.testing.assert_close(step[row], model(full).logits[0, -1], atol=1e-4, rtol=1e-4)
            model.set_attn_implementation(shared_prefix.ATTN_NAME)

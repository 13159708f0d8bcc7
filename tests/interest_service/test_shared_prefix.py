"""Shared-prefix attention equals plain attention over prefix + suffix (tiny random Llama)."""

import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from interest_service.backends import shared_prefix


def test_matches_full_forward_with_left_padding():
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
    suffixes = [torch.randint(3, 97, (7,)), torch.randint(3, 97, (4,))]
    with torch.inference_mode():
        ref = [model(torch.cat([prefix[0], s])[None]).logits[0, -1] for s in suffixes]
        cache = DynamicCache()
        model(prefix, cache=cache, use_cache=True)
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        ids = torch.zeros(2, 7, dtype=torch.long)
        mask = torch.zeros(2, 7, dtype=torch.long)
        for row, s in enumerate(suffixes):  # left padding
            ids[row, 7 - len(s) :] = s
            mask[row, 7 - len(s) :] = 1
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
            torch.testing.assert_close(step[row], model(full).logits[0, -1], atol=1e-4, rtol=1e-4)

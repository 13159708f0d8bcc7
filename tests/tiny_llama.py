"""One tiny random Llama checkpoint builder for the tests that need a real (fast) causal LM."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_tiny_llama(
    folder: Path,
    tokenizer: Any,
    *,
    vocab_size: int | None = None,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    **config: Any,
) -> Path:
    """A seeded random Llama (tied embeddings, 4k positions) and ``tokenizer`` saved to ``folder``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer) if vocab_size is None else vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        **config,
    )
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder

"""Schema-constrained decoding with xgrammar: per row a grammar matcher masks the logits.

Every token the model may emit keeps the output a valid prefix of the JSON schema, so the cluster
field can only ever be one of the allowed labels — whatever the model (even a random one) or the
prompt (even a hostile title) would prefer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch


def _xgr() -> Any:
    try:
        import xgrammar
    except ImportError as exc:  # installed with --no-deps by scripts/setup.sh (it would pull triton)
        raise ImportError(
            "xgrammar is required for constrained decoding: pip install --no-deps xgrammar apache-tvm-ffi"
        ) from exc
    return xgrammar


class GrammarFactory:
    """Compiles JSON schemas for one tokenizer (compiled grammars are cached by xgrammar)."""

    def __init__(self, tokenizer: Any, vocab_size: int):
        self.xgr = xgr = _xgr()
        self.info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=1)
        self.vocab_size = vocab_size
        self.stop_ids = [int(t) for t in self.info.stop_token_ids]

    def compile(self, schema: dict[str, Any]) -> Any:
        # Compact separators: no optional whitespace, so fewer tokens per answer.
        return self.compiler.compile_json_schema(
            json.dumps(schema), any_whitespace=False, separators=(",", ":"), strict_mode=True
        )

    def matchers(self, schemas: Sequence[dict[str, Any]]) -> list[Any]:
        xgr = _xgr()
        return [xgr.GrammarMatcher(self.compile(s)) for s in schemas]


class BatchMask:
    """Masks a [B, V] logits tensor row by row with each row's matcher."""

    def __init__(self, factory: GrammarFactory, batch: int):
        self._xgr = _xgr()
        self.factory = factory
        self.bitmask = self._xgr.allocate_token_bitmask(batch, factory.vocab_size)

    def apply(self, logits: torch.Tensor, matchers: Sequence[Any]) -> torch.Tensor:
        n = logits.shape[0]
        finished = []
        for row, m in enumerate(matchers):
            if m.is_terminated():
                self.bitmask[row].fill_(-1)  # all bits set: masked by hand below
                finished.append(row)
            else:
                m.fill_next_token_bitmask(self.bitmask, row)
        vocab = self.factory.vocab_size
        mask = self.bitmask[:n].to(logits.device)
        if logits.shape[1] > vocab:  # padded embedding rows beyond the tokenizer: never valid
            head = logits[:, :vocab].contiguous()
            self._xgr.apply_token_bitmask_inplace(head, mask)
            logits[:, :vocab] = head
            logits[:, vocab:] = float("-inf")
        else:
            self._xgr.apply_token_bitmask_inplace(logits, mask)
        for row in finished:  # a finished row may only emit a stop token (ignored afterwards)
            logits[row] = float("-inf")
            logits[row, self.factory.stop_ids[0]] = 0.0
        return logits

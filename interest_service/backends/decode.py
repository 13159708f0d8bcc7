"""Decoding over a shared static prefix: continuous batching and jump-forward over forced text.

The loop keeps up to ``max_rows`` answers in flight. Each row's cache holds only its own suffix and
generated tokens (the static prefix is attended to through ``shared_prefix``); rows sit right-aligned
in one padded cache whose 2D mask marks real positions, so

* **continuous batching**: a finished row leaves at once and queued requests are prefilled and
  spliced in (left-padded to the running cache's length), so the batch does not idle on its
  longest answer;
* **jump-forward**: after each sampled token, the text the grammar forces next (JSON keys and
  punctuation, the rest of an enum label once its prefix is unique, the closing brackets) is
  tokenized canonically and fed in the next forward pass with no sampling step. Left-padding inside
  each step's chunk keeps every row's last real token in the last column; padded slots stay masked
  (holes in the cache), and position ids skip them.

On a CPU the cost of a forward pass grows with its token slots (rows x chunk width), so the chunk
width is chosen per step to maximise real tokens per slot (``_chunk_width``); tokens beyond it wait
for the next step.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from interest_service.backends import shared_prefix
from interest_service.backends.constrained import BatchMask, GrammarFactory

# Fixed cost of one forward pass, in token slots (Python dispatch, reading the weights): a wider
# chunk must carry this many more real tokens than padding to pay for itself.
STEP_COST_SLOTS = 6
MAX_CHUNK = 16
# Rows per prefill pass: the queue is sorted by length, so smaller groups pad less; 8 rows of a few
# hundred tokens are still big matmuls.
PREFILL_ROWS = 8


@dataclass
class DecodeStats:
    forwards: int = 0  # decode forward passes (prefills not counted)
    prefills: int = 0
    prefill_tokens: int = 0  # real suffix tokens prefilled
    prefill_slots: int = 0  # token slots computed by prefills, padding included
    decode_slots: int = 0  # token slots computed by decode passes, padding included
    sampled: int = 0  # tokens chosen by the model
    forced: int = 0  # tokens appended by jump-forward without a sampling step
    prefill_s: float = 0.0
    decode_s: float = 0.0

    def add(self, other: DecodeStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class _Row:
    index: int  # into the caller's request list
    matcher: Any
    max_tokens: int
    next_pos: int  # position id of the next token fed to the model
    out: list[int] = field(default_factory=list)
    pending: deque[int] = field(default_factory=deque)  # decided, not yet fed to the model
    logits: torch.Tensor | None = None  # next-token logits, when the row is due to sample
    done: bool = False


def jump_forward_string(matcher: Any) -> str:
    """The text the grammar forces next ('' when none, or when it is not whole UTF-8 characters)."""
    if matcher.is_terminated():
        return ""
    try:
        return str(matcher.find_jump_forward_string())
    except UnicodeDecodeError:  # the forced bytes end or start inside a multi-byte character
        return ""


def _chunk_width(pending: Sequence[int]) -> int:
    """The chunk width with the most real tokens per computed slot (fixed step cost included)."""
    rows = len(pending)
    best, best_score = 1, -1.0
    for width in sorted(set(min(k, MAX_CHUNK) for k in pending)):
        real = sum(min(k, width) for k in pending)
        score = real / (rows * width + STEP_COST_SLOTS)
        if score > best_score:
            best, best_score = width, score
    return best


class PrefixDecoder:
    """Greedy schema-constrained decoding of many suffixes after one shared prefix."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        grammar: GrammarFactory,
        cache_kw: str,
        max_rows: int,
        jump_forward: bool = True,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.grammar = grammar
        self.cache_kw = cache_kw
        self.max_rows = max_rows
        self.jump_forward = jump_forward
        self.pad_id = int(tokenizer.pad_token_id)
        self._stop = set(grammar.stop_ids)
        self._bitmask = grammar.xgr.allocate_token_bitmask(1, grammar.vocab_size)

    def run(
        self,
        suffixes: Sequence[list[int]],
        matchers: Sequence[Any],
        max_tokens: Sequence[int],
        prefix_kv: Sequence[tuple[torch.Tensor, torch.Tensor]],
        prefix_len: int,
    ) -> tuple[list[list[int]], DecodeStats]:
        """Each suffix's answer tokens (stop token excluded); matchers are advanced in place."""
        stats = DecodeStats()
        # Similar lengths prefill together: less left padding.
        queue = deque(sorted(range(len(suffixes)), key=lambda i: len(suffixes[i])))
        masker = BatchMask(self.grammar, self.max_rows)
        outputs: list[list[int]] = [[] for _ in suffixes]
        rows: list[_Row] = []
        cache: Any = None
        mask = torch.zeros(0, 0, dtype=torch.long)
        # Refill once a quarter of the batch is free: each prefill is one more forward pass.
        refill_at = max(1, self.max_rows // 4)
        with shared_prefix.using_prefix(prefix_kv):
            while queue or rows:
                free = self.max_rows - len(rows)
                if queue and (not rows or free >= refill_at):
                    new = [queue.popleft() for _ in range(min(free, len(queue)))]
                    t0 = time.perf_counter()
                    for start in range(0, len(new), PREFILL_ROWS):
                        new_rows, new_cache, new_mask = self._prefill(
                            new[start : start + PREFILL_ROWS],
                            suffixes,
                            matchers,
                            max_tokens,
                            prefix_len,
                            stats,
                        )
                        cache, mask = _splice(cache, mask, new_cache, new_mask)
                        rows += new_rows
                    stats.prefill_s += time.perf_counter() - t0
                t0 = time.perf_counter()
                self._sample([r for r in rows if r.logits is not None], masker, stats)
                keep = [j for j, r in enumerate(rows) if not r.done]
                for r in rows:
                    if r.done:
                        outputs[r.index] = r.out
                if len(keep) < len(rows):
                    rows = [rows[j] for j in keep]
                    if not rows:
                        cache, mask = None, torch.zeros(0, 0, dtype=torch.long)
                        stats.decode_s += time.perf_counter() - t0
                        continue
                    sel = torch.tensor(keep)
                    cache.batch_select_indices(sel)
                    mask = mask[sel]
                    mask = _trim(cache, mask)
                if rows:
                    mask = self._step(rows, cache, mask, stats)
                stats.decode_s += time.perf_counter() - t0
        return outputs, stats

    # -- pieces ---------------------------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any) -> torch.Tensor:
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_kw: cache},
        )
        return out.logits[:, -1, :]

    def _prefill(
        self,
        new: list[int],
        suffixes: Sequence[list[int]],
        matchers: Sequence[Any],
        max_tokens: Sequence[int],
        prefix_len: int,
        stats: DecodeStats,
    ) -> tuple[list[_Row], Any, torch.Tensor]:
        from transformers import DynamicCache

        width = max(len(suffixes[i]) for i in new)
        ids = torch.full((len(new), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(new), width, dtype=torch.long)
        for j, i in enumerate(new):  # left padding
            n = len(suffixes[i])
            ids[j, width - n :] = torch.tensor(suffixes[i])
            mask[j, width - n :] = 1
        pos = (prefix_len + mask.cumsum(-1) - 1).clamp(min=prefix_len)
        cache = DynamicCache()
        logits = self._forward(ids, mask, pos, cache)
        stats.prefills += 1
        stats.prefill_tokens += int(mask.sum())
        stats.prefill_slots += mask.numel()
        rows = [
            _Row(i, matchers[i], max_tokens[i], prefix_len + len(suffixes[i]), logits=logits[j])
            for j, i in enumerate(new)
        ]
        return rows, cache, mask

    def _sample(self, due: list[_Row], masker: BatchMask, stats: DecodeStats) -> None:
        if not due:
            return
        logits = masker.apply(torch.stack([r.logits for r in due]).float(), [r.matcher for r in due])
        chosen = logits.argmax(-1).tolist()
        for r, tok in zip(due, chosen, strict=True):
            r.logits = None
            accepted = r.matcher.accept_token(tok)  # a stop token is accepted once the JSON is complete
            if not accepted or tok in self._stop or r.matcher.is_terminated():
                r.done = True
                continue
            r.out.append(tok)
            r.pending.append(tok)
            stats.sampled += 1
            if self.jump_forward:
                stats.forced += self._force(r)
            if len(r.out) >= r.max_tokens or self._only_stop_left(r):
                r.done = True

    def _force(self, r: _Row) -> int:
        """Append the grammar-forced continuation's canonical tokens; returns how many."""
        text = jump_forward_string(r.matcher)
        if not text:
            return 0
        n = 0
        for tok in self.tokenizer.encode(text, add_special_tokens=False):
            if len(r.out) >= r.max_tokens or not r.matcher.accept_token(tok):
                break
            r.out.append(tok)
            r.pending.append(tok)
            n += 1
        return n

    def _only_stop_left(self, r: _Row) -> bool:
        """The answer is complete and only a stop token may follow (forced too: no forward pass)."""
        if not (self.jump_forward and r.matcher.is_completed()):
            return False
        r.matcher.fill_next_token_bitmask(self._bitmask, 0)
        probe = torch.zeros(1, self.grammar.vocab_size)
        self.grammar.xgr.apply_token_bitmask_inplace(probe, self._bitmask)
        allowed = torch.isfinite(probe[0]).nonzero().flatten().tolist()
        return set(allowed) <= self._stop

    def _step(self, rows: list[_Row], cache: Any, mask: torch.Tensor, stats: DecodeStats) -> torch.Tensor:
        """One forward pass feeding each row up to ``width`` pending tokens (left-padded)."""
        width = _chunk_width([len(r.pending) for r in rows])
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        chunk = torch.zeros(len(rows), width, dtype=torch.long)
        pos = torch.zeros(len(rows), width, dtype=torch.long)
        fed = []
        for j, r in enumerate(rows):
            toks = [r.pending.popleft() for _ in range(min(width, len(r.pending)))]
            k = len(toks)
            ids[j, width - k :] = torch.tensor(toks)
            chunk[j, width - k :] = 1
            pos[j, :] = r.next_pos
            pos[j, width - k :] = torch.arange(r.next_pos, r.next_pos + k)
            r.next_pos += k
            fed.append(k)
        mask = torch.cat([mask, chunk], dim=1)
        logits = self._forward(ids, mask, pos, cache)
        stats.forwards += 1
        stats.decode_slots += ids.numel()
        for j, r in enumerate(rows):
            if not r.pending:  # everything decided is in the cache: the row samples next
                r.logits = logits[j]
        return mask


def _splice(
    cache: Any, mask: torch.Tensor, new_cache: Any, new_mask: torch.Tensor
) -> tuple[Any, torch.Tensor]:
    """Append newly prefilled rows to the running batch, right-aligned to a common length."""
    if cache is None:
        return new_cache, new_mask
    old_len, new_len = mask.shape[1], new_mask.shape[1]
    total = max(old_len, new_len)
    for layer, extra in zip(cache.layers, new_cache.layers, strict=True):
        layer.keys = torch.cat([_left_pad(layer.keys, total), _left_pad(extra.keys, total)], dim=0)
        layer.values = torch.cat([_left_pad(layer.values, total), _left_pad(extra.values, total)], dim=0)
    mask = torch.cat([F.pad(mask, (total - old_len, 0)), F.pad(new_mask, (total - new_len, 0))], dim=0)
    return cache, mask


def _left_pad(kv: torch.Tensor, length: int) -> torch.Tensor:
    pad = length - kv.shape[-2]
    return F.pad(kv, (0, 0, pad, 0)) if pad else kv


def _trim(cache: Any, mask: torch.Tensor) -> torch.Tensor:
    """Drop leading cache columns that no remaining row uses (left behind by rows that finished)."""
    used = mask.any(dim=0)
    start = int(used.to(torch.int8).argmax()) if bool(used.any()) else 0
    if start == 0:
        return mask
    for layer in cache.layers:
        layer.keys = layer.keys[..., start:, :]
        layer.values = layer.values[..., start:, :]
    return mask[:, start:]

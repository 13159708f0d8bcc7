"""`openai` backend: any OpenAI-compatible server — vLLM on GPUs, llama.cpp's server on a CPU.

* Images go as ``image_url`` parts (data URLs of the checked, downscaled image; or allowed http(s)
  URLs the server fetches itself with ``image_transport = "url"``).
* The answer is constrained with ``response_format: {"type": "json_schema", ...}``; for vLLM also
  ``structured_outputs: {"json": schema}`` (its older ``guided_json`` is silently ignored by recent
  servers, so it is not sent).
* Bounded concurrency (a thread pool of ``concurrency``), a per-request timeout, and retries with
  exponential backoff and jitter on transport errors, 5xx/429 and answers that fail the caller's
  check (malformed JSON, wrong shape). After the last retry the request's result carries the error
  and the engine falls back — a bad server never produces an invalid record.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from interest_service import metrics
from interest_service.backends.base import GenRequest, GenResult
from interest_service.config import OpenAIBackendConfig


class OpenAIBackend:
    supports_images = True

    def __init__(self, cfg: OpenAIBackendConfig):
        import openai

        self.cfg = cfg
        self.model_id = cfg.model
        self.supports_images = cfg.images
        self._openai = openai
        # Retries are ours (they also cover malformed answers), so the client's own are off.
        self.client = openai.OpenAI(
            base_url=cfg.base_url,
            api_key=os.environ.get(cfg.api_key_env) or "not-needed",
            timeout=cfg.timeout_s,
            max_retries=0,
        )
        self._pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="interest-llm")

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        t0 = time.perf_counter()
        results = list(self._pool.map(self._one, requests))
        elapsed = time.perf_counter() - t0
        metrics.observe_batch(elapsed, sum(r.completion_tokens for r in results))
        return results

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def messages(self, req: GenRequest) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        for p in req.parts:
            if p.kind == "text":
                content.append({"type": "text", "text": p.text})
            elif self.supports_images and p.url:
                content.append({"type": "image_url", "image_url": {"url": p.url}})
            elif self.supports_images and p.image is not None:
                content.append({"type": "image_url", "image_url": {"url": p.image.data_url()}})
        if all(c["type"] == "text" for c in content):
            # Plain string content: text-only chat templates (llama.cpp's) reject part lists.
            content_value: Any = "\n".join(c["text"] for c in content)
        else:
            content_value = content
        return [{"role": "system", "content": req.system}, {"role": "user", "content": content_value}]

    def _body(self, req: GenRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": self.messages(req),
            "max_tokens": req.max_tokens,
            "temperature": 0.0,
        }
        if self.cfg.response_format == "json_object":
            body["response_format"] = {"type": "json_object", "schema": req.schema}
        else:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": req.schema, "strict": True},
            }
        if self.cfg.vllm_structured_outputs:
            body["extra_body"] = {"structured_outputs": {"json": req.schema}}
        return body

    def _one(self, req: GenRequest) -> GenResult:
        body = self._body(req)
        last_error = "no attempt"
        attempts = self.cfg.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                resp = self.client.chat.completions.create(**body)
                text = resp.choices[0].message.content if resp.choices else None
                if text is None:
                    raise ValueError("empty completion")
                if req.check is not None:
                    req.check(text)  # malformed → retry (a sampling server may do better next time)
                usage = resp.usage
                return GenResult(
                    req.key,
                    text,
                    prompt_tokens=usage.prompt_tokens if usage else 0,
                    completion_tokens=usage.completion_tokens if usage else 0,
                    images_used=sum(1 for p in req.parts if p.kind == "image") if self.supports_images else 0,
                    attempts=attempt,
                )
            except self._openai.APIStatusError as exc:
                kind = f"http_{exc.status_code}"
                last_error = f"{kind}: {str(exc)[:200]}"
                if exc.status_code < 500 and exc.status_code not in (408, 409, 429):
                    metrics.BACKEND_ERRORS.labels(kind=kind).inc()
                    return GenResult(req.key, None, error=last_error, attempts=attempt)  # not retryable
            except self._openai.APITimeoutError as exc:
                kind, last_error = "timeout", f"timeout: {exc}"
            except self._openai.APIConnectionError as exc:
                kind, last_error = "connection", f"connection: {exc}"
            except Exception as exc:  # malformed answer (check failed), bad payload
                kind, last_error = "malformed", f"{type(exc).__name__}: {str(exc)[:200]}"
            metrics.BACKEND_ERRORS.labels(kind=kind).inc()
            if attempt < attempts:
                delay = self.cfg.backoff_s * (2 ** (attempt - 1))
                time.sleep(delay * (0.5 + random.random()))  # jitter: retries of a batch spread out
        return GenResult(req.key, None, error=last_error, attempts=attempts)

"""LLM backends behind one protocol (``base.Backend``): ``local`` (transformers) and ``openai``."""

from __future__ import annotations

from interest_service.backends.base import Backend, BackendError, GenRequest, GenResult, Part
from interest_service.config import InterestConfig

__all__ = ["Backend", "BackendError", "GenRequest", "GenResult", "Part", "make_backend"]


def make_backend(cfg: InterestConfig) -> Backend:
    if cfg.backend == "local":
        from interest_service.backends.local import LocalBackend

        return LocalBackend(cfg.local)
    from interest_service.backends.openai_backend import OpenAIBackend

    return OpenAIBackend(cfg.openai)

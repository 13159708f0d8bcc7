from pathlib import Path

import pytest
from pydantic import ValidationError

from interest_service.config import InterestConfig
from serendip.config import Settings


def test_defaults_come_from_core_sections():
    s = Settings(data={"path": "/data/x", "positive_threshold": 3.5}, redis={"key_prefix": "p:v2"})
    cfg = InterestConfig.from_settings(s)
    assert cfg.images.allowed_roots == [Path("/data/x")]
    assert cfg.redis_prefix == "p:v2" and cfg.positive_threshold == 3.5
    assert cfg.server.grpc_port == 50052 and cfg.server.metrics_port == 9102


def test_unknown_and_core_owned_keys_are_errors():
    with pytest.raises(ValidationError):
        InterestConfig.from_settings(Settings(interest={"prompt": {"n_intrests": 3}}))
    with pytest.raises(ValueError, match="core configuration"):
        InterestConfig.from_settings(Settings(interest={"redis_prefix": "x"}))
    with pytest.raises(ValidationError):
        InterestConfig.model_validate({"openai": {"concurrency": 0}})

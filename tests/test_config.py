import pytest
from pydantic import ValidationError

from serendip.config import load_settings


def test_defaults(monkeypatch):
    monkeypatch.delenv("SERENDIP_CONFIG", raising=False)
    s = load_settings()
    assert s.taxonomy.n_fine == 150 and s.taxonomy.n_coarse == 20
    assert s.data.positive_threshold == 4.0


def test_file_then_env_precedence(tmp_path, monkeypatch):
    cfg = tmp_path / "serendip.toml"
    cfg.write_text("[taxonomy]\nn_fine = 80\nn_coarse = 8\n[data]\npositive_threshold = 3.5\n")
    s = load_settings(cfg)
    assert (s.taxonomy.n_fine, s.taxonomy.n_coarse, s.data.positive_threshold) == (80, 8, 3.5)
    monkeypatch.setenv("SERENDIP_TAXONOMY__N_FINE", "90")
    s = load_settings(cfg)
    assert s.taxonomy.n_fine == 90 and s.taxonomy.n_coarse == 8


def test_invalid_values_fail_at_load(tmp_path, monkeypatch):
    monkeypatch.setenv("SERENDIP_TAXONOMY__N_COARSE", "500")
    with pytest.raises(ValidationError, match="n_coarse"):
        load_settings()
    monkeypatch.delenv("SERENDIP_TAXONOMY__N_COARSE")
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[seqmodel]\ndim = 30\nheads = 4\n")
    with pytest.raises(ValidationError, match="divisible"):
        load_settings(cfg)
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.toml")


def test_unknown_keys_are_rejected(tmp_path):
    cfg = tmp_path / "typo.toml"
    cfg.write_text("[taxonomy]\nn_fien = 3\n")
    with pytest.raises(ValidationError, match="n_fien"):
        load_settings(cfg)

"""docker-compose.yml against the compose-spec schema (check-jsonschema's built-in copy) and against
what the services really listen on. (No Docker engine runs here: nothing is started.)"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.stack.conftest import REPO

COMPOSE = REPO / "docker-compose.yml"
ONE_SHOTS = {"bundle-build", "seed-histories", "refresh-cpu", "refresh-gpu"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_matches_the_compose_spec_schema():
    r = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "validation done" in r.stdout


def test_schema_check_rejects_a_broken_file(tmp_path):
    bad = tmp_path / "compose.yml"
    bad.write_text(
        "services:\n  x:\n    image: redis\n    healthcheck:\n      interval: 5\n    ports: 6379\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode != 0


def test_profiles(compose):
    s = compose["services"]
    assert {n for n, v in s.items() if "cpu" in v.get("profiles", [])} == {"interest-cpu", "refresh-cpu"}
    assert {n for n, v in s.items() if "gpu" in v.get("profiles", [])} == {
        "vllm",
        "interest-gpu",
        "refresh-gpu",
    }
    common = {n for n, v in s.items() if not v.get("profiles")}
    assert {
        "redis",
        "bundle-build",
        "seed-histories",
        "retrieval",
        "demo",
        "prometheus",
        "pushgateway",
        "grafana",
    } <= common


def test_healthchecks_everywhere(compose):
    for name, svc in compose["services"].items():
        hc = svc.get("healthcheck")
        assert hc, f"{name}: no healthcheck"
        if name in ONE_SHOTS:
            assert hc == {"disable": True} and svc["restart"] == "no", name
        else:
            assert hc["test"][0] == "CMD" and len(hc["test"]) > 1, name


def test_dependencies_wait_for_health_or_completion(compose):
    s = compose["services"]
    for name, svc in s.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in s, f"{name} depends on unknown {dep}"
            expected = "service_completed_successfully" if dep in ONE_SHOTS else "service_healthy"
            assert cond["condition"] == expected, f"{name} → {dep}"
            # a profile-less service must not depend on a profiled one
            if not svc.get("profiles"):
                assert not s[dep].get("profiles"), f"{name} depends on profiled {dep}"


def test_vllm_gpu_reservation_and_configurable_model(compose):
    v = compose["services"]["vllm"]
    assert v["image"].startswith("${VLLM_IMAGE:-vllm/vllm-openai")
    dev = v["deploy"]["resources"]["reservations"]["devices"][0]
    assert dev["driver"] == "nvidia" and dev["capabilities"] == ["gpu"]
    for var in ("VLLM_MODEL", "VLLM_LORA_NAME", "VLLM_LORA_PATH"):
        assert var in v["environment"]
    assert "--lora-modules" in v["command"][0] and "hf-cache:/root/.cache/huggingface" in v["volumes"]
    gpu_env = compose["services"]["interest-gpu"]["environment"]
    assert gpu_env["SERENDIP_INTEREST__BACKEND"] == "openai"
    assert gpu_env["SERENDIP_INTEREST__OPENAI__BASE_URL"] == "http://vllm:8000/v1"


def test_ports_and_env_match_the_services(compose):
    from interest_service.config import InterestConfig, ServerConfig
    from retrieval_service.config import RetrievalConfig
    from serendip.config import Settings

    s = compose["services"]
    r = RetrievalConfig()
    assert (
        f"{r.port}:{r.port}" in s["retrieval"]["ports"]
        and f"{r.metrics_port}:{r.metrics_port}" in s["retrieval"]["ports"]
    )
    i = ServerConfig()
    for name in ("interest-cpu", "interest-gpu"):
        assert f"{i.grpc_port}:{i.grpc_port}" in s[name]["ports"]
        assert "interest" in s[name]["networks"]["default"]["aliases"]
        assert s[name]["healthcheck"]["test"][-1] == f"localhost:{i.grpc_port}"
    # Every SERENDIP_* variable set anywhere must load into the real configuration tree.
    env = {}
    for svc in s.values():
        if isinstance(svc.get("environment"), dict):
            env.update({k: str(v) for k, v in svc["environment"].items() if k.startswith("SERENDIP_")})
    import os
    from unittest import mock

    with mock.patch.dict(os.environ, env, clear=False):
        settings = Settings()
        assert settings.redis.url == "redis://redis:6379/0"
        InterestConfig.from_settings(settings)
        RetrievalConfig.model_validate(settings.retrieval)


def test_bind_mounts_exist(compose):
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./") and "adapters" not in src:
                assert (REPO / src).exists(), f"{name}: {src} missing"
        build = svc.get("build")
        if build:
            assert (REPO / build["dockerfile"]).is_file()


def test_refresh_runs_push_to_the_pushgateway_that_prometheus_scrapes(compose):
    from interest_service.config import RefreshConfig

    s = compose["services"]
    gw = s["pushgateway"]
    assert gw["image"].startswith("prom/pushgateway:v") and "9091:9091" in gw["ports"]
    store = next(a for a in gw["command"] if a.startswith("--persistence.file="))
    assert any(store.split("=", 1)[1].startswith(v.split(":")[1] + "/") for v in gw["volumes"])
    for name in ("refresh-cpu", "refresh-gpu"):
        url = s[name]["environment"]["SERENDIP_INTEREST__REFRESH__PUSHGATEWAY_URL"]
        assert url == "http://pushgateway:9091", name
        assert RefreshConfig(pushgateway_url=url).pushgateway_url == url  # the real config accepts it
        assert s[name]["depends_on"]["pushgateway"] == {"condition": "service_healthy"}
    prom = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "pushgateway")
    # honor_labels: the pushed job="serendip_refresh" label stays (the stale alert selects it)
    assert job["honor_labels"] is True and job["static_configs"][0]["targets"] == ["pushgateway:9091"]

"""Dashboards and alerts query only metrics (and labels, and label values) that the services really
export: the names are checked against the services' own Prometheus registries."""

from __future__ import annotations

import json
import re
from pathlib import Path

import grpc
import pytest
import yaml

from serendip.stack import dashboards
from tests.stack.conftest import REPO
from tests.stack.promql import parse

DASHBOARD_DIR = REPO / "deploy/k8s/base/monitoring/dashboards"
ALERTS = REPO / "deploy/prometheus/alerts.yml"
# vLLM's own metrics (vllm/vllm-openai /metrics). Not checkable here: no vLLM runs on these machines.
VLLM = {
    "vllm:generation_tokens_total": set(),
    "vllm:prompt_tokens_total": set(),
    "vllm:num_requests_running": set(),
    "vllm:num_requests_waiting": set(),
    "vllm:e2e_request_latency_seconds_bucket": {"le"},
    "vllm:time_to_first_token_seconds_bucket": {"le"},
}
# The Pushgateway's own per-group metrics (prom/pushgateway), labelled with each group's key.
PUSHGATEWAY = {"push_time_seconds": {"job", "engine"}, "push_failure_time_seconds": {"job", "engine"}}


def _names(registry) -> dict[str, set[str]]:
    """Every sample name a registry can export (…_total, …_bucket, …) → its label names."""
    out: dict[str, set[str]] = {}
    for name, collector in registry._names_to_collectors.items():
        labels = set(getattr(collector, "_labelnames", ()))
        if name.endswith("_bucket"):
            labels.add("le")
        out[name] = labels
    return out


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    from prometheus_client import REGISTRY

    import interest_service.metrics  # noqa: F401 - registers its metrics in the default registry
    from interest_service.pushgateway import RefreshRun, run_registry
    from retrieval_service.metrics import RetrievalMetrics

    retrieval = RetrievalMetrics()
    # The server's own series, and the hot-path ones (its compute workers', or its own with workers = 0).
    names = {**_names(retrieval.registry), **_names(retrieval.compute_registry)}
    ours = ("serendip_interest_", "serendip_refresh_")
    names.update({k: v for k, v in _names(REGISTRY).items() if k.startswith(ours)})
    # What a successful refresh run pushes; the gateway adds the grouping key's labels to each series.
    pushed = _names(run_registry(RefreshRun(engine="local", started_at=0.0, success=True), 1.0))
    for name, labels in pushed.items():
        names[name] = names.get(name, set()) | labels | {"job", "engine"}
    names.update(VLLM)
    names.update(PUSHGATEWAY)
    return names


def _label_values() -> dict[str, set[str]]:
    from retrieval_service.metrics import STAGES, STORE_FAILURES, source_name, status_name
    from serendip.api.retrieval.v1 import retrieval_pb2 as pb

    return {
        "grpc_code": {c.name for c in grpc.StatusCode},
        "status": {status_name(s) for s in pb.RecordStatus.values()[1:]},
        "stage": set(STAGES),
        "reason": set(STORE_FAILURES),
        "source": {source_name(s) for s in pb.ItemSource.values()[1:]},
        "grpc_service": {s.full_name for s in pb.DESCRIPTOR.services_by_name.values()},
        "grpc_method": {m.name for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods},
        # interest_service.metrics documents these in the USERS help text.
        "outcome": {"refreshed", "fallback", "kept", "failed", "skipped"},
    }


def _exprs() -> list[tuple[str, str]]:
    out = []
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for t in panel.get("targets", []):
                out.append((f"{path.name}: {panel['title']}", t["expr"]))
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            out.append((f"alert {rule['alert']}", rule["expr"]))
    return out


def test_committed_dashboards_are_the_generated_ones():
    for name, text in dashboards.render().items():
        assert (DASHBOARD_DIR / name).read_text() == text, f"run python -m serendip.stack.dashboards ({name})"


def test_dashboards_cover_what_the_issue_asks_for():
    titles = " | ".join(
        p["title"] for f in DASHBOARD_DIR.glob("*.json") for p in json.loads(f.read_text())["panels"]
    ).lower()
    for needed in (
        "request rate",
        "latency",
        "error",
        "stage latency",
        "record status",
        "exploration fill",
        "refresh throughput",
        "failures",
        "tokens/s",
        "queue",
    ):
        assert needed in titles, needed


@pytest.mark.parametrize("where, expr", _exprs(), ids=[w for w, _ in _exprs()])
def test_every_queried_metric_label_and_value_exists(where: str, expr: str, exported: dict[str, set[str]]):
    usage = parse(expr)
    assert usage.metrics, f"{where}: no metric found in {expr!r}"
    missing = usage.metrics - set(exported)
    assert not missing, f"{where}: metrics not exported by any service: {sorted(missing)}"
    labels = set().union(*(exported[m] for m in usage.metrics))
    assert usage.grouping <= labels, f"{where}: grouping labels {sorted(usage.grouping - labels)} unknown"
    values = _label_values()
    for metric, label, op, value in usage.matchers:
        known = exported[metric] if metric else labels
        assert label in known, f"{where}: {metric} has no label {label!r}"
        if label in values and op in ("=", "=~"):
            wanted = set(value.split("|")) if op == "=~" else {value}
            assert wanted <= values[label], (
                f"{where}: {label} values {sorted(wanted - values[label])} never exported"
            )


def test_prometheus_rule_equals_compose_alerts():
    rule = yaml.safe_load((REPO / "deploy/k8s/base/monitoring/prometheusrule.yaml").read_text())
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    for needed in ("LatencyP99", "ErrorRatio", "StaleRecords", "RefreshFailures", "RefreshStale"):
        assert any(needed in a for a in alerts), needed


def test_prometheus_scrapes_both_services_and_vllm():
    from interest_service.config import ServerConfig
    from retrieval_service.config import RetrievalConfig

    cfg = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    targets = {t for job in cfg["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert f"retrieval:{RetrievalConfig().metrics_port}" in targets
    assert f"interest:{ServerConfig().metrics_port}" in targets
    assert "vllm:8000" in targets and "pushgateway:9091" in targets
    assert cfg["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_promql_parser_on_known_expressions():
    u = parse(
        'sum by (le, stage) (rate(x_bucket{stage="store",a=~"b|c"}[$__rate_interval])) / clamp_min(y, 1e-9)'
    )
    assert u.metrics == {"x_bucket", "y"} and u.grouping == {"le", "stage"}
    assert ("x_bucket", "a", "=~", "b|c") in u.matchers
    assert parse("vllm:num_requests_waiting > 0").metrics == {"vllm:num_requests_waiting"}


def test_dashboard_json_is_grafana_shaped():
    for path in DASHBOARD_DIR.glob("*.json"):
        d = json.loads(path.read_text())
        assert d["uid"] and d["title"] and d["schemaVersion"] >= 36
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for p in d["panels"]:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, f"{path.name}: {p['title']} off the grid"
            if p["type"] != "row":
                assert p["targets"] and p["datasource"]["type"] == "prometheus"


def test_grafana_provisioning_points_at_the_dashboards():
    prov = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/serendip.yml").read_text())
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    path = prov["providers"][0]["options"]["path"]
    assert f"./{DASHBOARD_DIR.relative_to(REPO)}:{path}:ro" in mounts
    ds = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert (
        ds["datasources"][0]["uid"] == "prometheus"
        and ds["datasources"][0]["url"] == "http://prometheus:9090"
    )
    assert Path(REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").is_file()


def _cadence_s(schedule: str) -> int:
    """Interval of a "M */H * * *" cron schedule (the refresh CronJob's form)."""
    minute, hour, *rest = schedule.split()
    assert minute.isdigit() and hour.startswith("*/") and rest == ["*", "*", "*"], schedule
    return int(hour[2:]) * 3600


def test_refresh_stale_alert_is_twice_the_cronjob_cadence():
    cron = yaml.safe_load((REPO / "deploy/k8s/base/refresh-cronjob.yaml").read_text())
    rule = next(
        r
        for g in yaml.safe_load(ALERTS.read_text())["groups"]
        for r in g["rules"]
        if r.get("alert") == "SerendipRefreshStale"
    )
    age = r"time\(\) - max\(serendip_refresh_last_success_timestamp_seconds\{[^}]*\}\)\s*>\s*(\d+)"
    threshold = re.search(age, rule["expr"])
    assert threshold, rule["expr"]
    assert int(threshold.group(1)) == 2 * _cadence_s(cron["spec"]["schedule"])
    # Only pushed runs count: an on-demand RefreshUsers call of the interest service (job
    # serendip-interest) also sets the gauge and must not hide a failing periodic refresh.
    from interest_service.pushgateway import JOB

    assert rule["expr"].count(f'job="{JOB}"') == 3

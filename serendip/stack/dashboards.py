"""Grafana dashboards for Serendip, generated from this one description.

``python -m serendip.stack.dashboards deploy/k8s/base/monitoring/dashboards`` writes the JSON files
that docker-compose's Grafana provisions and the Kubernetes ConfigMap carries; a test checks that
the committed files equal this output and that every metric they query exists.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DS = {"type": "prometheus", "uid": "${datasource}"}
RECOMMEND = 'grpc_service="serendip.retrieval.v1.RetrievalService"'


def _panel(
    pid: int,
    title: str,
    exprs: list[tuple[str, str]],
    x: int,
    y: int,
    w: int = 12,
    h: int = 8,
    unit: str = "short",
    kind: str = "timeseries",
    stack: bool = False,
) -> dict[str, Any]:
    custom: dict[str, Any] = {"lineWidth": 1, "fillOpacity": 10}
    if stack:
        custom.update({"stacking": {"mode": "percent", "group": "A"}, "fillOpacity": 60})
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {
            "defaults": {"unit": unit, "custom": custom if kind == "timeseries" else {}},
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def _row(pid: int, title: str, y: int) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "row",
        "title": title,
        "collapsed": False,
        "panels": [],
        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
    }


def _dashboard(uid: str, title: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["serendip"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Data source",
                    "current": {"selected": True, "text": "Prometheus", "value": "prometheus"},
                }
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def services_dashboard() -> dict[str, Any]:
    q = "histogram_quantile"
    panels = [
        _row(1, "Retrieval: requests", 0),
        _panel(
            2,
            "Request rate by method and code",
            [
                (
                    f"sum by (grpc_method, grpc_code) (rate(grpc_server_handled_total{{{RECOMMEND}}}[$__rate_interval]))",  # noqa: E501
                    "{{grpc_method}} {{grpc_code}}",
                )
            ],
            0,
            1,
            unit="reqps",
        ),
        _panel(
            3,
            "Latency by method (p50 / p99)",
            [
                (
                    f"{q}(0.5, sum by (le, grpc_method) (rate(grpc_server_handling_seconds_bucket{{{RECOMMEND}}}[$__rate_interval])))",  # noqa: E501
                    "p50 {{grpc_method}}",
                ),
                (
                    f"{q}(0.99, sum by (le, grpc_method) (rate(grpc_server_handling_seconds_bucket{{{RECOMMEND}}}[$__rate_interval])))",  # noqa: E501
                    "p99 {{grpc_method}}",
                ),
            ],
            12,
            1,
            unit="s",
        ),
        _panel(
            4,
            "Server errors ratio by method",
            [
                (
                    f'sum by (grpc_method) (rate(grpc_server_handled_total{{{RECOMMEND},grpc_code!~"OK|INVALID_ARGUMENT|DEADLINE_EXCEEDED|CANCELLED"}}[$__rate_interval]))'  # noqa: E501
                    f" / clamp_min(sum by (grpc_method) (rate(grpc_server_handled_total{{{RECOMMEND}}}[$__rate_interval])), 1e-9)",  # noqa: E501
                    "{{grpc_method}}",
                )
            ],
            0,
            9,
            unit="percentunit",
        ),
        _panel(
            5,
            "Stage latency p99 (store, encode, search, rank)",
            [
                (
                    f"{q}(0.99, sum by (le, stage) (rate(serendip_retrieval_stage_seconds_bucket[$__rate_interval])))",  # noqa: E501
                    "{{stage}}",
                )
            ],
            12,
            9,
            unit="s",
        ),
        _row(6, "Retrieval: records and exploration", 17),
        _panel(
            7,
            "Record status mix",
            [
                (
                    "sum by (status) (rate(serendip_retrieval_record_status_total[$__rate_interval]))",
                    "{{status}}",
                )
            ],
            0,
            18,
            unit="percentunit",
            stack=True,
        ),
        _panel(
            8,
            "Exploration fill (novel items / novel slots)",
            [
                (
                    "sum(rate(serendip_retrieval_novel_items_total[$__rate_interval])) / "
                    "clamp_min(sum(rate(serendip_retrieval_novel_slots_total[$__rate_interval])), 1e-9)",
                    "filled",
                ),
                (
                    "sum(rate(serendip_retrieval_exploration_fill_ratio_sum[$__rate_interval])) / "
                    "clamp_min(sum(rate(serendip_retrieval_exploration_fill_ratio_count[$__rate_interval])), 1e-9)",  # noqa: E501
                    "mean per request",
                ),
            ],
            12,
            18,
            unit="percentunit",
        ),
        _panel(
            9,
            "Redis: failures by reason and circuit state",
            [
                (
                    "sum by (reason) (rate(serendip_retrieval_store_failures_total[$__rate_interval]))",
                    "{{reason}}",
                ),
                ("max(serendip_retrieval_store_circuit_state)", "circuit (0 closed, 1 open, 2 half-open)"),
            ],
            0,
            26,
        ),
        _panel(
            10,
            "Items returned by source",
            [("sum by (source) (rate(serendip_retrieval_items_total[$__rate_interval]))", "{{source}}")],
            12,
            26,
            unit="ops",
        ),
        _row(11, "Interest service: refresh", 34),
        _panel(
            12,
            "Refresh throughput by outcome (users/s)",
            [("sum by (outcome) (rate(serendip_interest_users_total[$__rate_interval]))", "{{outcome}}")],
            0,
            35,
            unit="ops",
        ),
        _panel(
            13,
            "Refresh failures and backend errors",
            [
                (
                    'sum(increase(serendip_interest_users_total{outcome="failed"}[$__rate_interval]))',
                    "failed users",
                ),
                (
                    "sum by (kind) (increase(serendip_interest_backend_errors_total[$__rate_interval]))",
                    "backend {{kind}}",
                ),
            ],
            12,
            35,
        ),
        _panel(
            14,
            "Records written by proposal source",
            [("sum by (source) (rate(serendip_interest_proposals_total[$__rate_interval]))", "{{source}}")],
            0,
            43,
            unit="ops",
            stack=True,
        ),
        _panel(
            15,
            "LLM batch latency p50 / p95 and tokens/s",
            [
                (
                    f"{q}(0.5, sum by (le) (rate(serendip_interest_batch_seconds_bucket[$__rate_interval])))",
                    "batch p50",
                ),
                (
                    f"{q}(0.95, sum by (le) (rate(serendip_interest_batch_seconds_bucket[$__rate_interval])))",  # noqa: E501
                    "batch p95",
                ),
                ("sum(rate(serendip_interest_generated_tokens_total[$__rate_interval]))", "tokens/s"),
            ],
            12,
            43,
        ),
    ]
    return _dashboard("serendip-services", "Serendip: services", panels)


def vllm_dashboard() -> dict[str, Any]:
    panels = [
        _panel(
            1,
            "Generation tokens/s",
            [
                ("sum(rate(vllm:generation_tokens_total[$__rate_interval]))", "generated"),
                ("sum(rate(vllm:prompt_tokens_total[$__rate_interval]))", "prompt"),
            ],
            0,
            0,
            unit="ops",
        ),
        _panel(
            2,
            "Queue: running and waiting requests",
            [("sum(vllm:num_requests_running)", "running"), ("sum(vllm:num_requests_waiting)", "waiting")],
            12,
            0,
        ),
        _panel(
            3,
            "End-to-end request latency p50 / p95",
            [
                (
                    "histogram_quantile(0.5, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket[$__rate_interval])))",  # noqa: E501
                    "p50",
                ),
                (
                    "histogram_quantile(0.95, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket[$__rate_interval])))",  # noqa: E501
                    "p95",
                ),
            ],
            0,
            8,
            unit="s",
        ),
        _panel(
            4,
            "Time to first token p95",
            [
                (
                    "histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[$__rate_interval])))",  # noqa: E501
                    "p95",
                )
            ],
            12,
            8,
            unit="s",
        ),
    ]
    return _dashboard("serendip-vllm", "Serendip: vLLM", panels)


DASHBOARDS = {"serendip-services.json": services_dashboard, "serendip-vllm.json": vllm_dashboard}


def render() -> dict[str, str]:
    return {name: json.dumps(make(), indent=2) + "\n" for name, make in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "deploy/k8s/base/monitoring/dashboards")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (out / name).write_text(text)
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

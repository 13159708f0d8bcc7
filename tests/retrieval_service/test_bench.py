"""`serendip bench retrieval` end to end on a tiny catalog (the real run uses --items 1000000)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from serendip.cli import app


def test_bench_runs_every_phase(tmp_path):
    report = tmp_path / "bench.json"
    args = [
        "bench",
        "retrieval",
        "--items",
        "3000",
        "--users",
        "300",
        "--concurrency",
        "8",
        "--duration",
        "1",
    ]
    args += ["--warmup", "0.3", "--cache", str(tmp_path / "synth"), "--report", str(report)]
    args += ["--channels", "2"]  # clients spread over two connections
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    r = json.loads(report.read_text())
    assert [(p["name"], p["concurrency"]) for p in r["phases"]] == [
        ("service", 1),
        ("service", 8),
        ("empty handler", 1),
        ("empty handler", 8),
    ]
    for phase in r["phases"]:
        assert phase["ok"] > 0 and phase["errors"] == 0
        assert phase["p50_ms"] <= phase["p95_ms"] <= phase["p99_ms"]
    service = r["phases"][1]
    assert service["record_status"]["RECORD_STATUS_HIT"] > 0  # 90 % of the users have a record
    assert service["item_sources"]["ITEM_SOURCE_NOVEL_INTEREST"] > 0
    stages = {"store_ms", "encode_ms", "search_ms", "rank_ms", "batch_size", "handling_ms"}
    assert set(r["phases"][0]["stages"]) == set(service["stages"]) == stages
    assert r["phases"][0]["stages"]["batch_size"] == 1.0  # one client: never anything to batch
    assert all(p["server_cpu_ms_per_call"] > 0 for p in r["phases"])
    assert set(r["targets"]) == {"p50_ms", "p99_ms", "rps_ratio"}

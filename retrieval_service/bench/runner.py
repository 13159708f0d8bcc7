"""Orchestrates `serendip bench retrieval`; every component is real and runs in its own process.

1. a synthetic bundle of ``--items`` items (cached under ``--cache``), 2. a real redis-server seeded
with histories and records, 3. the real service (`serendip serve-retrieval`), 4. an empty-handler
grpc.aio server, 5. the closed-loop load generator, run once per phase:
latency (few clients) and throughput (many clients) against both servers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from retrieval_service.bench.fixtures import seed_bench_users
from serendip.stack.health import grpc_serving
from serendip.stack.procs import serendip_argv
from serendip.store.server import RedisServer, free_port

TARGETS = {"p50_ms": 3.0, "p99_ms": 10.0, "rps_ratio": 0.5}
PREFIX = "serendip:v1"


@dataclass
class BenchConfig:
    items: int = 1_000_000
    users: int = 10_000
    k: int = 10
    concurrency: int = 32
    latency_concurrency: int = 1
    duration_s: float = 10.0
    warmup_s: float = 2.0
    profile_svg: Path | None = None
    cache: Path = Path("artifacts/synth")
    startup_timeout_s: float = 600.0
    nprobe: int | None = None  # service's retrieval.relevance_nprobe; None = its default
    channels: int = 1  # connections the load generator's clients share (both servers alike)
    workers: int | None = None  # service's retrieval.workers; None = its default


def wait_serving(target: str, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited with {proc.returncode} before serving")
        if grpc_serving(target):
            return
        time.sleep(0.2)
    raise TimeoutError(f"service at {target} not SERVING within {timeout_s}s")


def _wait_line(proc: subprocess.Popen[str], expected: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == expected:
            return
        if not line and proc.poll() is not None:
            break
    raise RuntimeError(f"empty server did not report '{expected}'")


def _load(target: str, users: int, cfg: BenchConfig, concurrency: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable, "-m", "retrieval_service.bench.loadgen",
            "--target", target, "--users", str(users), "--k", str(cfg.k),
            "--concurrency", str(concurrency), "--channels", str(cfg.channels),
            "--duration", str(cfg.duration_s), "--warmup", str(cfg.warmup_s),
        ],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live children: the service's compute
    workers (Linux /proc)."""
    total = 0.0
    for p in (pid, *_children(pid)):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = task / "children"
        if children.exists():
            out += [int(c) for c in children.read_text().split()]
    return out


def _metric_sums(metrics_port: int) -> dict[tuple[str, str], float]:
    """Every histogram ``_sum``/``_count`` of the service's /metrics, keyed by (name, stage or method)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    values: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith(("_sum", "_count")):
                values[(s.name, s.labels.get("stage") or s.labels.get("grpc_method", ""))] = s.value
    return values


def _phase_means(
    before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]
) -> dict[str, float]:
    """Over one phase (warm-up included): mean stage times per micro-batch (ms), mean batch size, and
    the mean server-side handling time of Recommend (ms; client latency minus this is transport and
    queueing outside the handler)."""

    def mean(name: str, key: str) -> float | None:
        count = after.get((f"{name}_count", key), 0.0) - before.get((f"{name}_count", key), 0.0)
        total = after.get((f"{name}_sum", key), 0.0) - before.get((f"{name}_sum", key), 0.0)
        return total / count if count else None

    means: dict[str, float] = {}
    for stage in ("store", "encode", "search", "rank"):
        if (m := mean("serendip_retrieval_stage_seconds", stage)) is not None:
            means[f"{stage}_ms"] = 1000 * m
    if (m := mean("serendip_retrieval_batch_size", "")) is not None:
        means["batch_size"] = m
    if (m := mean("grpc_server_handling_seconds", "Recommend")) is not None:
        means["handling_ms"] = 1000 * m
    return means


def run_bench(cfg: BenchConfig, console: Console) -> dict[str, Any]:
    from serendip.cli import _synth_cached

    bundle = _synth_cached(cfg.cache, cfg.items)
    console.print(
        f"bundle {bundle.bundle_id}: {bundle.index.n_items:,} items, {bundle.index.n_clusters} clusters"
    )
    result: dict[str, Any] = {
        "config": {k: str(v) for k, v in asdict(cfg).items()},
        "bundle_id": bundle.bundle_id,
    }
    procs: list[subprocess.Popen[Any]] = []
    with RedisServer() as redis_server, tempfile.TemporaryDirectory(prefix="serendip-bench-") as tmp:
        client = redis.Redis.from_url(redis_server.url)
        users, records = seed_bench_users(client, PREFIX, bundle, cfg.users)
        client.close()
        console.print(f"redis: {users:,} users with histories, {records:,} records")
        port, metrics_port, empty_port = free_port(), free_port(), free_port()
        config = Path(tmp) / "bench.toml"
        config.write_text(
            f'[redis]\nurl = "{redis_server.url}"\nkey_prefix = "{PREFIX}"\n'
            f'[bundle]\nroot = "{bundle.path.resolve()}"\n'
            f'[retrieval]\nhost = "127.0.0.1"\nport = {port}\nmetrics_port = {metrics_port}\n'
            f"watch_interval_s = 0\ndrain_delay_s = 0\n"
            + (f"relevance_nprobe = {cfg.nprobe}\n" if cfg.nprobe else "")
            + (f"workers = {cfg.workers}\n" if cfg.workers is not None else "")
        )
        env = {**os.environ, "SERENDIP_CONFIG": str(config)}
        del bundle  # the service loads its own copy; keep this process small
        try:
            t0 = time.perf_counter()
            service = subprocess.Popen(serendip_argv("serve-retrieval", "--log-level", "WARNING"), env=env)
            procs.append(service)
            wait_serving(f"127.0.0.1:{port}", cfg.startup_timeout_s, service)
            result["service_startup_s"] = round(time.perf_counter() - t0, 1)
            console.print(f"service SERVING after {result['service_startup_s']}s (pid {service.pid})")
            empty = subprocess.Popen(
                [sys.executable, "-m", "retrieval_service.bench.empty_server", "--port", str(empty_port)],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            procs.append(empty)
            _wait_line(empty, "ready", 60)

            phases = [
                ("service", port, cfg.latency_concurrency),
                ("service", port, cfg.concurrency),
                ("empty handler", empty_port, cfg.latency_concurrency),
                ("empty handler", empty_port, cfg.concurrency),
            ]
            result["phases"] = []
            for name, target_port, concurrency in phases:
                console.print(
                    f"load: {name}, {concurrency} clients, {cfg.warmup_s:g}s + {cfg.duration_s:g}s ..."
                )
                profiler = None
                if cfg.profile_svg and name == "service" and concurrency == cfg.concurrency:
                    profiler = _start_profiler(service.pid, cfg, console)
                server_pid = service.pid if name == "service" else empty.pid
                cpu0 = _cpu_seconds(server_pid)
                sums0 = _metric_sums(metrics_port) if name == "service" else {}
                phase = _load(f"127.0.0.1:{target_port}", users, cfg, concurrency)
                phase["name"] = name
                # CPU per answered call barely depends on what else runs on the machine, unlike RPS.
                cpu = _cpu_seconds(server_pid) - cpu0
                phase["server_cpu_ms_per_call"] = 1000 * cpu / max(1, phase["answered_total"])
                if name == "service":
                    phase["stages"] = _phase_means(sums0, _metric_sums(metrics_port))
                result["phases"].append(phase)
                if profiler:
                    profiler.wait(timeout=cfg.duration_s + cfg.warmup_s + 60)
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
    _judge(result)
    return result


def _start_profiler(pid: int, cfg: BenchConfig, console: Console) -> subprocess.Popen[bytes] | None:
    # The venv's own bin first: `serendip` is often run by path without activating the venv.
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not py_spy or cfg.profile_svg is None:
        console.print("[yellow]py-spy not found (pip install py-spy): no profile[/yellow]")
        return None
    cfg.profile_svg.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            py_spy, "record", "--pid", str(pid), "--output", str(cfg.profile_svg),
            # .txt: collapsed stacks (greppable); anything else: a flame graph SVG
            "--format", "raw" if cfg.profile_svg.suffix == ".txt" else "flamegraph",
            "--duration", str(int(cfg.warmup_s + cfg.duration_s)), "--rate", "250", "--nonblocking",
            "--threads",  # one stack root per thread: the event loop and the compute thread apart
            "--subprocesses",  # and the compute worker processes
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _judge(result: dict[str, Any]) -> None:
    by = {(p["name"], p["concurrency"]): p for p in result["phases"]}
    cfg = result["config"]
    lat_c, thr_c = int(cfg["latency_concurrency"]), int(cfg["concurrency"])
    latency = by[("service", lat_c)]
    throughput, empty = by[("service", thr_c)], by[("empty handler", thr_c)]
    ratio = throughput["rps"] / empty["rps"] if empty["rps"] else 0.0
    result["rps_ratio"] = ratio
    result["targets"] = {
        "p50_ms": {
            "measured": latency["p50_ms"],
            "target": TARGETS["p50_ms"],
            "ok": latency["p50_ms"] <= TARGETS["p50_ms"],
        },
        "p99_ms": {
            "measured": latency["p99_ms"],
            "target": TARGETS["p99_ms"],
            "ok": latency["p99_ms"] <= TARGETS["p99_ms"],
        },
        "rps_ratio": {"measured": ratio, "target": TARGETS["rps_ratio"], "ok": ratio >= TARGETS["rps_ratio"]},
    }


def print_report(result: dict[str, Any], console: Console) -> None:
    cfg = result["config"]
    table = Table(
        title=f"retrieval: {cfg['items']} items, k={cfg['k']}, bundle {result['bundle_id']} (times in ms)"
    )
    # Short headers: a non-terminal console is 80 columns wide.
    for col in ("server", "clients", "calls", "errors", "RPS", "p50", "p95", "p99", "CPU/call"):
        table.add_column(col, justify="left" if col == "server" else "right")
    for p in result["phases"]:
        table.add_row(
            p["name"].split()[0], str(p["concurrency"]), f"{p['ok']:,}", str(p["errors"]), f"{p['rps']:,.0f}",
            f"{p['p50_ms']:.2f}", f"{p['p95_ms']:.2f}", f"{p['p99_ms']:.2f}",
            f"{p['server_cpu_ms_per_call']:.3f}",
        )  # fmt: skip
    console.print(table)
    for p in result["phases"]:
        if p.get("stages"):
            stages = ", ".join(f"{k} {v:.3f}" for k, v in p["stages"].items())
            console.print(f"service, {p['concurrency']} clients, per micro-batch: {stages}")
    service = next(p for p in result["phases"] if p["name"] == "service")
    console.print(f"record status: {service['record_status']}; item sources: {service['item_sources']}")
    for name, t in result["targets"].items():
        mark = "[green]ok[/green]" if t["ok"] else "[red]MISSED[/red]"
        op = ">=" if name == "rps_ratio" else "<="
        console.print(f"{name}: {t['measured']:.3f} (target {op} {t['target']}) {mark}")

"""`serendip serve-retrieval`, `serendip recommend`, `serendip reload-bundle`, `serendip bench retrieval`.

Registered through the `serendip.cli` entry point; heavy imports (torch, FAISS) stay inside commands
so that `serendip --help` is quick.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (else $SERENDIP_CONFIG).")
]
TargetOpt = Annotated[
    str | None, typer.Option(help="HOST:PORT of the service (default localhost:<retrieval.port>).")
]


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("serve-retrieval")(serve_retrieval)
    app.command("recommend")(recommend)
    app.command("reload-bundle")(reload_bundle)
    bench_app.command("retrieval")(bench_retrieval)


def _service_settings(config: Path | None):
    from retrieval_service.config import ServiceSettings
    from serendip.cli import settings_from

    try:
        return ServiceSettings.from_settings(settings_from(config))
    except ValueError as exc:  # pydantic's ValidationError of the [retrieval] section
        console.print(f"[red]invalid configuration:[/red] {exc}")
        raise typer.Exit(2) from exc


def _target(target: str | None, config: Path | None) -> str:
    return target or f"localhost:{_service_settings(config).retrieval.port}"


def serve_retrieval(
    config: ConfigOpt = None,
    port: Annotated[int | None, typer.Option(help="gRPC port (overrides retrieval.port).")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus port (overrides retrieval.metrics_port).")
    ] = None,
    bundle: Annotated[Path | None, typer.Option(help="Bundle dir or root (overrides bundle.root).")] = None,
    redis_url: Annotated[str | None, typer.Option(help="Redis URL (overrides redis.url).")] = None,
    log_level: str = "INFO",
) -> None:
    """Serve the gRPC RetrievalService (health, reflection, Prometheus metrics) until SIGTERM."""
    from retrieval_service.server import run
    from serendip.bundle import BundleError
    from serendip.store import RedisServer

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _service_settings(config)
    if port is not None:
        settings.retrieval.port = port
    if metrics_port is not None:
        settings.retrieval.metrics_port = metrics_port
    if bundle is not None:
        settings.bundle.root = bundle
    if redis_url is not None:
        settings.redis.url = redis_url
    embedded = None
    if not settings.redis.url:
        embedded = RedisServer().start()
        settings.redis.url = embedded.url
        console.print(f"[yellow]redis.url unset: started an empty embedded Redis at {embedded.url}[/yellow]")
    try:
        run(settings)
    except BundleError as exc:
        console.print(f"[red]cannot serve:[/red] {exc}")
        raise typer.Exit(1) from exc
    finally:
        if embedded:
            embedded.close()


def recommend(
    user: Annotated[str, typer.Argument(help="User id.")],
    k: Annotated[int, typer.Option("--k", help="How many items.")] = 10,
    ratio: Annotated[
        float | None, typer.Option(help="Exploration ratio 0..1 (default: the service's).")
    ] = None,
    recent: Annotated[
        list[str] | None, typer.Option(help="A fresh history item (repeatable, newest first).")
    ] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="An item never to return (repeatable).")] = None,
    target: TargetOpt = None,
    timeout: Annotated[float, typer.Option(help="Deadline in seconds.")] = 5.0,
    config: ConfigOpt = None,
) -> None:
    """Ask the retrieval service for a user's list and print it as a table."""
    import grpc

    from retrieval_service.client import recommend as call
    from retrieval_service.client import render

    try:
        resp = call(_target(target, config), user, k, ratio, recent, exclude, timeout)
    except grpc.RpcError as exc:
        console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
        raise typer.Exit(2 if exc.code() == grpc.StatusCode.INVALID_ARGUMENT else 1) from exc
    render(console, user, resp)


def reload_bundle(
    path: Annotated[
        str, typer.Argument(help="Bundle dir or root; empty = the service's configured root.")
    ] = "",
    target: TargetOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Ask a running retrieval service to load, verify and swap in a bundle."""
    import grpc

    from serendip.api.retrieval.v1 import retrieval_pb2 as pb
    from serendip.api.retrieval.v1 import retrieval_pb2_grpc as pb_grpc

    with grpc.insecure_channel(_target(target, config)) as channel:
        try:
            r = pb_grpc.RetrievalAdminServiceStub(channel).ReloadBundle(
                pb.ReloadBundleRequest(path=path), timeout=600
            )
        except grpc.RpcError as exc:
            console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
            raise typer.Exit(1) from exc
    if r.changed:
        was = f"was {r.previous_bundle_id}; loaded in {r.load_seconds:.1f}s"
        console.print(f"[green]serving {r.bundle_id}[/green] ({was})")
    else:
        console.print(f"already serving {r.bundle_id}")


def bench_retrieval(
    items: Annotated[int, typer.Option(help="Catalog size of the synthetic bundle.")] = 1_000_000,
    users: Annotated[int, typer.Option(help="Users with a history and (mostly) a record.")] = 10_000,
    k: Annotated[int, typer.Option("--k")] = 10,
    concurrency: Annotated[int, typer.Option(help="Closed-loop clients for the throughput phase.")] = 32,
    latency_concurrency: Annotated[int, typer.Option(help="Closed-loop clients for the latency phase.")] = 1,
    duration: Annotated[float, typer.Option(help="Seconds per measured phase.")] = 10.0,
    warmup: Annotated[float, typer.Option(help="Unmeasured seconds before each phase.")] = 2.0,
    profile: Annotated[
        Path | None,
        typer.Option(help="py-spy the service during the throughput phase: .svg flame graph or .txt stacks."),
    ] = None,
    cache: Annotated[Path, typer.Option(help="Where synthetic bundles are kept.")] = Path("artifacts/synth"),
    report: Annotated[Path | None, typer.Option(help="Also write the results as JSON here.")] = None,
    nprobe: Annotated[int | None, typer.Option(help="Service's relevance_nprobe (default: config).")] = None,
    channels: Annotated[
        int, typer.Option(min=1, help="Connections the load generator opens (clients share them).")
    ] = 1,
    workers: Annotated[
        int | None, typer.Option(min=0, help="Service's compute worker processes (default: config).")
    ] = None,
) -> None:
    """Real service and Redis, closed-loop load from another process, vs an empty grpc.aio handler."""
    from retrieval_service.bench.runner import BenchConfig, print_report, run_bench

    cfg = BenchConfig(
        items=items,
        users=users,
        k=k,
        concurrency=concurrency,
        latency_concurrency=latency_concurrency,
        duration_s=duration,
        warmup_s=warmup,
        profile_svg=profile,
        cache=cache,
        nprobe=nprobe,
        channels=channels,
        workers=workers,
    )
    result = run_bench(cfg, console)
    print_report(result, console)
    if report:
        import json

        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result, indent=1))

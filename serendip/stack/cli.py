"""`serendip up` (registered by serendip/cli.py; the core's own command, not a plugin)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    app.command("up")(up)


def up(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML config file (else $SERENDIP_CONFIG).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address every endpoint binds to.")] = "127.0.0.1",
    retrieval_port: Annotated[int, typer.Option(help="Retrieval gRPC port (0 = any free).")] = 50051,
    retrieval_metrics_port: Annotated[int, typer.Option(help="Retrieval Prometheus port.")] = 9101,
    interest_port: Annotated[int, typer.Option(help="Interest gRPC port (0 = any free).")] = 50052,
    interest_metrics_port: Annotated[int, typer.Option(help="Interest Prometheus port.")] = 9102,
    demo_port: Annotated[int, typer.Option(help="Demo page HTTP port (0 = any free, -1 = none).")] = 8080,
    redis_port: Annotated[int, typer.Option(help="Embedded Redis port (0 = any free).")] = 0,
    state_dir: Annotated[Path, typer.Option(help="Logs and the embedded Redis's data.")] = Path(
        "artifacts/stack"
    ),
    build: Annotated[bool, typer.Option(help="Build the bundle when none is published.")] = True,
    seed: Annotated[bool, typer.Option(help="Seed recent histories from the bundle.")] = True,
    refresh: Annotated[
        str, typer.Option(help="wait (before serving) | background (beside the services) | skip.")
    ] = "background",
    refresh_arg: Annotated[
        list[str] | None, typer.Option(help="An argument passed to `serendip refresh` (repeatable).")
    ] = None,
    interest: Annotated[bool, typer.Option(help="Start the interest service.")] = True,
    ready_timeout: Annotated[float, typer.Option(help="Seconds a service may take to be SERVING.")] = 600.0,
) -> None:
    """Run the whole stack locally (no Docker): Redis, bundle, histories, refresh, both services, demo.

    Ctrl-C stops everything cleanly.
    """
    from serendip.cli import settings_from
    from serendip.stack.up import Stack, UpOptions, run_up

    if refresh not in ("wait", "background", "skip"):
        console.print(f"[red]--refresh must be wait, background or skip, got {refresh!r}[/red]")
        raise typer.Exit(2)
    settings = settings_from(config)
    options = UpOptions(
        config=config,
        host=host,
        retrieval_port=retrieval_port,
        retrieval_metrics_port=retrieval_metrics_port,
        interest_port=interest_port,
        interest_metrics_port=interest_metrics_port,
        demo_port=None if demo_port < 0 else demo_port,
        redis_port=redis_port,
        state_dir=state_dir,
        build=build,
        seed=seed,
        refresh=refresh,  # type: ignore[arg-type]
        refresh_args=list(refresh_arg or []),
        interest=interest,
        ready_timeout_s=ready_timeout,
    )

    def ready(stack: Stack) -> None:
        console.print("[bold green]serendip is up[/bold green]")
        for e in stack.endpoints:
            metrics = f"  metrics {e.metrics}" if e.metrics else ""
            log = f"  log {e.log}" if e.log else ""
            console.print(f"  {e.name:<17} {e.address}{metrics}{log}", highlight=False, soft_wrap=True)
        target = f"{host}:{stack.retrieval_port}"
        console.print(
            f"try: serendip recommend {_example_user(stack)} --target {target}   (Ctrl-C stops everything)",
            highlight=False,
            soft_wrap=True,
        )

    code = run_up(settings, options, say=lambda m: console.print(m, highlight=False), on_ready=ready)
    raise typer.Exit(code)


def _example_user(stack) -> str:
    demo = stack.demo
    if demo is not None:
        users = demo.app.catalog.refresh().users
        if users:
            return users[0]
    return "<user>"

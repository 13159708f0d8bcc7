"""`serendip refresh`, `serendip serve-interest`, `serendip bench refresh`.

Registered through the `serendip.cli` entry point; torch/transformers load inside the commands so
`serendip --help` stays quick.
"""

from __future__ import annotations

import json
import logging
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from interest_service.eval_cli import eval_cmd

console = Console()
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (else $SERENDIP_CONFIG).")
]
BundleOpt = Annotated[Path | None, typer.Option(help="Bundle dir or root (overrides bundle.root).")]
RedisOpt = Annotated[str | None, typer.Option(help="Redis URL (overrides redis.url).")]
BackendOpt = Annotated[str | None, typer.Option(help="local | openai (overrides interest.backend).")]


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("refresh")(refresh)
    app.command("serve-interest")(serve_interest)
    app.command("eval")(eval_cmd)
    bench_app.command("refresh")(bench_refresh_cmd)
    from interest_service.finetune import cli as finetune_cli

    app.command("sft-data")(finetune_cli.sft_data)
    app.command("finetune")(finetune_cli.finetune)


def _setup(config: Path | None, bundle: Path | None, backend: str | None = None, **interest: object):
    from interest_service.config import InterestConfig
    from serendip.bundle import BundleError, load_bundle
    from serendip.cli import settings_from

    settings = settings_from(config)
    try:
        cfg = InterestConfig.from_settings(settings)
        if backend is not None:
            cfg = InterestConfig.model_validate({**cfg.model_dump(), "backend": backend})
    except ValueError as exc:
        console.print(f"[red]invalid configuration:[/red] {exc}")
        raise typer.Exit(2) from exc
    try:
        b = load_bundle(bundle or settings.bundle.root)
    except (BundleError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    return settings, cfg, b


def _redis(cfg, redis_url: str | None):
    import redis

    url = redis_url or cfg.redis_url
    if not url:
        console.print(
            "[red]no Redis:[/red] set redis.url (or --redis-url); records must outlive this process"
        )
        raise typer.Exit(2)
    client = redis.Redis.from_url(url, socket_timeout=30)
    try:
        client.ping()
    except redis.RedisError as exc:
        console.print(f"[red]Redis at {url} is unreachable:[/red] {exc}")
        raise typer.Exit(1) from exc
    return client


def _engine(cfg, b, client):
    from interest_service.backends import BackendError, make_backend
    from interest_service.engine import InterestEngine

    try:
        backend = make_backend(cfg)
    except (BackendError, ImportError, OSError) as exc:
        console.print(f"[red]cannot start the {cfg.backend} backend:[/red] {exc}")
        raise typer.Exit(1) from exc
    return InterestEngine(cfg, b, backend, client)


class RefreshEngine(StrEnum):
    local = "local"
    ray = "ray"


def refresh(
    config: ConfigOpt = None,
    bundle: BundleOpt = None,
    redis_url: RedisOpt = None,
    backend: BackendOpt = None,
    users: Annotated[
        str | None, typer.Option(help="Comma-separated user ids (default: all with a history).")
    ] = None,
    users_file: Annotated[Path | None, typer.Option(help="File with one user id per line.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many users.")] = None,
    force: Annotated[bool, typer.Option(help="Refresh fresh records too.")] = False,
    fresh: Annotated[bool, typer.Option(help="Ignore an interrupted run's checkpoint.")] = False,
    seed_histories: Annotated[
        bool, typer.Option(help="First fill Redis history lists from the bundle's interactions (demo).")
    ] = False,
    tuple_mode: Annotated[
        bool | None, typer.Option(help="Serve frequent cluster tuples from one call.")
    ] = None,
    engine: Annotated[
        RefreshEngine, typer.Option(help="local: in this process | ray: user shards over Ray actors.")
    ] = RefreshEngine.local,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster to join (default $RAY_ADDRESS, else a local Ray).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Ray actors (default: cluster CPUs / --cpus-per-worker).")
    ] = None,
    shard_size: Annotated[int, typer.Option(min=1, help="Users per Ray shard.")] = 256,
    cpus_per_worker: Annotated[float, typer.Option(min=0.0, help="CPUs reserved per Ray actor.")] = 1.0,
) -> None:
    """Propose novel interest clusters for users whose record is missing, stale or outdated."""
    from interest_service.pushgateway import RefreshRun, push_refresh_run
    from serendip.store import record_key, user_histories
    from serendip.store import seed_histories as seed

    _, cfg, b = _setup(config, bundle, backend)
    if tuple_mode is not None:
        cfg.refresh.tuple_mode = tuple_mode
    if engine is RefreshEngine.ray and cfg.refresh.tuple_mode:
        # Tuples are counted over all selected users; per shard they would be counted (and their
        # shared table written) by every actor separately.
        console.print("[red]refresh.tuple_mode is not supported with --engine ray[/red] (use --engine local)")
        raise typer.Exit(2)
    ids: list[str] | None = None
    if users:
        ids = [u.strip() for u in users.split(",") if u.strip()]
    if users_file:
        if not users_file.is_file():
            console.print(f"[red]users file not found:[/red] {users_file}")
            raise typer.Exit(2)
        ids = (ids or []) + [line.strip() for line in users_file.read_text().splitlines() if line.strip()]
    for uid in ids or []:
        try:
            record_key(cfg.redis_prefix, uid)
        except ValueError as exc:
            console.print(f"[red]invalid user id {uid!r}:[/red] {exc}")
            raise typer.Exit(2) from exc
    run = RefreshRun(engine=engine.value, started_at=time.time())
    try:
        client = _redis(cfg, redis_url)
        cfg.redis_url = redis_url or cfg.redis_url  # Ray workers connect from the config they are sent
        if seed_histories:
            n = seed(
                client,
                cfg.redis_prefix,
                user_histories(b.interactions, cfg.positive_threshold, cfg.refresh.history_len),
            )
            console.print(f"seeded {n:,} history lists")
        if engine is RefreshEngine.ray:
            report = _refresh_on_ray(
                cfg, b, client, ids, limit, force, fresh, ray_address, workers, shard_size, cpus_per_worker
            )
            stats, images, model = report.stats, report.images, f"{cfg.backend} backend on Ray"
            run.failed_shards = len(report.failed)
        else:
            stats, images, model = _refresh_local(cfg, b, client, ids, limit, force, fresh)
        run.stats = stats
        _print_refresh_summary(stats, images, f"refresh: bundle {b.bundle_id}, model {model}")
        run.success = not stats.outcomes.get("failed") and not run.failed_shards
    finally:
        if cfg.refresh.pushgateway_url:
            if push_refresh_run(cfg.refresh.pushgateway_url, run):
                console.print(f"metrics pushed to {cfg.refresh.pushgateway_url}")
            else:
                console.print(f"[yellow]could not push metrics to {cfg.refresh.pushgateway_url}[/yellow]")
    if not run.success:
        raise typer.Exit(1)


def _refresh_local(cfg, b, client, ids, limit, force, fresh):
    from interest_service.refresh import run_refresh
    from serendip.cli_progress import RichProgress

    engine = _engine(cfg, b, client)
    with RichProgress(console) as progress:
        stats = run_refresh(engine, ids, force=force, limit=limit, progress=progress, fresh=fresh)
    return stats, engine.images.stats, engine.backend.model_id


def _refresh_on_ray(cfg, b, client, ids, limit, force, fresh, address, workers, shard_size, cpus_per_worker):
    from interest_service.distributed import run_distributed, unique
    from interest_service.selection import scan_users
    from serendip.cli_progress import RichProgress

    try:
        import ray  # noqa: F401 - fail here, with the fix, rather than inside the engine

        from serendip.stack.ray_engine import RayEngine
    except ImportError as exc:
        console.print(f"[red]--engine ray needs Ray:[/red] {exc} (pip install 'serendip[stack]')")
        raise typer.Exit(2) from exc
    user_ids = unique(ids if ids is not None else sorted(scan_users(client, cfg.redis_prefix)))
    if limit is not None:
        user_ids = user_ids[:limit]
    ray_engine = RayEngine(
        num_workers=workers, shard_size=shard_size, address=address, cpus_per_worker=cpus_per_worker
    )
    try:
        with RichProgress(console) as progress:
            progress.stage(f"refreshing {len(user_ids):,} users on Ray ({shard_size}/shard)", len(user_ids))
            report = run_distributed(
                ray_engine, cfg, b.path, user_ids, force=force, fresh=fresh,
                on_shard=lambda shard: progress.advance(len(shard.users)),
            )  # fmt: skip
    finally:
        ray_engine.shutdown()
    console.print(f"{report.shards} shards on {len(report.workers)} Ray workers, {len(report.failed)} failed")
    for shard in report.failed:
        more = len(shard.users) - 20
        shown = ", ".join(shard.users[:20]) + (f" … (+{more})" if more > 0 else "")
        console.print(f"[red]failed shard[/red] ({len(shard.users)} users: {shown}): {shard.error}")
    return report


def _print_refresh_summary(stats, images, title: str) -> None:
    table = Table(title=title)
    table.add_column("what")
    table.add_column("count", justify="right")
    for k, v in sorted(stats.selection.items()):
        table.add_row(f"selection: {k}", str(v))
    for k, v in sorted(stats.outcomes.items()):
        table.add_row(f"outcome: {k}", str(v))
    for k, v in sorted(stats.dropped.items()):
        table.add_row(f"dropped cluster: {k}", str(v))
    for k, v in sorted(images.items()):
        table.add_row(f"images: {k}", str(v))
    if stats.resumed_skipped:
        table.add_row("done by the interrupted run", str(stats.resumed_skipped))
    console.print(table)
    console.print(
        f"{stats.processed} users in {stats.seconds:.1f}s ({stats.users_per_s:.2f} users/s), "
        f"{stats.tokens:,} tokens, largest record {stats.record_bytes_max} B"
    )


def serve_interest(
    config: ConfigOpt = None,
    bundle: BundleOpt = None,
    redis_url: RedisOpt = None,
    backend: BackendOpt = None,
    port: Annotated[int | None, typer.Option(help="gRPC port (overrides interest.server.grpc_port).")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Prometheus port (0 = off).")] = None,
    log_level: str = "INFO",
) -> None:
    """Serve the gRPC InterestService admin API (health, reflection, Prometheus) until SIGTERM."""
    from interest_service.server import serve

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _, cfg, b = _setup(config, bundle, backend)
    client = _redis(cfg, redis_url)
    engine = _engine(cfg, b, client)
    serve(
        engine,
        cfg.server.host,
        cfg.server.grpc_port if port is None else port,
        cfg.server.metrics_port if metrics_port is None else metrics_port,
        cfg.server.max_workers,
    )


def bench_refresh_cmd(
    config: ConfigOpt = None,
    bundle: BundleOpt = None,
    users: Annotated[int, typer.Option(help="Users for the batched run.")] = 32,
    naive_users: Annotated[int, typer.Option(help="Users for the naive one-at-a-time loop.")] = 4,
    inline_users: Annotated[int, typer.Option(help="Users with inline item descriptions (0 = skip).")] = 8,
    batch_size: Annotated[int | None, typer.Option(help="Overrides interest.local.batch_size.")] = None,
    threads: Annotated[
        int | None, typer.Option(help="Torch threads (overrides interest.local.threads).")
    ] = None,
    dtype: Annotated[str | None, typer.Option(help="auto | float32 | bfloat16.")] = None,
    quantize: Annotated[
        str | None, typer.Option(help="none | int8 (overrides interest.local.quantize).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the numbers as JSON here.")] = None,
) -> None:
    """Refresh throughput with the default CPU model: batched + shared prefix vs naive, same run."""
    from interest_service.bench import bench_refresh
    from serendip.cli_progress import RichProgress

    _, cfg, b = _setup(config, bundle, "local")
    if batch_size is not None:
        cfg.local.batch_size = batch_size
    if threads is not None:
        cfg.local.threads = threads
    if dtype is not None:
        cfg.local.dtype = dtype  # type: ignore[assignment]
    if quantize is not None:
        cfg.local.quantize = quantize  # type: ignore[assignment]
    with RichProgress(console) as progress:
        r = bench_refresh(b, cfg, users, naive_users, inline_users, progress)
    table = Table(
        title=f"refresh: {r.model_id} ({r.dtype}, quantize {cfg.local.quantize}, {r.threads} threads), "
        f"{r.n_clusters} clusters, static prefix {r.prefix_tokens} tokens, batch {r.batch_size}"
    )
    for col in ("mode", "users", "users/s", "tokens/user", "valid JSON"):
        table.add_column(col, justify="right" if col != "mode" else "left")
    rows = [("batched + shared prefix", r.batched), ("naive one-at-a-time", r.naive)]
    if r.inline:
        rows.append(("batched, items described inline", r.inline))
    for name, m in rows:
        table.add_row(
            name, str(m.users), f"{m.users_per_s:.3f}", f"{m.tokens_per_user:.0f}", f"{m.valid}/{m.users}"
        )
    console.print(table)
    console.print(
        f"speed-up batched vs naive: [bold]{r.speedup:.1f}x[/bold] (target >= 5x; >= 1 user/s on 2 cores)"
    )
    if r.describe_items:
        amortised = r.batched.users / (r.batched.seconds + r.describe_s)
        console.print(
            f"describing {r.describe_items} items once took {r.describe_s:.1f}s "
            f"({r.describe_s / r.describe_items:.2f}s/item); batched incl. that: {amortised:.3f} users/s"
        )
    console.print(f"model load {r.load_s:.1f}s (not counted)")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(r.as_dict(), indent=1))

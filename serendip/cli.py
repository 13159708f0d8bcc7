"""The `serendip` command line. Services add their commands through the `serendip.cli` entry points,
so the core never imports a service."""

from __future__ import annotations

import json
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from serendip.config import Settings, load_settings

if TYPE_CHECKING:
    from serendip.data import Dataset

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Serendip: serendipitous recommendation.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (each compares against the naive way).")
app.add_typer(bench_app, name="bench")
console = Console()

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (else $SERENDIP_CONFIG).")
]


def settings_from(config: Path | None, *, data: Path | None = None, adapter: str | None = None) -> Settings:
    """The configuration tree, with the dataset options commands share (--data, --adapter) applied
    and validated like the rest; a bad file or value exits 2 with the message."""
    try:
        settings = load_settings(config)
        if data is None and adapter is None:
            return settings
        overrides = {"path": data, "adapter": adapter}
        dumped = settings.model_dump()
        dumped["data"].update({k: v for k, v in overrides.items() if v is not None})
        return Settings.model_validate(dumped)
    except Exception as exc:  # pydantic's ValidationError and a missing file alike
        console.print(f"[red]invalid configuration:[/red] {exc}")
        raise typer.Exit(2) from exc


def dataset_from(settings: Settings) -> Dataset:
    """The configured dataset, announced on the console; unreadable input exits 2 with the message."""
    from serendip.data import DataError, load_dataset

    try:
        dataset = load_dataset(settings.data.adapter, settings.data.path)
    except (DataError, FileNotFoundError) as exc:
        console.print(f"[red]bad input:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(
        f"dataset [bold]{dataset.name}[/bold]: {dataset.n_items:,} items, "
        f"{len(dataset.interactions):,} interactions"
    )
    return dataset


@app.command()
def build(
    config: ConfigOpt = None,
    data: Annotated[Path | None, typer.Option(help="Dataset directory (overrides data.path).")] = None,
    adapter: Annotated[str | None, typer.Option(help="movielens | tabular (overrides data.adapter).")] = None,
    out: Annotated[Path | None, typer.Option(help="Bundle root (overrides bundle.root).")] = None,
) -> None:
    """Build a verified artifact bundle from a dataset."""
    from serendip.bundle import load_bundle
    from serendip.cli_progress import RichProgress
    from serendip.pipeline import build_bundle

    settings = settings_from(config, data=data, adapter=adapter)
    if out is not None:
        settings.bundle.root = out
    dataset = dataset_from(settings)
    with RichProgress() as progress:
        result = build_bundle(dataset, settings, progress)
    bundle = load_bundle(result.path)  # verify what we just published
    ev = result.summary["evaluation"]
    console.print(f"[green]bundle published[/green] {bundle.path}")
    console.print(
        f"taxonomy: {result.summary['n_clusters']} clusters in {result.summary['n_groups']} groups "
        f"(sizes {result.summary['cluster_size_min']}..{result.summary['cluster_size_max']})"
    )
    console.print(
        f"Recall@10 {ev['sasrec']['recall']:.4f} / NDCG@10 {ev['sasrec']['ndcg']:.4f} "
        f"(popularity {ev['popularity']['recall']:.4f} / {ev['popularity']['ndcg']:.4f})"
    )


@app.command()
def synth(
    items: Annotated[int, typer.Option(help="Catalog size.")] = 1_000_000,
    clusters: Annotated[int | None, typer.Option(help="Interest clusters (default ~items/1000).")] = None,
    users: Annotated[int, typer.Option(help="Synthetic users with histories.")] = 10_000,
    out: Annotated[Path, typer.Option(help="Bundle root.")] = Path("artifacts/synth"),
    seed: int = 0,
    config: ConfigOpt = None,
) -> None:
    """Write a benchmark bundle (same format) with random but clustered embeddings."""
    from serendip.cli_progress import RichProgress
    from serendip.synth import synth_bundle

    settings = settings_from(config)
    with RichProgress() as progress:
        path = synth_bundle(
            out, items, clusters, n_users=users, seqcfg=settings.seqmodel, seed=seed, progress=progress
        )
    console.print(f"[green]synthetic bundle published[/green] {path}")


@app.command()
def info(
    bundle: Annotated[Path | None, typer.Argument(help="Bundle dir or root (default bundle.root).")] = None,
    config: ConfigOpt = None,
    top: Annotated[int, typer.Option(help="Clusters to show.")] = 8,
) -> None:
    """Verify a bundle and show its taxonomy with top items."""
    from serendip.bundle import BundleError, load_bundle

    settings = settings_from(config)
    try:
        b = load_bundle(bundle or settings.bundle.root)
    except BundleError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"bundle [bold]{b.bundle_id}[/bold] verified ({len(b.manifest.files)} files)")
    tax = b.taxonomy
    table = Table("id", "label", "group", "size", "most engaged items")
    titles = b.items["title"].tolist()
    for c in tax.clusters[:top]:
        members = tax.members(c.id)
        best = members[b.popularity[members].argsort()[::-1][:3]]
        table.add_row(
            str(c.id), c.label, tax.groups[c.parent].label, str(c.size), "; ".join(titles[i] for i in best)
        )
    console.print(table)
    if b.evaluation:
        console.print_json(json.dumps(b.evaluation))


@bench_app.command("index")
def bench_index_cmd(
    items: Annotated[int, typer.Option(help="Catalog size of the synthetic bundle.")] = 1_000_000,
    bundle: Annotated[Path | None, typer.Option(help="Use this bundle instead of synthesising one.")] = None,
    queries: int = 200,
    k: int = 10,
    clusters: Annotated[int, typer.Option("--clusters-per-query")] = 3,
    cache: Annotated[Path, typer.Option(help="Where synthetic bundles are kept.")] = Path("artifacts/synth"),
) -> None:
    """Restricted search over a few clusters vs flat top-k + post-filter (1 thread, batch 1)."""
    from serendip.bench.index_bench import bench_index
    from serendip.bundle import load_bundle

    b = load_bundle(bundle) if bundle else _synth_cached(cache, items)
    r = bench_index(
        b.index,
        b.taxonomy.item_clusters,
        b.item_embeddings,
        n_queries=queries,
        k=k,
        clusters_per_query=clusters,
    )
    table = Table(
        title=f"index: {r.n_items:,} items, {r.n_clusters} clusters, {r.clusters_per_query} "
        f"clusters/query, top-{r.k}, 1 thread, batch 1, device {b.index.device}"
    )
    table.add_column("method")
    table.add_column("ms/query", justify="right")
    table.add_column(f"recall@{r.k}", justify="right")
    table.add_row("restricted (search_preassigned)", f"{r.restricted_ms:.4f}", f"{r.recall_restricted:.3f}")
    table.add_row(f"naive (flat top-{r.naive_k} + filter)", f"{r.naive_ms:.4f}", f"{r.recall_naive:.3f}")
    table.add_row("naive exact (flat + ID selector)", f"{r.selector_ms:.4f}", f"{r.recall_selector:.3f}")
    console.print(table)
    console.print(
        f"speed-up vs flat top-{r.naive_k} + filter: [bold]{r.ratio:.1f}x[/bold] "
        f"(target >= 100x, recall 1.0); vs exact ID-selector scan: "
        f"{r.selector_ms / max(r.restricted_ms, 1e-9):.1f}x"
    )


def _synth_cached(cache: Path, items: int):
    """Reuse a synthetic bundle of this size when one exists; make it otherwise."""
    from serendip.bundle import bundle as B
    from serendip.bundle import load_bundle
    from serendip.cli_progress import RichProgress
    from serendip.synth import synth_bundle

    root = cache / f"items-{items}"
    try:
        cached = load_bundle(root)
    except Exception:
        cached = None
    # One made before bundles carried a relevance index or an exported encoder is rebuilt too.
    if cached is not None and {B.RELEVANCE, B.ENCODER} <= set(cached.manifest.files):
        return cached
    with RichProgress() as progress:
        synth_bundle(root, items, progress=progress)
    return load_bundle(root)


def _register_stack() -> None:
    """`serendip up` (the local stack; it starts the services only as subprocesses)."""
    from serendip.stack.cli import register

    register(app)


_register_stack()


def _load_plugins() -> None:
    """Commands contributed by the services (entry-point group `serendip.cli`)."""
    for ep in entry_points(group="serendip.cli"):
        try:
            ep.load()(app, bench_app)
        except ImportError as exc:  # a service's optional dependency missing: keep the core usable
            print(f"serendip: commands from {ep.name} unavailable: {exc}", file=sys.stderr)


_load_plugins()

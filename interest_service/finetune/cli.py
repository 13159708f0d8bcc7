"""`serendip sft-data` and `serendip finetune` (registered by interest_service/cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (else $SERENDIP_CONFIG).")
]


def _config(config: Path | None):
    from interest_service.config import InterestConfig
    from serendip.cli import settings_from

    settings = settings_from(config)
    try:
        return settings, InterestConfig.from_settings(settings)
    except ValueError as exc:
        console.print(f"[red]invalid configuration:[/red] {exc}")
        raise typer.Exit(2) from exc


def _override(cfg, **values) -> None:
    """CLI options over [interest.finetune], validated by the same model (bad values name the field)."""
    from pydantic import ValidationError

    from interest_service.config import FinetuneConfig

    given = {k: v for k, v in values.items() if v is not None}
    try:
        cfg.finetune = FinetuneConfig.model_validate({**cfg.finetune.model_dump(), **given})
    except ValidationError as exc:
        console.print(f"[red]invalid option:[/red] {exc}")
        raise typer.Exit(2) from exc


def sft_data(
    config: ConfigOpt = None,
    bundle: Annotated[
        Path | None, typer.Option(help="History-period bundle (dir or root; overrides bundle.root).")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset directory (overrides data.path).")] = None,
    adapter: Annotated[str | None, typer.Option(help="movielens | tabular (overrides data.adapter).")] = None,
    out: Annotated[Path, typer.Option(help="JSONL to write (manifest next to it).")] = Path(
        "artifacts/sft/sft.jsonl"
    ),
    future_fraction: Annotated[float, typer.Option(help="Split: each user's last fraction is future.")] = 0.2,
    min_future: Annotated[int, typer.Option(help="Split: at least this many future interactions.")] = 1,
    min_history: Annotated[int, typer.Option(help="Split: users need this many history interactions.")] = 5,
    max_per_cluster: Annotated[int | None, typer.Option(help="Examples per target cluster.")] = None,
    max_per_user: Annotated[int | None, typer.Option(help="Examples per user.")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed.")] = None,
    allow_full_bundle: Annotated[
        bool, typer.Option(help="Accept a bundle built on all data (its taxonomy saw the future).")
    ] = False,
) -> None:
    """Curate fine-tuning examples: recent items → a cluster new to the user that they then enjoyed."""
    from interest_service.catalog import Catalog
    from interest_service.finetune.data import curate, write_sft
    from serendip.bundle import BundleError, load_bundle
    from serendip.data import load_dataset
    from serendip.data.schema import DataError
    from serendip.eval.split import history_dataset, split_history_future

    settings, cfg = _config(config)
    _override(cfg, max_per_cluster=max_per_cluster, max_per_user=max_per_user, seed=seed)
    try:
        b = load_bundle(bundle or settings.bundle.root)
        ds = load_dataset(adapter or settings.data.adapter, data or settings.data.path)
        split = split_history_future(
            ds.interactions, future_fraction=future_fraction, min_future=min_future, min_history=min_history
        )
    except (BundleError, DataError, FileNotFoundError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    hist = history_dataset(ds, split)
    fingerprint = b.manifest.dataset.fingerprint
    period = (
        "history" if fingerprint == hist.fingerprint else "full" if fingerprint == ds.fingerprint else "other"
    )
    if period != "history" and not allow_full_bundle:
        console.print(
            f"[red]bundle {b.bundle_id} was not built on this dataset's history period[/red] "
            f"(its taxonomy would have seen the future); build one from "
            "serendip.eval.split.history_dataset(...) or pass --allow-full-bundle"
        )
        raise typer.Exit(2)
    params = {"future_fraction": future_fraction, "min_future": min_future, "min_history": min_history}
    catalog = Catalog.from_bundle(b)
    with _bar() as bar:
        task = bar.add_task("building examples", total=None, loss="")
        sft = curate(
            split.history,
            catalog,
            cfg,
            split_params=params,
            bundle_period=period,
            progress=lambda n: bar.advance(task, n),
        )
    mpath = write_sft(out, sft)
    m = sft.manifest
    table = Table(title=f"sft-data: bundle {b.bundle_id} ({period} period), prompt {m['prompt_version']}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key in ("n_candidates", "n_examples", "n_train", "n_heldout", "n_users", "n_target_clusters"):
        table.add_row(key, f"{m[key]:,}")
    table.add_row("examples per target cluster (max / median)", _spread(list(m["per_cluster"].values())))
    table.add_row("candidates of the most popular target", f"{m['candidates_per_cluster_max']:,}")
    console.print(table)
    console.print(f"wrote {out} and {mpath}")


def _spread(counts: list[int]) -> str:
    if not counts:
        return "-"
    s = sorted(counts)
    return f"{s[-1]} / {s[len(s) // 2]}"


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
        console=console,
    )


def finetune(
    config: ConfigOpt = None,
    data: Annotated[Path, typer.Option(help="SFT JSONL from `serendip sft-data`.")] = Path(
        "artifacts/sft/sft.jsonl"
    ),
    out: Annotated[Path, typer.Option(help="Adapter directory to write.")] = Path("artifacts/adapters/sft"),
    model_path: Annotated[
        Path | None, typer.Option(help="Base model (default: interest.local.model_path, else SmolLM2).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Overrides interest.finetune.epochs.")] = None,
    lr: Annotated[float | None, typer.Option(help="Overrides interest.finetune.lr.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per optimizer step.")] = None,
    micro_batch: Annotated[int | None, typer.Option(help="Examples per forward/backward.")] = None,
    max_examples: Annotated[int | None, typer.Option(help="Train on at most this many examples.")] = None,
    threads: Annotated[int | None, typer.Option(help="Torch threads (default: torch's).")] = None,
    check: Annotated[
        int, typer.Option(help="Held-out examples to replay through the backend before/after (0 = skip).")
    ] = 0,
) -> None:
    """Train a LoRA adapter on novel-interest transitions; the local backend loads it via adapter_path."""
    import torch

    from interest_service.finetune.data import read_sft
    from interest_service.finetune.train import save_report, train_lora

    _, cfg = _config(config)
    _override(
        cfg, epochs=epochs, lr=lr, batch_size=batch_size, micro_batch=micro_batch, max_examples=max_examples
    )
    if threads:
        torch.set_num_threads(threads)
    try:
        sft = read_sft(data)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    base = model_path or cfg.local.model_path
    gguf = cfg.local.gguf_file if base is not None else None
    with _bar() as bar:
        task = bar.add_task("LoRA steps", total=None, loss="")

        def on_step(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total, loss=f"loss {loss:.3f}")

        report = train_lora(
            sft.examples,
            out,
            cfg.finetune,
            model_path=base,
            gguf_file=gguf,
            manifest=sft.manifest,
            on_step=on_step,
        )
    table = Table(title=f"finetune: {report.base_model} + LoRA r={cfg.finetune.lora_r} on {report.device}")
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("train / held-out examples", f"{report.n_train} / {report.n_heldout}"),
        (
            "prefix / mean row / mean answer tokens",
            f"{report.prefix_tokens} / {report.mean_row_tokens:.0f} / {report.mean_answer_tokens:.0f}",
        ),
        ("steps (batch)", f"{report.steps} ({report.batch_size})"),
        ("seconds per epoch", ", ".join(f"{s:.0f}" for s in report.epoch_seconds)),
        (
            "held-out loss before → after",
            f"{report.heldout_loss_before:.3f} → {report.heldout_loss_after:.3f}",
        ),
        (
            "train loss first → last 10% of steps",
            f"{report.train_loss_first:.3f} → {report.train_loss_last:.3f}",
        ),
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    if check:
        report.check = _check(cfg, base, out, sft, check)
        save_report(out, report)
    console.print(f"adapter and training_report.json in {out}; serve it with interest.local.adapter_path")


def _check(cfg, base: Path | None, adapter: Path, sft, n: int) -> dict:
    from interest_service.backends.local import LocalBackend
    from interest_service.finetune.check import check_backend

    held = [ex for ex in sft.examples if ex.split == "heldout"][:n]
    if not held:
        console.print("[yellow]no held-out examples to check[/yellow]")
        return {}
    out = {}
    for name, path in (("before", None), ("after", adapter)):
        local = cfg.local.model_copy(update={"model_path": base, "adapter_path": path})
        with console.status(f"replaying {len(held)} held-out examples ({name} fine-tuning)"):
            backend = LocalBackend(local)
            out[name] = check_backend(backend, held, sft.manifest).as_dict()
            backend.close()
    console.print(f"held-out first-cluster == target: {json.dumps(out)}")
    return out

"""`serendip eval`: offline serendipity evaluation on any canonical-schema dataset (docs/eval.md).

Registered by the interest service because its proposers (transition model, LLMs) live here; the
split, replay, metrics and report are the core's (``serendip.eval``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markdown import Markdown

console = Console()


def eval_cmd(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML config file (else $SERENDIP_CONFIG).")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset directory (overrides data.path).")] = None,
    adapter: Annotated[str | None, typer.Option(help="movielens | tabular (overrides data.adapter).")] = None,
    out: Annotated[Path, typer.Option(help="Report directory (report.md, results.json, PNGs).")] = Path(
        "reports/eval"
    ),
    work_dir: Annotated[
        Path, typer.Option(help="Cache of history-period bundles (reused when data and config match).")
    ] = Path("artifacts/eval"),
    epochs: Annotated[
        int | None, typer.Option(min=1, help="SASRec epochs (overrides seqmodel.epochs).")
    ] = None,
    k: Annotated[int, typer.Option(min=2, help="List length for the item-level metrics.")] = 10,
    ratio: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Default exploration ratio (the targets use it).")
    ] = 0.2,
    ratios: Annotated[
        str, typer.Option(help="Exploration ratios for the trade-off curve.")
    ] = "0.1,0.2,0.3,0.5",
    future_fraction: Annotated[float, typer.Option(help="Share of each user's interactions held out.")] = 0.2,
    llm_users: Annotated[
        int, typer.Option(min=0, help="Fixed random sample of users for the LLM proposers (0 = no LLM).")
    ] = 50,
    seed: Annotated[int, typer.Option(help="Seed of the LLM sample and the random proposer.")] = 0,
    describe: Annotated[
        str | None, typer.Option(help="cached | inline | metadata (overrides interest.prompt.describe).")
    ] = None,
    finetuned_adapter: Annotated[
        Path | None,
        typer.Option(help="LoRA adapter from `serendip finetune` (trained on this history bundle)."),
    ] = None,
) -> None:
    """Offline replay on a per-user time split: interest proposers and item-level systems, with a report."""
    from interest_service.config import InterestConfig
    from interest_service.evaluation import TransitionProposer
    from serendip.cli import dataset_from, settings_from
    from serendip.cli_progress import RichProgress
    from serendip.eval.proposers import PopularNewCluster, RandomNewCluster
    from serendip.eval.report import headline_table, targets_table, write_report
    from serendip.eval.runner import EvalOptions, prepare, run_evaluation

    settings = settings_from(config, data=data, adapter=adapter)
    if epochs is not None:
        settings.seqmodel.epochs = epochs  # typer already enforces >= 1, as the config does
    try:
        cfg = InterestConfig.from_settings(settings)
        if describe is not None:
            cfg = InterestConfig.model_validate(
                {**cfg.model_dump(), "prompt": {**cfg.prompt.model_dump(), "describe": describe}}
            )
        options = EvalOptions(
            k=k,
            ratios=tuple(float(r) for r in ratios.split(",") if r.strip()),
            default_ratio=ratio,
            future_fraction=future_fraction,
            sample_users=llm_users,
            seed=seed,
            n_interests=cfg.prompt.n_interests,
        )
    except ValueError as exc:
        console.print(f"[red]invalid option or configuration:[/red] {exc}")
        raise typer.Exit(2) from exc
    if finetuned_adapter is not None and not finetuned_adapter.exists():
        console.print(f"[red]--finetuned-adapter: not found:[/red] {finetuned_adapter}")
        raise typer.Exit(2)
    dataset = dataset_from(settings)

    with RichProgress(console) as progress:
        try:
            ctx = prepare(dataset, settings, work_dir, options, progress)
        except ValueError as exc:
            console.print(f"[red]cannot evaluate:[/red] {exc}")
            raise typer.Exit(2) from exc
        b = ctx.bundle
        n_clusters = b.taxonomy.n_clusters
        proposers = [
            RandomNewCluster(n_clusters, seed),
            PopularNewCluster.from_items(b.popularity, b.taxonomy.item_clusters, n_clusters),
            TransitionProposer.fit(b, cfg),
        ]
        sampled, skipped, llms = _llm_proposers(cfg, b, llm_users, finetuned_adapter, work_dir)
        for p in llms:
            p.on_batch = progress.advance
        result = run_evaluation(ctx, proposers, sampled, options, progress, skipped)
    for p in llms:
        if p.failures or p.dropped:
            result.notes.append(
                f"{p.name}: {p.failures} unusable answers (no proposal), dropped picks {dict(p.dropped)}"
            )
    path = write_report(result, out)
    console.print(Markdown(targets_table(result)))
    console.print(Markdown(headline_table(result)))
    console.print(f"[green]report written[/green] {path}")


def _llm_proposers(cfg, bundle, llm_users: int, adapter_path: Path | None, work_dir: Path):
    """(sampled proposers, skipped rows, LLM proposers) — a backend that cannot start is a skipped row."""
    from interest_service.backends import BackendError, make_backend
    from interest_service.config import InterestConfig
    from interest_service.evaluation import COT, FINETUNED, ZERO_SHOT, LLMProposer

    sampled, skipped, llms = [], [], []
    if llm_users <= 0:
        return sampled, [(n, "not run (--llm-users 0)") for n in (ZERO_SHOT, COT, FINETUNED)], llms
    state = work_dir / "interest-state"
    try:
        backend = make_backend(cfg)
        for name, cot in ((ZERO_SHOT, False), (COT, True)):
            llms.append(LLMProposer.create(name, backend, bundle, cfg, cot, state))
    except (BackendError, ImportError, OSError) as exc:
        skipped += [(ZERO_SHOT, f"not run ({exc})"), (COT, f"not run ({exc})")]
    if adapter_path is None:
        skipped.append((FINETUNED, "not run (no adapter given)"))
    else:
        try:
            raw = cfg.model_dump()
            raw["backend"] = "local"
            raw["local"]["adapter_path"] = str(adapter_path)
            raw["prompt"]["describe"] = "metadata"  # the prompts `serendip sft-data` trained on
            ft_cfg = InterestConfig.model_validate(raw)
            llms.append(LLMProposer.create(FINETUNED, make_backend(ft_cfg), bundle, ft_cfg, True, state))
        except (BackendError, ImportError, OSError, ValueError) as exc:
            skipped.append((FINETUNED, f"not run ({str(exc)[:120]})"))
    sampled.extend(llms)
    return sampled, skipped, llms

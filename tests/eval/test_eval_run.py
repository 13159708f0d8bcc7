"""`serendip eval` on a small real slice of MovieLens: no leakage, replay rules, the report end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serendip.eval.runner import EvalOptions, prepare
from tests.tiny_llama import save_tiny_llama

pytestmark = pytest.mark.slow


def _tiny_llama(folder: Path) -> Path:
    from transformers import AutoTokenizer

    from interest_service.backends.local import default_gguf

    gguf_dir, gguf = default_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf)
    return save_tiny_llama(folder, tokenizer, layers=1, heads=2, kv_heads=1)


@pytest.fixture(scope="module")
def eval_setup(tmp_path_factory, movielens_path: Path):
    """A 300-item slice (small enough to embed and train in seconds) and its history-period bundle."""
    from serendip.config import Settings
    from serendip.data import load_dataset
    from tests.datasets import write_tiny_dataset

    root = tmp_path_factory.mktemp("eval")
    data = write_tiny_dataset(movielens_path, root / "data", n_items=300)
    config = root / "eval.toml"
    config.write_text(
        f'[data]\nadapter = "tabular"\npath = "{data}"\n'
        "[taxonomy]\nn_coarse = 4\nn_fine = 16\n"
        "[seqmodel]\nepochs = 2\ndim = 16\nmax_len = 20\nnegatives = 64\n"
        # The LLM rows run through the real local backend on a tiny random Llama (SmolLM2's
        # tokenizer): SmolLM2 itself needs minutes per user on a loaded 2-core machine.
        f'[interest.local]\nmodel_path = "{_tiny_llama(root / "tiny-llama")}"\ndtype = "float32"\n'
    )
    settings = Settings(
        data={"adapter": "tabular", "path": data},
        taxonomy={"n_coarse": 4, "n_fine": 16},
        seqmodel={"epochs": 2, "dim": 16, "max_len": 20, "negatives": 64},
    )
    dataset = load_dataset("tabular", data)
    work = root / "work"
    ctx = prepare(dataset, settings, work, EvalOptions())
    return ctx, config, work


def test_history_bundle_never_sees_the_future(eval_setup):
    ctx, _, _ = eval_setup
    key = ["user_id", "item_id", "timestamp"]
    fitted = ctx.bundle.interactions[key].astype(str)
    future = ctx.split.future[key].astype(str)
    assert len(future) > 0
    overlap = fitted.merge(future, on=key, how="inner")
    assert overlap.empty, "future-period rows reached the fitted bundle"
    assert len(ctx.bundle.interactions) == len(ctx.split.history)
    assert ctx.bundle.manifest.dataset.n_interactions == len(ctx.split.history)
    # Popularity (and so the primitive list and the popular-cluster proposer) counts history positives only.
    pos = ctx.split.history[ctx.split.history["weight"] >= ctx.settings.data.positive_threshold]
    counts = pos["item_id"].map(ctx.bundle.item_index).value_counts()
    assert np.array_equal(ctx.bundle.popularity[counts.index.to_numpy()], counts.to_numpy())
    # Every user's history strictly precedes their future.
    last_hist = ctx.split.history.groupby("user_id")["timestamp"].max()
    first_fut = ctx.split.future.groupby("user_id")["timestamp"].min()
    assert (last_hist.reindex(first_fut.index) <= first_fut).all()


def test_transition_model_is_fitted_on_the_history_only(eval_setup):
    from interest_service.config import InterestConfig
    from interest_service.evaluation import TransitionProposer
    from interest_service.transitions import TransitionModel

    ctx, _, _ = eval_setup
    cfg = InterestConfig.from_settings(ctx.settings)
    proposer = TransitionProposer.fit(ctx.bundle, cfg)
    both = pd.concat([ctx.split.history, ctx.split.future], ignore_index=True)
    with_future = TransitionModel.fit(
        both.assign(item_idx=both["item_id"].map(ctx.bundle.item_index)),
        proposer.catalog.item_clusters,
        proposer.catalog.n_clusters,
        cfg.positive_threshold,
        window=cfg.refresh.transition_recent,
    )
    assert proposer.model.n_transitions < with_future.n_transitions
    for picks, u in zip(proposer.propose(ctx.users, 3), ctx.users, strict=True):
        left = proposer.catalog.n_clusters - len(u.clusters)
        assert len(picks) == min(3, left) and not set(picks) & u.clusters


def test_replay_rules(eval_setup):
    from serendip.eval.replay import Replay
    from serendip.ranking import novel_positions

    ctx, _, _ = eval_setup
    b, users = ctx.bundle, ctx.users[:40]
    replay = Replay(b.model, b.taxonomy.item_clusters, b.centroids, b.popularity, users, k=10)
    relevance = replay.relevance().lists
    clusters = np.asarray(b.taxonomy.item_clusters)
    proposals = [sorted(set(range(b.taxonomy.n_clusters)) - u.clusters)[:2] for u in users]
    assert replay.serendip(proposals, 0.0, "r0").lists == relevance
    assert replay.mmr(1.0).lists == relevance
    explored = replay.serendip(proposals, 0.3, "r0.3").lists
    slots = novel_positions(10, 3)  # round(10 · 0.3) novel items, evenly spread, top slot excluded
    for u, lst, rel, props in zip(users, explored, relevance, proposals, strict=True):
        assert len(lst) == 10 == len(set(lst))
        assert not set(lst) & set(u.seen.tolist())
        novel = [lst[p] for p in slots]
        assert all(int(clusters[i]) in props for i in novel)
        rest = [item for p, item in enumerate(lst) if p not in slots]
        assert rest == [i for i in rel if i not in novel][:7]


def test_eval_command_writes_the_report(eval_setup, tmp_path):
    from typer.testing import CliRunner

    from serendip.cli import app

    _, config, work = eval_setup
    out = tmp_path / "report"
    args = ["eval", "-c", str(config), "--work-dir", str(work), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--llm-users", "2", "--describe", "metadata"])
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    for row in (
        "relevance-only",
        "popularity",
        "Serendip (r=0.2)",
        "MMR (λ=0.5)",
        "random new cluster",
        "most popular new cluster",
        "cluster-transition model",
        "LLM with CoT",
        "LLM zero-shot (no CoT)",
        "not run (no adapter given)",
        "Serendipity@10",
        "hit@3",
    ):
        assert row in text, row
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["history_bundle_reused"] is True  # the fixture's bundle, not a rebuild
    sample = {h["name"]: h for h in results["sample_hits"]}
    assert sample["LLM with CoT"]["users"] == 2 == sample["LLM zero-shot (no CoT)"]["users"]
    assert sample["fine-tuned LLM"]["users"] == 0
    items = {s["name"]: s for s in results["items"]}
    assert 0 < items["relevance-only"]["recall"] <= 1 and items["popularity"]["serendipity"] == 0.0
    from PIL import Image

    for png in ("tradeoff.png", "hit_at_m.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.size[0] > 300


def test_eval_rejects_bad_options(eval_setup, tmp_path):
    from typer.testing import CliRunner

    from serendip.cli import app

    _, config, work = eval_setup
    base = ["eval", "-c", str(config), "--work-dir", str(work), "--out", str(tmp_path)]
    bad_ratio = CliRunner().invoke(app, [*base, "--ratios", "0.2,1.5"])
    assert bad_ratio.exit_code == 2 and "1.5" in bad_ratio.output
    missing = CliRunner().invoke(app, [*base, "--finetuned-adapter", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "--finetuned-adapter" in missing.output

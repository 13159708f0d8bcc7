"""The evaluation report: ``report.md``, ``results.json`` and PNG plots in one directory."""

from __future__ import annotations

import json
import math
from pathlib import Path

from serendip.eval.proposers import HitScores
from serendip.eval.replay import ItemScores
from serendip.eval.runner import EvalResult

ITEM_COLUMNS = [
    ("recall", "Recall@{k}"),
    ("ndcg", "NDCG@{k}"),
    ("serendipity", "Serendipity@{k}"),
    ("unexpectedness", "Unexp.@{k}"),
    ("novelty", "Novelty@{k}"),
    ("ild", "ILD@{k}"),
    ("new_cluster_share", "New-cluster share"),
    ("coverage", "Coverage"),
]
TRADEOFF_PNG = "tradeoff.png"
HITS_PNG = "hit_at_m.png"


def _fmt(v: float, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def hit_table(rows: list[HitScores], ms: tuple[int, ...]) -> str:
    head = "| proposer | users | " + " | ".join(f"hit@{m} (95 % CI)" for m in ms) + " | invalid picks |"
    lines = [head, "| --- | ---: | " + " | ".join("---:" for _ in ms) + " | ---: |"]
    for h in rows:
        if not h.users:
            cells = " | ".join(h.note or "not run" for _ in ms)
            lines.append(f"| {h.name} | 0 | {cells} | — |")
            continue
        cells = " | ".join(f"{h.hits[m]:.3f} ({h.intervals[m][0]:.3f}–{h.intervals[m][1]:.3f})" for m in ms)
        lines.append(f"| {h.name} | {h.users} | {cells} | {h.invalid} |")
    return "\n".join(lines)


def item_table(rows: list[ItemScores], k: int, bold: set[str] | None = None) -> str:
    lines = [
        "| system | " + " | ".join(label.format(k=k) for _, label in ITEM_COLUMNS) + " |",
        "| --- | " + " | ".join("---:" for _ in ITEM_COLUMNS) + " |",
    ]
    for s in rows:
        name = f"**{s.name}**" if bold and s.name in bold else s.name
        lines.append(f"| {name} | " + " | ".join(_fmt(s.values[key]) for key, _ in ITEM_COLUMNS) + " |")
    return "\n".join(lines)


def headline_table(result: EvalResult) -> str:
    """The few rows the README shows: baselines, Serendip at the default ratio, the closest MMR."""
    o = result.options
    wanted = {"relevance-only", "popularity", f"Serendip (r={o.default_ratio:g})"}
    rows = [s for s in result.items if s.name in wanted]
    serendip = next((s for s in rows if s.name.startswith("Serendip")), None)
    mmrs = [s for s in result.items if s.name.startswith("MMR")]
    if serendip and mmrs:  # the MMR setting whose recall is closest to Serendip's
        rows.append(min(mmrs, key=lambda s: abs(s.values["recall"] - serendip.values["recall"])))
    return item_table(rows, o.k, bold={serendip.name} if serendip else None)


def targets_table(result: EvalResult) -> str:
    lines = ["| target | measured | met |", "| --- | ---: | :---: |"]
    for t in result.targets:
        met = {True: "yes", False: "**no**", None: "not run"}[t["met"]]
        lines.append(f"| {t['target']} | {t['value']} | {met} |")
    return "\n".join(lines)


def plot_tradeoff(result: EvalResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = result.options.k
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for (name, points), marker in zip(result.tradeoff.items(), "os^D", strict=False):
        key = "ratio" if "ratio" in points[0] else "lambda"
        pts = sorted(points, key=lambda p: p[key])
        ax.plot([p["recall"] for p in pts], [p["serendipity"] for p in pts], marker=marker, label=name)
        for p in pts:
            sym = "r" if key == "ratio" else "λ"
            ax.annotate(
                f"{sym}={p[key]:g}",
                (p["recall"], p["serendipity"]),
                fontsize=7,
                textcoords="offset points",
                xytext=(4, 3),
            )
    for s in result.items:
        if s.name == "popularity":
            ax.scatter(
                [s.values["recall"]], [s.values["serendipity"]], marker="x", color="grey", label="popularity"
            )
    ax.set_xlabel(f"Recall@{k}")
    ax.set_ylabel(f"Serendipity@{k} (Ge et al. 2010)")
    ax.set_title("Accuracy vs serendipity: exploration ratio r / MMR λ")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_hits(result: EvalResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ms = result.options.ms
    groups = [
        ("all users", result.hits),
        (f"sample ({result.dataset['sample_users']} users)", result.sample_hits),
    ]
    groups = [(g, [h for h in rows if h.users]) for g, rows in groups]
    groups = [(g, rows) for g, rows in groups if rows]
    fig, axes = plt.subplots(1, len(groups), figsize=(6.4 * len(groups), 4.4), dpi=120, squeeze=False)
    for ax, (title, rows) in zip(axes[0], groups, strict=True):
        x = np.arange(len(rows))
        width = 0.8 / len(ms)
        for j, m in enumerate(ms):
            vals = np.array([h.hits[m] for h in rows])
            lo = vals - np.array([h.intervals[m][0] for h in rows])
            hi = np.array([h.intervals[m][1] for h in rows]) - vals
            ax.bar(x + j * width, vals, width, yerr=[lo, hi], capsize=3, label=f"hit@{m}")
        ax.set_xticks(x + width * (len(ms) - 1) / 2)
        ax.set_xticklabels([h.name for h in rows], rotation=25, ha="right", fontsize=8)
        ax.set_ylabel("novel-cluster hit rate (95 % Wilson CI)")
        ax.set_title(title)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def render_markdown(result: EvalResult) -> str:
    o, d = result.options, result.dataset
    parts = [
        f"# Serendip offline evaluation — {d['name']}",
        "",
        f"Per-user time split: the last {o.future_fraction:.0%} of each user's interactions (users with ≥ "
        f"{o.min_history} history + {o.min_future} future) form the future period; taxonomy "
        f"({d['clusters']} clusters), SASRec, popularity and the transition model are fitted on the history "
        f"period only ({d['history_interactions']:,} of {d['interactions']:,} interactions). "
        f"{d['scored_users']:,} users have positives in both periods; "
        f"{d['users_with_novel_future_cluster']:,} of them engage with at least one cluster new to them "
        "in the future (the hit@m population). "
        f"Metric definitions: docs/eval.md.",
        "",
        "## Targets",
        "",
        targets_table(result),
        "",
        f"## Item level, all {d['scored_users']:,} scored users (k = {o.k})",
        "",
        f"Serendip uses the clusters of the *{o.serendip_proposer}* ({o.n_interests} per user); "
        f"the retrieval service's default exploration ratio is r = {o.default_ratio:g}.",
        "",
        item_table(result.items, o.k, bold={f"Serendip (r={o.default_ratio:g})"}),
        "",
        f"![trade-off]({TRADEOFF_PNG})",
        "",
        "## Interest level: novel-cluster hit@m, all users with a novel future cluster",
        "",
        hit_table(result.hits, o.ms),
        "",
    ]
    if result.sample_hits and d["sample_users"]:
        parts += [
            f"## Interest level on a fixed random sample of {d['sample_users']} users (seed {o.seed})",
            "",
            "Every proposer on the same users, so the rows compare directly; LLM proposers only ran here.",
            "",
            hit_table(result.sample_hits, o.ms),
            "",
        ]
    elif result.sample_hits:
        parts += ["## LLM proposers", "", hit_table(result.sample_hits, o.ms), ""]
    parts += [f"![hit@m]({HITS_PNG})", ""]
    if result.sample_items:
        parts += [
            f"## Item level on the sample (r = {o.default_ratio:g})",
            "",
            item_table(result.sample_items, o.k),
            "",
        ]
    if result.notes:
        parts += ["## Notes", "", *[f"- {n}" for n in result.notes], ""]
    parts += [
        "## Run",
        "",
        f"- history bundle: `{d['history_bundle']}` ({'reused' if d['history_bundle_reused'] else 'built'})",
        *[f"- {k}: {v}" for k, v in result.timings.items()],
        "",
    ]
    return "\n".join(parts)


def write_report(result: EvalResult, out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_tradeoff(result, out_dir / TRADEOFF_PNG)
    plot_hits(result, out_dir / HITS_PNG)
    (out_dir / "results.json").write_text(
        json.dumps(result.as_dict(), indent=1, default=str), encoding="utf-8"
    )
    path = out_dir / "report.md"
    path.write_text(render_markdown(result), encoding="utf-8")
    return path

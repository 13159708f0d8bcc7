"""`serendip synth`: a bundle of the real format with random but clustered embeddings (benchmarks)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from serendip.bundle import BundleWriter, DatasetInfo, new_bundle_id
from serendip.bundle import bundle as B
from serendip.config import SeqModelConfig
from serendip.index.faiss_ivf import build_ivf
from serendip.index.relevance import build_relevance_index
from serendip.pipeline import Progress, cluster_centroids
from serendip.taxonomy import Cluster, Taxonomy


def synth_bundle(
    root: Path,
    n_items: int,
    n_clusters: int | None = None,
    n_groups: int = 20,
    n_users: int = 10_000,
    history: int = 30,
    seqcfg: SeqModelConfig | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    current: str | None = "current",
) -> Path:
    """Items around ``n_clusters`` random directions (equal sizes), users drifting over 1-3 clusters."""
    progress = progress or Progress()
    seqcfg = seqcfg or SeqModelConfig()
    # ~1,000 items per cluster keeps a "few clusters" search cheap however large the catalog is.
    n_clusters = n_clusters or max(8, min(n_items // 1000, 4096))
    if n_clusters > n_items:
        raise ValueError(f"{n_clusters} clusters need at least as many items (got {n_items})")
    n_groups = min(n_groups, n_clusters)
    rng = np.random.default_rng(seed)
    dim = seqcfg.dim

    progress.stage("generating embeddings", total=n_items)
    centers = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    assign = (np.arange(n_items) % n_clusters).astype(np.int32)
    rng.shuffle(assign)
    emb = np.empty((n_items, dim), dtype=np.float32)
    step = 200_000
    for start in range(0, n_items, step):
        sl = slice(start, min(start + step, n_items))
        noise = rng.standard_normal((sl.stop - sl.start, dim)).astype(np.float32) * 0.35
        emb[sl] = centers[assign[sl]] + noise
        progress.advance(sl.stop - sl.start)

    progress.stage("building model and index")
    from serendip.seqmodel import SASRec, save_model
    from serendip.seqmodel.user_encoder import export_encoder

    model = SASRec(n_items, dim, seqcfg.max_len, seqcfg.layers, seqcfg.heads, seqcfg.dropout).eval()
    _set_item_table(model, emb)
    centroids = cluster_centroids(emb, assign, n_clusters)
    index = build_ivf(emb, assign, centroids)
    progress.stage("building relevance index")
    relevance = build_relevance_index(emb, seed=seed)

    parents = np.arange(n_clusters) % n_groups
    sizes = np.bincount(assign, minlength=n_clusters)
    clusters = [
        Cluster(
            id=c,
            label=f"synthetic interest {c:04d}",
            keywords=[f"kw{c}"],
            size=int(sizes[c]),
            parent=int(parents[c]),
        )
        for c in range(n_clusters)
    ]
    groups = [Cluster(id=g, label=f"synthetic group {g:02d}", keywords=[], size=0) for g in range(n_groups)]
    taxonomy = Taxonomy(clusters=clusters, groups=groups, item_clusters=assign)

    progress.stage("generating users", total=n_users)
    users = np.repeat(np.arange(n_users), history)
    # Each user draws from 1-3 home clusters, which is what novel interests are "new" against.
    home = rng.integers(0, n_clusters, size=(n_users, 3))
    n_home = rng.integers(1, 4, size=n_users)
    pick = rng.integers(0, 3, size=(n_users, history)) % n_home[:, None]
    user_clusters = np.take_along_axis(home, pick, axis=1).ravel()
    members = np.argsort(assign, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    within = (rng.random(len(user_clusters)) * sizes[user_clusters]).astype(np.int64)
    item_idx = members[offsets[user_clusters] + within]
    interactions = pd.DataFrame(
        {
            "user_id": pd.Series(users).map("u{}".format),
            "item_id": pd.Series(item_idx).map("s{}".format),
            "timestamp": np.tile(np.arange(history, dtype=np.int64), n_users) + 1_700_000_000,
            "weight": np.full(len(users), 5.0, dtype=np.float32),
            "item_idx": item_idx,
        }
    )
    progress.advance(n_users)
    popularity = np.bincount(item_idx, minlength=n_items).astype(np.float32)

    fingerprint = hashlib.sha256(f"synth:{n_items}:{n_clusters}:{n_users}:{seed}:{dim}".encode()).hexdigest()
    bundle_id = new_bundle_id(f"synth{n_items}", fingerprint)
    progress.stage("writing bundle")
    with BundleWriter(Path(root), bundle_id, current=current) as w:
        ids = np.char.add("s", np.arange(n_items).astype(str))
        pd.DataFrame(
            {
                "item_id": ids,
                "title": np.char.add("Synthetic item ", np.arange(n_items).astype(str)),
                "text": "",
                "image_uri": None,
                "attributes": "{}",
            }
        ).to_parquet(w.path(B.ITEMS), index=False)
        interactions.to_parquet(w.path(B.INTERACTIONS), index=False)
        w.path(B.TAXONOMY).write_text(taxonomy.to_json(), encoding="utf-8")
        np.save(w.path(B.ITEM_CLUSTERS), assign)
        np.save(w.path(B.CENTROIDS), centroids)
        np.save(w.path(B.POPULARITY), popularity)
        save_model(model, w.path(B.SEQMODEL))
        export_encoder(model, w.path(B.ENCODER))
        import faiss

        faiss.write_index(index, str(w.path(B.INDEX)))
        faiss.write_index(relevance, str(w.path(B.RELEVANCE)))
        return w.publish(
            dataset=DatasetInfo(
                name=f"synth{n_items}",
                fingerprint=fingerprint,
                n_items=n_items,
                n_users=n_users,
                n_interactions=len(interactions),
            ),
            config={"seqmodel": json.loads(seqcfg.model_dump_json()), "seed": seed},
            summary={"n_clusters": n_clusters, "n_groups": n_groups},
            kind="synth",
        )


def _set_item_table(model, emb: np.ndarray) -> None:
    import torch

    with torch.no_grad():
        model.item_embeddings()  # validates the model exposes its table
        table = model.item_emb.weight
        table[1:].copy_(torch.from_numpy(emb))
        table[0].zero_()

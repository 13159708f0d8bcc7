"""`serendip build`: dataset → embeddings → taxonomy → sequence model → cluster index → bundle."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serendip.bundle import BundleWriter, DatasetInfo, new_bundle_id
from serendip.bundle import bundle as B
from serendip.config import Settings
from serendip.data.schema import Dataset
from serendip.index.faiss_ivf import build_ivf
from serendip.index.relevance import build_relevance_index
from serendip.taxonomy.cluster import cluster_means


class Progress:
    """What the pipeline reports; the CLI renders it with Rich, tests pass the no-op default."""

    def stage(self, name: str, total: int | None = None) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def note(self, message: str) -> None: ...


@dataclass
class BuildResult:
    path: Path
    summary: dict[str, Any]


def indexed_interactions(dataset: Dataset) -> pd.DataFrame:
    """The interactions plus ``item_idx`` (internal item index); adapters guarantee every id is known."""
    idx = dataset.item_index().reindex(dataset.interactions["item_id"].to_numpy()).to_numpy()
    return dataset.interactions.assign(item_idx=idx.astype(np.int64))


def positive_sequences(
    interactions: pd.DataFrame, threshold: float
) -> tuple[pd.DataFrame, list[np.ndarray], list[str]]:
    """Positives (of interactions carrying ``item_idx``) and each user's chronological sequence."""
    pos = interactions[interactions["weight"] >= threshold]
    pos = pos.sort_values(["user_id", "timestamp", "item_idx"], kind="stable")
    users, seqs = [], []
    for user, group in pos.groupby("user_id", sort=True):
        users.append(str(user))
        seqs.append(group["item_idx"].to_numpy(dtype=np.int64))
    return pos, seqs, users


def clustering_vectors(
    dataset: Dataset, pos: pd.DataFrame, settings: Settings, progress: Progress
) -> np.ndarray:
    """Content (text, optionally image) and collaborative signal in one normalised space."""
    from serendip.embed.collab import collaborative_vectors
    from serendip.embed.text import TextEmbedder

    cfg = settings.embedding
    items = dataset.items
    texts = (items["title"].fillna("") + ". " + items["text"].fillna("")).tolist()
    progress.stage("embedding item text", total=len(texts))
    text = TextEmbedder(cfg.text_model, batch_size=cfg.batch_size).embed(texts, progress=progress.advance)
    parts = [text]
    if cfg.image_model is not None:
        from serendip.embed.image import ImageEmbedder

        progress.stage("embedding item images", total=len(items))
        img, failed = ImageEmbedder(cfg.image_model).embed(items["image_uri"].tolist(), progress.advance)
        if failed:
            progress.note(f"{failed} images could not be read; those items use text only")
        parts.append(img * np.sqrt(cfg.image_weight))
    progress.stage("collaborative factors")
    user_codes, _ = pd.factorize(pos["user_id"])
    collab = collaborative_vectors(
        pos["item_idx"].to_numpy(),
        user_codes,
        len(items),
        int(user_codes.max()) + 1 if len(pos) else 0,
        cfg.collab_dim,
    )
    parts.append(collab * np.sqrt(cfg.collab_weight))
    return np.concatenate(parts, axis=1).astype(np.float32)


def build_bundle(
    dataset: Dataset, settings: Settings, progress: Progress | None = None, *, evaluate: bool = True
) -> BuildResult:
    """``evaluate=False`` skips the held-out-tail training (``serendip eval`` scores its own split)."""
    from serendip.seqmodel import evaluate_model, evaluate_popularity, save_model, time_split, train_sasrec
    from serendip.seqmodel.user_encoder import export_encoder
    from serendip.taxonomy import build_taxonomy

    progress = progress or Progress()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    interactions = indexed_interactions(dataset)
    pos, seqs, _users = positive_sequences(interactions, settings.data.positive_threshold)
    if not seqs:
        raise ValueError(
            f"no positive interactions (weight >= {settings.data.positive_threshold}) in {dataset.name}"
        )

    vectors = clustering_vectors(dataset, pos, settings, progress)
    timings["embeddings_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    progress.stage("clustering into interest taxonomy")
    taxonomy = build_taxonomy(dataset.items, vectors, settings.taxonomy)
    timings["taxonomy_s"] = time.perf_counter() - t

    # Evaluate on a held-out tail first, then train the served model on every sequence.
    t = time.perf_counter()
    scfg = settings.seqmodel
    evaluation: dict[str, Any] = {"protocol": "not evaluated at build time"}
    if evaluate:
        train_seqs, targets = time_split(seqs, holdout=scfg.holdout)
        progress.stage("training sequence model (evaluation split)", total=scfg.epochs)
        eval_model = train_sasrec(train_seqs, dataset.n_items, scfg, progress=lambda *_: progress.advance())
        evaluation = {
            "protocol": f"per-user time split: last {scfg.holdout} positive(s) held out; "
            "full-catalog ranking",
            "sasrec": evaluate_model(eval_model, train_seqs, targets, k=10),
            "popularity": evaluate_popularity(train_seqs, targets, dataset.n_items, k=10),
        }
        progress.note(
            "Recall@10 sasrec {:.4f} vs popularity {:.4f}".format(
                evaluation["sasrec"]["recall"], evaluation["popularity"]["recall"]
            )
        )
    progress.stage("training sequence model (all data)", total=scfg.epochs)
    model = train_sasrec(seqs, dataset.n_items, scfg, progress=lambda *_: progress.advance())
    timings["seqmodel_s"] = time.perf_counter() - t

    progress.stage("building cluster index")
    item_emb = model.item_embeddings().detach().numpy().astype(np.float32)
    centroids = cluster_centroids(item_emb, taxonomy.item_clusters, taxonomy.n_clusters)
    index = build_ivf(item_emb, taxonomy.item_clusters, centroids)
    progress.stage("building relevance index")
    relevance = build_relevance_index(item_emb, settings.index.relevance_lists)
    popularity = np.bincount(pos["item_idx"].to_numpy(), minlength=dataset.n_items).astype(np.float32)

    root = Path(settings.bundle.root)
    bundle_id = new_bundle_id(dataset.name, dataset.fingerprint)
    progress.stage("writing bundle")
    with BundleWriter(root, bundle_id, current=settings.bundle.current) as w:
        items = dataset.items.copy()
        items["attributes"] = [json.dumps(a, ensure_ascii=False) for a in items["attributes"]]
        items.to_parquet(w.path(B.ITEMS), index=False)
        interactions.to_parquet(w.path(B.INTERACTIONS), index=False)
        w.path(B.TAXONOMY).write_text(taxonomy.to_json(), encoding="utf-8")
        np.save(w.path(B.ITEM_CLUSTERS), taxonomy.item_clusters)
        np.save(w.path(B.CENTROIDS), centroids)
        np.save(w.path(B.POPULARITY), popularity)
        save_model(model, w.path(B.SEQMODEL))
        export_encoder(model, w.path(B.ENCODER))
        import faiss

        faiss.write_index(index, str(w.path(B.INDEX)))
        faiss.write_index(relevance, str(w.path(B.RELEVANCE)))
        w.path(B.EVALUATION).write_text(json.dumps(evaluation, indent=1), encoding="utf-8")
        sizes = np.bincount(taxonomy.item_clusters, minlength=taxonomy.n_clusters)
        timings["total_s"] = time.perf_counter() - t0
        summary = {
            "n_clusters": taxonomy.n_clusters,
            "n_groups": len(taxonomy.groups),
            "cluster_size_min": int(sizes.min()),
            "cluster_size_max": int(sizes.max()),
            "evaluation": evaluation,
            "timings": {k: round(v, 2) for k, v in timings.items()},
        }
        path = w.publish(
            dataset=DatasetInfo(
                name=dataset.name,
                fingerprint=dataset.fingerprint,
                n_items=dataset.n_items,
                n_users=int(dataset.interactions["user_id"].nunique()),
                n_interactions=len(dataset.interactions),
            ),
            config=json.loads(settings.model_dump_json()),
            summary=summary,
        )
    return BuildResult(path=path, summary=summary)


def cluster_centroids(item_emb: np.ndarray, assign: np.ndarray, n_clusters: int) -> np.ndarray:
    """Mean item embedding per cluster (in the sequence model's space: the IVF's coarse quantizer)."""
    return cluster_means(item_emb, assign, n_clusters)[0].astype(np.float32)

"""The interest taxonomy: fine clusters (the units the LLM chooses among) under coarse groups."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from serendip.config import TaxonomyConfig
from serendip.taxonomy.cluster import balanced_kmeans, group_clusters
from serendip.taxonomy.labels import item_keywords, rank_cluster_keywords, unique_labels


@dataclass(frozen=True)
class Cluster:
    id: int
    label: str
    keywords: list[str]
    size: int
    parent: int = -1  # coarse group id; -1 for the coarse level itself


@dataclass
class Taxonomy:
    clusters: list[Cluster]  # fine level, id == position
    groups: list[Cluster]  # coarse level, id == position
    item_clusters: np.ndarray = field(repr=False)  # fine cluster id per internal item index

    @property
    def n_clusters(self) -> int:
        return len(self.clusters)

    def label_to_id(self) -> dict[str, int]:
        return {c.label: c.id for c in self.clusters}

    def members(self, cluster_id: int) -> np.ndarray:
        return np.flatnonzero(self.item_clusters == cluster_id)

    def to_json(self) -> str:
        return json.dumps(
            {"clusters": [asdict(c) for c in self.clusters], "groups": [asdict(g) for g in self.groups]},
            ensure_ascii=False,
            indent=1,
        )

    @classmethod
    def from_files(cls, json_path: Path, clusters_path: Path) -> Taxonomy:
        raw = json.loads(Path(json_path).read_text(encoding="utf-8"))
        return cls(
            clusters=[Cluster(**c) for c in raw["clusters"]],
            groups=[Cluster(**g) for g in raw["groups"]],
            item_clusters=np.load(clusters_path),
        )

    def validate(self) -> None:
        labels = [c.label for c in self.clusters]
        if len(set(labels)) != len(labels):
            raise ValueError("taxonomy labels are not unique")
        if len(self.item_clusters) and (
            self.item_clusters.min() < 0 or self.item_clusters.max() >= len(self.clusters)
        ):
            raise ValueError("item cluster ids outside the taxonomy")


def build_taxonomy(items: pd.DataFrame, vectors: np.ndarray, cfg: TaxonomyConfig) -> Taxonomy:
    """Cluster item vectors into ``cfg.n_fine`` balanced clusters grouped into ``cfg.n_coarse``."""
    n_fine = min(cfg.n_fine, len(items))
    assign, centroids = balanced_kmeans(vectors, n_fine, cfg.balance, cfg.kmeans_iters, cfg.seed)
    sizes = np.bincount(assign, minlength=n_fine)
    parents = group_clusters(centroids, sizes, min(cfg.n_coarse, n_fine), cfg.seed)

    item_kw = [
        item_keywords(t, a if isinstance(a, dict) else {})
        for t, a in zip(items["title"].tolist(), items["attributes"].tolist(), strict=True)
    ]
    fine_kw = rank_cluster_keywords(item_kw, assign.tolist(), n_fine)
    fine_labels = unique_labels(fine_kw)
    n_groups = int(parents.max()) + 1
    group_kw = rank_cluster_keywords(item_kw, parents[assign].tolist(), n_groups)
    group_labels = unique_labels(group_kw, base_terms=2, prefix="group")

    clusters = [
        Cluster(id=c, label=fine_labels[c], keywords=fine_kw[c], size=int(sizes[c]), parent=int(parents[c]))
        for c in range(n_fine)
    ]
    group_sizes = np.bincount(parents[assign], minlength=n_groups)
    groups = [
        Cluster(id=g, label=group_labels[g], keywords=group_kw[g], size=int(group_sizes[g]))
        for g in range(n_groups)
    ]
    taxonomy = Taxonomy(clusters=clusters, groups=groups, item_clusters=assign.astype(np.int32))
    taxonomy.validate()
    return taxonomy

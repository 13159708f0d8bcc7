"""A loaded, verified artifact bundle: everything both services need to serve one catalog."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd

from serendip.bundle.manifest import Manifest
from serendip.bundle.store import BundleError, resolve_bundle_path, verify_bundle
from serendip.index.faiss_ivf import FaissClusterIndex
from serendip.index.relevance import RelevanceIndex
from serendip.taxonomy import Taxonomy

# File names inside a bundle.
ITEMS = "items.parquet"
INTERACTIONS = "interactions.parquet"
TAXONOMY = "taxonomy.json"
ITEM_CLUSTERS = "item_clusters.npy"
CENTROIDS = "cluster_centroids.npy"  # per cluster, in the sequence model's item space
POPULARITY = "popularity.npy"  # positive engagements per item (cold start, baselines)
SEQMODEL = "seqmodel.pt"
INDEX = "index.faiss"
# Optional (bundles from before it existed lack it): whole-catalog relevance index, see index/relevance.py.
RELEVANCE = "relevance.faiss"
# Optional: the sequence model's transformer as ONNX, run online by ONNX Runtime (seqmodel/user_encoder.py).
ENCODER = "encoder.onnx"
EVALUATION = "evaluation.json"
REQUIRED = (ITEMS, TAXONOMY, ITEM_CLUSTERS, CENTROIDS, POPULARITY, SEQMODEL, INDEX)


@dataclass
class Bundle:
    path: Path
    manifest: Manifest
    index_device: str = "cpu"

    @property
    def bundle_id(self) -> str:
        return self.manifest.bundle_id

    @cached_property
    def items(self) -> pd.DataFrame:
        df = pd.read_parquet(self.path / ITEMS)
        df["attributes"] = [json.loads(a) if isinstance(a, str) else {} for a in df["attributes"]]
        return df

    @cached_property
    def interactions(self) -> pd.DataFrame:
        """Canonical interactions plus ``item_idx`` (internal index); empty if the bundle has none."""
        p = self.path / INTERACTIONS
        if not p.is_file():
            return pd.DataFrame(columns=["user_id", "item_id", "timestamp", "weight", "item_idx"])
        return pd.read_parquet(p)

    @cached_property
    def item_ids(self) -> np.ndarray:
        return self.items["item_id"].to_numpy(dtype=object)

    @cached_property
    def item_index(self) -> dict[str, int]:
        return {item_id: i for i, item_id in enumerate(self.item_ids.tolist())}

    @cached_property
    def taxonomy(self) -> Taxonomy:
        return Taxonomy.from_files(self.path / TAXONOMY, self.path / ITEM_CLUSTERS)

    @cached_property
    def centroids(self) -> np.ndarray:
        return np.load(self.path / CENTROIDS)

    @cached_property
    def popularity(self) -> np.ndarray:
        return np.load(self.path / POPULARITY)

    @cached_property
    def model(self):  # -> serendip.seqmodel.SASRec (import kept lazy: torch is heavy)
        from serendip.seqmodel import load_model

        return load_model(self.path / SEQMODEL)

    @cached_property
    def item_embeddings(self) -> np.ndarray:
        # A view of the served model's table, not a copy (256 MB at 1M items × 64 dims): the
        # relevance index rescores against it. Read-only by convention, like the model.
        return self.model.item_embeddings().detach().numpy().astype(np.float32, copy=False)

    @cached_property
    def index(self) -> FaissClusterIndex:
        return FaissClusterIndex.load(self.path / INDEX, device=self.index_device)

    @cached_property
    def relevance_index(self) -> RelevanceIndex | None:
        if RELEVANCE not in self.manifest.files:
            return None
        return RelevanceIndex.load(self.path / RELEVANCE, self.item_embeddings, device=self.index_device)

    @property
    def encoder_path(self) -> Path | None:
        """The exported user encoder, when the bundle carries one."""
        return self.path / ENCODER if ENCODER in self.manifest.files else None

    @cached_property
    def evaluation(self) -> dict[str, Any]:
        p = self.path / EVALUATION
        return json.loads(p.read_text()) if p.is_file() else {}

    def check_consistency(self) -> None:
        """Cross-file checks a hash cannot catch (e.g. a bundle assembled from two builds)."""
        n = len(self.items)
        tax = self.taxonomy
        problems = []
        if len(tax.item_clusters) != n:
            problems.append(f"taxonomy covers {len(tax.item_clusters)} items, catalog has {n}")
        if self.index.n_items != n:
            problems.append(f"index holds {self.index.n_items} items, catalog has {n}")
        if self.index.n_clusters != tax.n_clusters:
            problems.append(f"index has {self.index.n_clusters} lists, taxonomy {tax.n_clusters} clusters")
        if self.centroids.shape != (tax.n_clusters, self.index.dim):
            problems.append(f"centroids shape {self.centroids.shape} != ({tax.n_clusters}, {self.index.dim})")
        if len(self.popularity) != n:
            problems.append(f"popularity has {len(self.popularity)} entries, catalog has {n}")
        if RELEVANCE in self.manifest.files:
            rel = faiss.read_index(str(self.path / RELEVANCE), faiss.IO_FLAG_MMAP)
            if rel.ntotal != n or rel.d != self.index.dim:
                problems.append(f"relevance index holds {rel.ntotal}×{rel.d}, catalog {n}×{self.index.dim}")
        if problems:
            raise BundleError(f"{self.path}: inconsistent bundle: " + "; ".join(problems))


def load_bundle(path: Path, *, verify: bool = True, index_device: str = "cpu") -> Bundle:
    """Resolve (bundle dir or root with a ``current`` link), verify hashes, and check consistency."""
    bundle_path = resolve_bundle_path(Path(path))
    manifest = verify_bundle(bundle_path) if verify else _read_manifest(bundle_path)
    missing = [name for name in REQUIRED if name not in manifest.files]
    if missing:
        raise BundleError(f"{bundle_path}: bundle lacks required files: {', '.join(missing)}")
    bundle = Bundle(path=bundle_path, manifest=manifest, index_device=index_device)
    if verify:
        bundle.check_consistency()
    return bundle


def _read_manifest(path: Path) -> Manifest:
    from serendip.bundle.manifest import MANIFEST_NAME

    return Manifest.model_validate_json((path / MANIFEST_NAME).read_text(encoding="utf-8"))

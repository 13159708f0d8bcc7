"""The bundle as the hot path needs it: lookups precomputed once, so a request does no pandas work.

A `ServingBundle` is immutable after `load_serving_bundle` returns; hot reload builds a new one and
swaps the reference (see reload.py), so a request sees exactly one bundle from start to end.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from serendip.bundle import Bundle, BundleError, Manifest, load_bundle
from serendip.bundle import bundle as B
from serendip.bundle.manifest import MANIFEST_NAME
from serendip.index.faiss_ivf import FaissClusterIndex
from serendip.index.relevance import RelevanceIndex
from serendip.seqmodel import SASRec, encode_users
from serendip.seqmodel.user_encoder import EncoderKind, UserEncoder, open_user_encoder

# Cluster ids mean the same thing in two bundles exactly when these files are byte-identical.
TAXONOMY_FILES = (B.TAXONOMY, B.ITEM_CLUSTERS)
# Embeddings live in the same item space exactly when the sequence model is byte-identical.
ITEM_SPACE_FILES = (B.SEQMODEL,)
_BUNDLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_COMPAT_CACHE_MAX = 256


class Compat(enum.Enum):
    """How far a record made for another bundle can be trusted by this one."""

    SAME = "same"  # cluster ids and interest embeddings both valid
    TAXONOMY = "taxonomy"  # cluster ids valid; embeddings from another item space (use centroids)
    NONE = "none"  # cluster ids may mean other clusters: the record is stale


@dataclass(eq=False)
class ServingBundle:
    bundle: Bundle
    model: SASRec
    encoder: UserEncoder  # the online path's model call (the eager model, or its ONNX export)
    index: FaissClusterIndex
    # Whole-catalog relevance search; None for bundles built before they carried one (the cluster
    # index then answers it, probing relevance_nprobe of its clusters: slower and less accurate).
    relevance: RelevanceIndex | None
    item_ids: list[str]
    item_index: dict[str, int]
    # The same ids utf-8 encoded, as Redis returns them: a batch's stored histories are mapped in
    # one hash-table pass in C (a Python dict lookup into 1M keys costs ~0.6 µs in cache misses).
    stored_id_index: pd.Index
    titles: list[str]
    item_clusters: list[int]
    # The same as an array: a batch's many lookups in one gather (a 1M-entry list costs a cache miss
    # per Python-level lookup).
    item_cluster_array: np.ndarray
    cluster_labels: list[str]
    # Unit-length cluster centroids in the item space: the steering vector when a record's own
    # embeddings come from another model.
    unit_centroids: np.ndarray
    # (item index, popularity): popular first, spread over clusters
    cold_start: list[tuple[int, float]]
    _compat: dict[str, Compat] = field(default_factory=dict, repr=False)

    @property
    def bundle_id(self) -> str:
        return self.bundle.bundle_id

    @property
    def path(self) -> Path:
        return self.bundle.path

    @property
    def n_items(self) -> int:
        return self.index.n_items

    @property
    def n_clusters(self) -> int:
        return self.index.n_clusters

    @property
    def dim(self) -> int:
        return self.index.dim

    def record_compat(self, bundle_id: str) -> Compat:
        """Compare the manifest of the bundle a record names (a sibling directory) with ours.

        Read once per bundle id: after a rebuild, every record names the previous bundle until the
        interest service catches up, so this is on the hot path only through the cache.
        """
        if bundle_id == self.bundle_id:
            return Compat.SAME
        found = self._compat.get(bundle_id)
        if found is None:
            found = self._compare(bundle_id)
            if len(self._compat) >= _COMPAT_CACHE_MAX:
                self._compat.clear()
            self._compat[bundle_id] = found
        return found

    def _compare(self, bundle_id: str) -> Compat:
        if not _BUNDLE_ID.match(bundle_id):  # it names a directory: no separators, no '..'
            return Compat.NONE
        try:
            other = Manifest.model_validate_json(
                (self.path.parent / bundle_id / MANIFEST_NAME).read_text(encoding="utf-8")
            )
        except (OSError, ValueError):
            return Compat.NONE  # unknown (deleted, or never on this machine): cannot vouch for it
        mine = self.bundle.manifest.files

        def same(names: tuple[str, ...]) -> bool:
            return all(
                n in mine and n in other.files and mine[n].sha256 == other.files[n].sha256 for n in names
            )

        if not same(TAXONOMY_FILES):
            return Compat.NONE
        return Compat.SAME if same(ITEM_SPACE_FILES) else Compat.TAXONOMY


def cold_start_order(
    popularity: np.ndarray, item_clusters: np.ndarray, n_clusters: int, length: int
) -> np.ndarray:
    """Round robin over clusters: every cluster's most popular item, then every second-best, ...

    Clusters are visited in the order of their best item's popularity, so the head of the list is
    both popular and spread over the whole taxonomy.
    """
    n = len(popularity)
    length = min(length, n)
    if length == 0:
        return np.empty(0, dtype=np.int64)
    # By cluster, then popularity descending (np.lexsort: the last key is the primary one; stable).
    order = np.lexsort((-popularity, item_clusters))
    clusters_sorted = item_clusters[order]
    starts = np.searchsorted(clusters_sorted, np.arange(n_clusters))
    rank_in_cluster = np.arange(n) - starts[clusters_sorted]
    best = np.full(n_clusters, -np.inf)
    firsts = order[rank_in_cluster == 0]
    best[item_clusters[firsts]] = popularity[firsts]
    cluster_rank = np.empty(n_clusters, dtype=np.int64)
    cluster_rank[np.argsort(-best, kind="stable")] = np.arange(n_clusters)
    rounds = math.ceil(length / max(1, len(firsts))) + 1
    keep = rank_in_cluster < rounds
    candidates = order[keep]
    key = rank_in_cluster[keep] * n_clusters + cluster_rank[clusters_sorted[keep]]
    return candidates[np.argsort(key, kind="stable")[:length]]


def load_serving_bundle(
    path: Path,
    *,
    index_device: str = "cpu",
    cold_start_len: int = 2000,
    encoder: EncoderKind = "auto",
    threads: int = 1,
) -> ServingBundle:
    """Load, verify (hashes, cross-file consistency), precompute lookups and run one query end to end.

    Raises `BundleError` for anything that makes the bundle unservable, so a reload can refuse it.
    """
    try:
        bundle = load_bundle(path, verify=True, index_device=index_device)
        model, index = bundle.model, bundle.index
        if model.n_items != index.n_items or model.dim != index.dim:
            raise BundleError(
                f"{bundle.path}: model ({model.n_items} items, dim {model.dim}) does not match the "
                f"index ({index.n_items} items, dim {index.dim})"
            )
        # Only the two columns the responses need: Bundle.items also parses every row's attributes.
        items = pd.read_parquet(bundle.path / B.ITEMS, columns=["item_id", "title"])
        item_ids = items["item_id"].astype(str).tolist()
        taxonomy = bundle.taxonomy
        item_clusters = np.asarray(taxonomy.item_clusters, dtype=np.int64)
        centroids = np.asarray(bundle.centroids, dtype=np.float32)
        norms = np.linalg.norm(centroids, axis=1, keepdims=True)
        unit_centroids = np.ascontiguousarray(centroids / np.where(norms > 0, norms, 1.0), dtype=np.float32)
        popularity = np.asarray(bundle.popularity, dtype=np.float64)
        cold = cold_start_order(popularity, item_clusters, index.n_clusters, cold_start_len)
        serving = ServingBundle(
            bundle=bundle,
            model=model,
            encoder=open_user_encoder(model, bundle.encoder_path, encoder, threads),
            index=index,
            relevance=bundle.relevance_index,
            item_ids=item_ids,
            item_index={item_id: i for i, item_id in enumerate(item_ids)},
            stored_id_index=pd.Index([i.encode() for i in item_ids], dtype=object),
            titles=items["title"].fillna("").astype(str).tolist(),
            item_clusters=item_clusters.tolist(),
            item_cluster_array=item_clusters.astype(np.int32),
            cluster_labels=[c.label for c in taxonomy.clusters],
            unit_centroids=unit_centroids,
            cold_start=list(zip(cold.tolist(), popularity[cold].tolist(), strict=True)),
        )
        if not serving.stored_id_index.is_unique:
            dup = serving.stored_id_index[serving.stored_id_index.duplicated()][0].decode()
            raise BundleError(f"{path}: duplicate item id {dup!r} in {B.ITEMS}")
        _warm_up(serving)
        return serving
    except BundleError:
        raise
    except Exception as exc:  # unreadable parquet, a torch/FAISS load error, a failed warm-up query
        raise BundleError(f"{path}: bundle cannot be served: {type(exc).__name__}: {exc}") from exc


def _warm_up(sb: ServingBundle) -> None:
    """One query through every stage: a bundle that loads but cannot answer is refused here."""
    user = encode_users(sb.model, [[0]])
    if sb.encoder.kind != "torch":
        # The export must be this model's: a stale or foreign encoder.onnx would steer every search
        # with another model's embeddings.
        probe = [[0], list(range(min(sb.n_items, sb.model.max_len + 3))), []]
        gap = float(np.abs(sb.encoder.encode(probe) - encode_users(sb.model, probe)).max())
        if not gap <= 1e-3:
            raise BundleError(f"{sb.path}: the exported encoder disagrees with the model (max gap {gap:.3g})")
    _, ids = sb.index.search(user, 1, nprobe=None)
    if sb.relevance is not None:
        _, rel_ids = sb.relevance.search(user, 1, nprobe=None)
        if rel_ids[0, 0] < 0:
            raise BundleError(f"{sb.path}: warm-up query found nothing in the relevance index")
    _, cids = sb.index.search_clusters(user, 1, np.array([[sb.item_clusters[0]]]))
    if not (np.all(np.isfinite(user)) and ids[0, 0] >= 0 and cids[0, 0] >= 0):
        raise BundleError(f"{sb.path}: warm-up query returned no result")

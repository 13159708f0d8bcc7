"""What the interest service needs from a bundle, and each user's context for one refresh."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from serendip.bundle import Bundle
from serendip.taxonomy import Taxonomy


@dataclass
class Catalog:
    bundle_id: str
    titles: list[str]
    texts: list[str]
    image_uris: list[str | None]
    item_index: dict[str, int]
    item_clusters: np.ndarray
    taxonomy: Taxonomy
    labels: list[str] = field(init=False)
    label_to_id: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.labels = [c.label for c in self.taxonomy.clusters]
        self.label_to_id = {label: i for i, label in enumerate(self.labels)}
        if len(self.label_to_id) != len(self.labels):
            raise ValueError("taxonomy labels must be unique: the LLM answers with labels")

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> Catalog:
        items = bundle.items
        uris = [u if isinstance(u, str) and u else None for u in items["image_uri"].tolist()]
        return cls(
            bundle_id=bundle.bundle_id,
            titles=[str(t) for t in items["title"].tolist()],
            texts=[str(t) if isinstance(t, str) else "" for t in items["text"].tolist()],
            image_uris=uris,
            item_index=bundle.item_index,
            item_clusters=np.asarray(bundle.taxonomy.item_clusters),
            taxonomy=bundle.taxonomy,
        )

    @property
    def n_clusters(self) -> int:
        return len(self.labels)


def history_fingerprint(item_ids: list[str]) -> int:
    """A stable 64-bit hash of a history (most recent first), stored in the record to detect change."""
    digest = hashlib.blake2b("\x1f".join(item_ids).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@dataclass
class UserContext:
    user_id: str
    item_ids: list[str]  # the history as read from Redis, most recent first
    history: list[int]  # known item indices, oldest first (the sequence model's order)
    fingerprint: int
    clusters: set[int]  # every cluster of the history: never proposed as "new"
    recent_clusters: list[int]  # distinct clusters of the most recent items, most recent first
    unknown_items: int = 0

    @property
    def recent(self) -> list[int]:
        """Item indices, most recent first."""
        return self.history[::-1]

    @classmethod
    def build(
        cls, user_id: str, item_ids: list[str], catalog: Catalog, n_recent_clusters: int
    ) -> UserContext:
        known = [catalog.item_index[i] for i in item_ids if i in catalog.item_index]
        recent_clusters: list[int] = []
        for idx in known:
            c = int(catalog.item_clusters[idx])
            if c not in recent_clusters:
                recent_clusters.append(c)
        return cls(
            user_id=user_id,
            item_ids=list(item_ids),
            history=known[::-1],
            fingerprint=history_fingerprint(list(item_ids)),
            clusters={int(catalog.item_clusters[i]) for i in known},
            recent_clusters=recent_clusters[:n_recent_clusters],
            unknown_items=len(item_ids) - len(known),
        )

"""What the demo page shows about items: titles, clusters and posters, read from the published bundle
without loading its models (no torch, no FAISS)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from serendip.bundle import load_bundle, resolve_bundle_path

IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


@dataclass(frozen=True)
class ItemView:
    item_id: str
    title: str
    cluster_id: int
    cluster_label: str
    image: str | None  # a local file path or an http(s) URL

    def poster_url(self) -> str | None:
        if not self.image:
            return None
        if self.image.startswith(("http://", "https://")):
            return self.image
        return f"/poster/{self.item_id}"


class Catalog:
    """Items of the current bundle; reloaded when the bundle root's `current` link moves."""

    def __init__(self, bundle_root: Path, current: str = "current", top_users: int = 40) -> None:
        self.bundle_root = Path(bundle_root)
        self.current = current
        self.top_users = top_users
        self._lock = threading.Lock()
        self._path: Path | None = None
        self.bundle_id = ""
        self.items: dict[str, ItemView] = {}
        self.users: list[str] = []

    def refresh(self) -> Catalog:
        path = resolve_bundle_path(self.bundle_root, self.current)
        with self._lock:
            if path == self._path:
                return self
            bundle = load_bundle(path, verify=False)
            tax = bundle.taxonomy
            labels = [c.label for c in tax.clusters]
            df = bundle.items
            items = {}
            for i, (item_id, title, image) in enumerate(
                zip(df["item_id"].astype(str), df["title"].astype(str), df["image_uri"], strict=True)
            ):
                cid = int(tax.item_clusters[i])
                items[item_id] = ItemView(
                    item_id, title, cid, labels[cid], image if isinstance(image, str) else None
                )
            inter = bundle.interactions
            counts = inter["user_id"].astype(str).value_counts() if len(inter) else None
            self.users = [] if counts is None else counts.index[: self.top_users].tolist()
            self.items, self.bundle_id, self._path = items, bundle.bundle_id, path
        return self

    def item(self, item_id: str) -> ItemView | None:
        return self.items.get(item_id)

    def poster_file(self, item_id: str) -> tuple[Path, str] | None:
        """The local poster of a known item (never a path taken from the request)."""
        view = self.items.get(item_id)
        if view is None or not view.image or view.image.startswith(("http://", "https://")):
            return None
        path = Path(view.image.removeprefix("file://"))
        kind = IMAGE_TYPES.get(path.suffix.lower())
        if kind is None or not path.is_file():
            return None
        return path, kind

"""Small canonical-schema (tabular) slices of MovieLens for tests: real data, built in seconds."""

from __future__ import annotations

import json
from pathlib import Path


def write_tiny_dataset(movielens: Path, out: Path, n_items: int) -> Path:
    from serendip.data import load_dataset

    full = load_dataset("movielens", movielens)
    keep = set(full.interactions["item_id"].value_counts().index[:n_items])
    items = full.items[full.items["item_id"].isin(keep)].copy()
    inter = full.interactions[full.interactions["item_id"].isin(keep)].copy()
    items["attributes"] = [json.dumps(a, ensure_ascii=False) for a in items["attributes"]]
    out.mkdir(parents=True, exist_ok=True)
    items.to_csv(out / "items.csv", index=False)
    inter.to_csv(out / "interactions.csv", index=False)
    return out

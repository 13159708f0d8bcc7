"""A tiny canonical (tabular) MovieLens slice and a config for it: enough for `serendip up` to build a
real bundle in seconds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

TINY_ITEMS = 300


def write_tiny_dataset(movielens: Path, out: Path, n_items: int = TINY_ITEMS) -> Path:
    from serendip.data import load_dataset

    full = load_dataset("movielens", movielens)
    keep = set(full.interactions["item_id"].value_counts().index[:n_items])
    items = full.items[full.items["item_id"].isin(keep)].copy()
    inter = full.interactions[full.interactions["item_id"].isin(keep)].copy()
    items["attributes"] = [pd.io.json.ujson_dumps(a) for a in items["attributes"]]
    out.mkdir(parents=True, exist_ok=True)
    items.to_csv(out / "items.csv", index=False)
    inter.to_csv(out / "interactions.csv", index=False)
    return out


def write_tiny_config(path: Path, data: Path, bundle_root: Path) -> Path:
    path.write_text(
        f"""
[data]
adapter = "tabular"
path = "{data}"

[taxonomy]
n_coarse = 4
n_fine = 12

[seqmodel]
dim = 16
heads = 2
max_len = 20
epochs = 2
negatives = 16

[bundle]
root = "{bundle_root}"

[retrieval]
drain_delay_s = 0.2
watch_interval_s = 0
"""
    )
    return path

"""Generic adapter: a directory with items and interactions already in the canonical schema.

Files: ``items.csv`` or ``items.parquet`` and ``interactions.csv`` or ``interactions.parquet``
(exactly one of each pair).

items: item_id, title required; text (default ""), image_uri (default None; relative paths are
resolved against the directory, URLs kept) and attributes (JSON object text in CSV, a dict/struct/map
or JSON text in Parquet; default {}) optional.
interactions: user_id, item_id, timestamp required (unix seconds or ISO-8601); weight optional
(default 1.0, i.e. implicit feedback).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serendip.data import validate as v
from serendip.data.schema import DataError, Dataset, make_interactions, make_items

ITEMS = "items"
INTERACTIONS = "interactions"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

Attributes = dict[str, str | list[str]]


def load(path: Path, *, name: str | None = None) -> Dataset:
    """Load a canonical-schema directory; raises DataError on bad input."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(str(root), "dataset directory not found")
    src = v.SourceFiles(root)

    items_path, items_raw = _read(src, ITEMS, ("item_id", "title"))
    items = _items(items_raw, items_path, root)
    inter_path, inter_raw = _read(src, INTERACTIONS, ("user_id", "item_id", "timestamp"))
    interactions = _interactions(inter_raw, inter_path, pd.Index(items["item_id"]))

    return Dataset(
        name=name or root.name, items=items, interactions=interactions, fingerprint=src.fingerprint()
    )


def _read(src: v.SourceFiles, stem: str, required: tuple[str, ...]) -> tuple[Path, pd.DataFrame]:
    candidates = [f"{stem}.csv", f"{stem}.parquet"]
    present = [c for c in candidates if (src.root / c).is_file()]
    if not present:
        raise DataError(str(src.root / f"{stem}.csv"), f"file not found (nor {stem}.parquet)")
    if len(present) > 1:
        # Silently preferring one would make the result depend on an undocumented rule.
        raise DataError(str(src.root / present[1]), f"both {present[0]} and {present[1]} exist; keep one")
    path = src.root / present[0]
    df = v.read_table(path, src.read(present[0]))
    v.require_columns(df, required, path)
    v.require_rows(df, path)
    return path, df


def _items(df: pd.DataFrame, path: Path, root: Path) -> pd.DataFrame:
    item_ids = v.id_column(df, "item_id", path, "item_id")
    v.require_unique(item_ids, path, "item_id", "item_id")
    titles = v.text_column(df, "title", path, what="title", required=True)
    n = len(df)
    texts = v.text_column(df, "text", path, what="text", required=False) if "text" in df else [""] * n
    if "image_uri" in df:
        images = [
            _resolve_image(u, root) for u in v.text_column(df, "image_uri", path, what="", required=False)
        ]
    else:
        images = [None] * n
    attributes = _attributes(df["attributes"], path) if "attributes" in df else [{} for _ in range(n)]
    return make_items(item_ids, titles, texts, images, attributes)


def _interactions(df: pd.DataFrame, path: Path, known: pd.Index) -> pd.DataFrame:
    users = v.id_column(df, "user_id", path, "user_id")
    items = v.id_column(df, "item_id", path, "item_id")
    v.require_known(items, known, path, "item_id", "item_id (not in items)")
    stamps = v.timestamp_column(df, "timestamp", path)
    if "weight" in df:
        weights = v.float_column(df, "weight", path).to_numpy()
    else:
        weights = np.ones(len(df), dtype=np.float32)
    return make_interactions(users, items, stamps, weights)


def _resolve_image(uri: str, root: Path) -> str | None:
    if not uri:
        return None
    if _URL.match(uri):
        return uri
    p = Path(uri)
    return str(p if p.is_absolute() else root.resolve() / p)


def _attributes(column: pd.Series, path: Path) -> list[Attributes]:
    """Parse and check every attributes cell; the first bad one raises with its row."""
    out: list[Attributes] = []
    for row, cell in column.items():
        try:
            out.append(_one_attributes(cell))
        except ValueError as exc:
            raise DataError(str(path), str(exc), row=int(row), column="attributes") from exc
    return out


def _one_attributes(cell: Any) -> Attributes:
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return {}
    if isinstance(cell, str):
        if not cell.strip():
            return {}
        try:
            cell = json.loads(cell)
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON: {exc.msg} at char {exc.pos}") from exc
    elif isinstance(cell, list | np.ndarray):
        # pyarrow reads a map<string, ...> column as a list of (key, value) pairs.
        try:
            cell = dict(cell)
        except (TypeError, ValueError) as exc:
            raise ValueError("expected a JSON object / mapping of attributes") from exc
    if not isinstance(cell, Mapping):
        raise ValueError(f"expected a JSON object, got {type(cell).__name__}")
    return {str(k): val for k, value in cell.items() if (val := _attribute_value(str(k), value)) is not None}


def _attribute_value(key: str, value: Any) -> str | list[str] | None:
    """Schema: str | list[str]. Scalars are stringified; nulls (absent struct fields) dropped."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str | int | float | bool | np.generic):
        return str(value.item() if isinstance(value, np.generic) else value)
    if isinstance(value, list | tuple | np.ndarray):
        items = list(value)
        if all(isinstance(x, str | int | float | bool | np.generic) for x in items):
            return [str(x.item() if isinstance(x, np.generic) else x) for x in items]
    raise ValueError(f"attribute {key!r} must be a string or a list of strings, got {value!r}")

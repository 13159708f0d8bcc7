"""The canonical data schema every adapter produces and every later step consumes.

items
    item_id     str, unique, non-empty
    title       str, non-empty
    text        str (free text: description, genres, tags...; may be empty)
    image_uri   str | None (local path or http(s) URL of an image, e.g. a poster)
    attributes  dict[str, str | list[str]] (e.g. {"genres": [...], "tags": [...], "year": "1995"})

interactions
    user_id     str, non-empty
    item_id     str, must exist in items
    timestamp   int64, unix seconds
    weight      float32 (rating or engagement strength; positives are weight >= positive_threshold)

Row order of ``items`` defines each item's *internal index* (0..n-1) used by embeddings,
clusters, the sequence model and the FAISS index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

ITEM_COLUMNS = ("item_id", "title", "text", "image_uri", "attributes")
INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "weight")


class DataError(ValueError):
    """Invalid input data; names the file, and where known the row (1-based, header = row 1) and column."""

    def __init__(self, file: str, message: str, *, row: int | None = None, column: str | None = None):
        self.file = file
        self.row = row
        self.column = column
        where = file
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Dataset:
    name: str
    items: pd.DataFrame
    interactions: pd.DataFrame
    # sha256 over the source files' bytes; recorded in bundle manifests.
    fingerprint: str

    @property
    def n_items(self) -> int:
        return len(self.items)

    def item_index(self) -> pd.Series:
        """item_id → internal index."""
        return pd.Series(range(len(self.items)), index=self.items["item_id"].to_numpy())


def make_items(
    item_id: Sequence[str],
    title: Sequence[str],
    text: Sequence[str],
    image_uri: Sequence[str | None],
    attributes: Sequence[dict[str, str | list[str]]],
) -> pd.DataFrame:
    """An items frame with the schema's column order and dtypes.

    image_uri and attributes are forced to object dtype: pandas (3.x) would otherwise infer a string
    dtype for image_uri and turn None into NaN.
    """
    return pd.DataFrame(
        {
            "item_id": _column(item_id, str),
            "title": _column(title, str),
            "text": _column(text, str),
            "image_uri": _column(image_uri, object),
            "attributes": _column(attributes, object),
        },
        columns=list(ITEM_COLUMNS),
    )


def make_interactions(
    user_id: Sequence[str], item_id: Sequence[str], timestamp: Sequence[int], weight: Sequence[float]
) -> pd.DataFrame:
    """An interactions frame with the schema's column order and dtypes (int64 seconds, float32 weight)."""
    return pd.DataFrame(
        {
            "user_id": _column(user_id, str),
            "item_id": _column(item_id, str),
            "timestamp": np.asarray(timestamp, dtype=np.int64),
            "weight": np.asarray(weight, dtype=np.float32),
        },
        columns=list(INTERACTION_COLUMNS),
    )


def _column(values: Sequence[object], dtype: type) -> pd.Series:
    # Positional, never index-aligned: inputs may be Series indexed by source row number.
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return pd.Series(array, dtype=dtype)

"""Dataset adapters: every source format becomes the canonical schema in `serendip.data.schema`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from serendip.data.schema import DataError, Dataset

__all__ = ["ADAPTERS", "DataError", "Dataset", "load_dataset"]

ADAPTERS = ("movielens", "tabular")


def _loader(adapter: str) -> Callable[..., Dataset]:
    # Imported lazily so that `import serendip.data` stays cheap for code that only needs the types.
    if adapter == "movielens":
        from serendip.data import movielens

        return movielens.load
    if adapter == "tabular":
        from serendip.data import tabular

        return tabular.load
    raise ValueError(f"unknown dataset adapter {adapter!r}; choose one of: {', '.join(ADAPTERS)}")


def load_dataset(adapter: str, path: Path | str, **kw: Any) -> Dataset:
    """Load the dataset at `path` with the named adapter ("movielens" or "tabular").

    Keyword arguments go to the adapter (both accept `name=`; movielens also `max_tags=`).
    Raises DataError for bad input data and ValueError for an unknown adapter. Nothing is written.
    """
    return _loader(adapter)(Path(path), **kw)

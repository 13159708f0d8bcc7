"""Per-user time split into a history period and a future period.

Everything the evaluation compares (taxonomy, sequence model, transition model, fine-tuning data) is
fitted on the history period only; the future period is touched only to score. Each user's own
interactions are ordered by time and the last ``future_fraction`` of them (at least
``min_future``) become the future; users with fewer than ``min_history + min_future`` interactions
stay wholly in the history (they still train the models but are never scored).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from serendip.data.schema import Dataset


@dataclass(frozen=True)
class HistoryFutureSplit:
    history: pd.DataFrame  # canonical interactions, history period (all users)
    future: pd.DataFrame  # canonical interactions, future period (scored users only)

    @property
    def scored_users(self) -> list[str]:
        return sorted(self.future["user_id"].unique().tolist())


def split_history_future(
    interactions: pd.DataFrame,
    *,
    future_fraction: float = 0.2,
    min_future: int = 1,
    min_history: int = 5,
) -> HistoryFutureSplit:
    if not 0.0 < future_fraction < 1.0:
        raise ValueError("future_fraction must be in (0, 1)")
    if min_future < 1 or min_history < 1:
        raise ValueError("min_future and min_history must be >= 1")
    # Stable sort keeps the source order for equal timestamps, so the split is deterministic.
    df = interactions.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    size = df.groupby("user_id", sort=False)["item_id"].transform("size").to_numpy()
    rank = df.groupby("user_id", sort=False).cumcount().to_numpy()
    n_future = np.maximum(np.ceil(size * future_fraction).astype(np.int64), min_future)
    scored = size >= min_history + n_future
    is_future = scored & (rank >= size - n_future)
    return HistoryFutureSplit(
        history=df.loc[~is_future].reset_index(drop=True),
        future=df.loc[is_future].reset_index(drop=True),
    )


def history_dataset(dataset: Dataset, split: HistoryFutureSplit) -> Dataset:
    """The dataset restricted to the history period (same items, so indices stay aligned)."""
    return Dataset(
        name=f"{dataset.name}-history",
        items=dataset.items,
        interactions=split.history,
        fingerprint=f"{dataset.fingerprint}:history",
    )

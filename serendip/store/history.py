"""Recent-history lists in Redis: the freshest positives of each user, most recent first.

In production the feed's event pipeline appends to these lists; ``seed_histories`` fills them from a
bundle's interactions (demo, tests, benchmarks).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
import redis

from serendip.store.keys import history_key

DEFAULT_HISTORY_LEN = 50


def push_history(
    client: redis.Redis,
    prefix: str,
    user_id: str,
    item_ids: Sequence[str],
    max_len: int = DEFAULT_HISTORY_LEN,
) -> None:
    """Append items (oldest first) to the user's list, keeping only the newest ``max_len``."""
    if not item_ids:
        return
    key = history_key(prefix, user_id)
    pipe = client.pipeline(transaction=True)
    pipe.lpush(key, *item_ids)
    pipe.ltrim(key, 0, max_len - 1)
    pipe.execute()


def read_history(
    client: redis.Redis, prefix: str, user_id: str, max_len: int = DEFAULT_HISTORY_LEN
) -> list[str]:
    """Most recent first."""
    return [x.decode() for x in client.lrange(history_key(prefix, user_id), 0, max_len - 1)]


def user_histories(
    interactions: pd.DataFrame, threshold: float, max_len: int = DEFAULT_HISTORY_LEN
) -> dict[str, list[str]]:
    """Per user, the newest ``max_len`` positive item ids, oldest first."""
    pos = interactions[interactions["weight"] >= threshold]
    pos = pos.sort_values(["user_id", "timestamp"], kind="stable")
    return {
        str(user): group["item_id"].astype(str).tolist()[-max_len:]
        for user, group in pos.groupby("user_id", sort=False)
    }


def seed_histories(
    client: redis.Redis,
    prefix: str,
    histories: dict[str, list[str]] | Iterable[tuple[str, list[str]]],
    max_len: int = DEFAULT_HISTORY_LEN,
    batch: int = 1000,
) -> int:
    """Replace each user's history list (pipelined in batches). Returns the number of users written."""
    items = histories.items() if isinstance(histories, dict) else histories
    pipe = client.pipeline(transaction=False)
    n = 0
    for user_id, item_ids in items:
        key = history_key(prefix, user_id)
        pipe.delete(key)
        newest = list(item_ids)[-max_len:]
        if newest:
            pipe.lpush(key, *newest)
        n += 1
        if n % batch == 0:
            pipe.execute()
    pipe.execute()
    return n

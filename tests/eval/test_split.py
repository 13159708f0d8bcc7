import pandas as pd
import pytest

from serendip.eval.split import split_history_future


def _interactions(counts: dict[str, int]) -> pd.DataFrame:
    rows = []
    for user, n in counts.items():
        for t in range(n):
            rows.append(
                {
                    "user_id": user,
                    "item_id": f"i{t}",
                    "timestamp": 1000 - t * 7 if user == "b" else t,
                    "weight": 4.0,
                }
            )
    return pd.DataFrame(rows)


def test_future_is_each_users_latest_fraction():
    split = split_history_future(_interactions({"a": 10, "b": 10}), future_fraction=0.2, min_history=5)
    for user in ("a", "b"):
        hist = split.history[split.history.user_id == user]
        fut = split.future[split.future.user_id == user]
        assert len(fut) == 2 and len(hist) == 8
        assert hist.timestamp.max() < fut.timestamp.min()


def test_short_users_stay_in_history_and_are_not_scored():
    split = split_history_future(_interactions({"a": 10, "short": 5}), future_fraction=0.2, min_history=5)
    assert split.scored_users == ["a"]
    assert (split.history.user_id == "short").sum() == 5


def test_rejects_bad_fraction():
    with pytest.raises(ValueError, match="future_fraction"):
        split_history_future(_interactions({"a": 3}), future_fraction=1.0)

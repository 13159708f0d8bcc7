"""Tabular adapter: canonical-schema CSV/Parquet directories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serendip.data import DataError, load_dataset
from serendip.data.schema import INTERACTION_COLUMNS, ITEM_COLUMNS

ITEMS_CSV = (
    "item_id,title,text,image_uri,attributes\n"
    'a1,First,"Some text, with a comma",img/a1.png,"{""genres"": [""x"", ""y""], ""year"": 1999}"\n'
    "a2,Second,,https://example.org/a2.jpg,\n"
    "a3,Third,plain,/abs/a3.jpg,{}\n"
)
INTERACTIONS_CSV = (
    "user_id,item_id,timestamp,weight\n"
    "u1,a1,1700000000,1\n"
    "u1,a2,2023-11-14T22:13:21Z,0.5\n"
    "u2,a3,2023-11-14 22:13:21+01:00,2\n"
    "u2,a1,2023-11-15,3\n"
)


def write(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def csv_dir(tmp_path: Path) -> Path:
    return write(tmp_path / "tab", {"items.csv": ITEMS_CSV, "interactions.csv": INTERACTIONS_CSV})


def test_csv_items(csv_dir: Path) -> None:
    ds = load_dataset("tabular", csv_dir)
    items = ds.items
    assert ds.name == "tab"
    assert tuple(items.columns) == ITEM_COLUMNS
    assert items["item_id"].tolist() == ["a1", "a2", "a3"]
    assert items["text"].tolist() == ["Some text, with a comma", "", "plain"]
    assert items["image_uri"].tolist() == [
        str(csv_dir.resolve() / "img" / "a1.png"),
        "https://example.org/a2.jpg",
        "/abs/a3.jpg",
    ]
    # JSON numbers become strings so attributes keep the schema's str | list[str] shape.
    assert items["attributes"].tolist() == [{"genres": ["x", "y"], "year": "1999"}, {}, {}]


def test_csv_interactions_mixed_timestamps(csv_dir: Path) -> None:
    inter = load_dataset("tabular", csv_dir).interactions
    assert tuple(inter.columns) == INTERACTION_COLUMNS
    assert inter["timestamp"].dtype == np.int64
    assert inter["timestamp"].tolist() == [1700000000, 1700000001, 1700000001 - 3600, 1700006400]
    assert inter["weight"].dtype == np.float32
    assert inter["weight"].tolist() == [1.0, 0.5, 2.0, 3.0]
    assert inter["user_id"].tolist() == ["u1", "u1", "u2", "u2"]


def test_optional_columns_default(tmp_path: Path) -> None:
    root = write(
        tmp_path / "t",
        {
            "items.csv": "item_id,title\n10,Ten\n11,Eleven\n",
            "interactions.csv": "user_id,item_id,timestamp\n5,10,1\n5,11,2\n",
        },
    )
    ds = load_dataset("tabular", root)
    assert ds.items["item_id"].tolist() == ["10", "11"]
    assert ds.items["text"].tolist() == ["", ""]
    assert ds.items["image_uri"].tolist() == [None, None]
    assert ds.items["attributes"].tolist() == [{}, {}]
    assert ds.interactions["weight"].tolist() == [1.0, 1.0]
    assert ds.interactions["weight"].dtype == np.float32


def test_parquet_typed_columns(tmp_path: Path) -> None:
    root = tmp_path / "pq"
    root.mkdir()
    pd.DataFrame(
        {
            "item_id": [1, 2],  # integer ids become "1", "2"
            "title": ["One", "Two"],
            "image_uri": ["posters/1.jpg", None],
            "attributes": [{"genres": ["a", "b"], "year": "2001"}, {"genres": ["c"], "year": None}],
        }
    ).to_parquet(root / "items.parquet")
    pd.DataFrame(
        {
            "user_id": ["u", "u", "v"],
            "item_id": ["1", "2", "2"],
            "timestamp": pd.to_datetime(
                ["2023-11-14T22:13:20Z", "2023-11-14T22:13:21Z", "1970-01-01T00:00:05Z"]
            ),
            "weight": np.array([1.5, 2.0, 0.0], dtype=np.float64),
        }
    ).to_parquet(root / "interactions.parquet")
    ds = load_dataset("tabular", root)
    assert ds.items["item_id"].tolist() == ["1", "2"]
    assert ds.items["image_uri"].tolist() == [str(root.resolve() / "posters" / "1.jpg"), None]
    # Parquet stores these dicts as a struct: the missing year comes back null and is dropped.
    assert ds.items["attributes"].tolist() == [{"genres": ["a", "b"], "year": "2001"}, {"genres": ["c"]}]
    assert ds.interactions["timestamp"].tolist() == [1700000000, 1700000001, 5]
    assert ds.interactions["weight"].tolist() == [1.5, 2.0, 0.0]


def test_parquet_integer_timestamps_and_json_attributes(tmp_path: Path) -> None:
    root = tmp_path / "pq"
    root.mkdir()
    pd.DataFrame({"item_id": ["x"], "title": ["X"], "attributes": [json.dumps({"tags": ["t"]})]}).to_parquet(
        root / "items.parquet"
    )
    pd.DataFrame(
        {"user_id": ["u"], "item_id": ["x"], "timestamp": np.array([123], dtype=np.int64), "weight": [4]}
    ).to_parquet(root / "interactions.parquet")
    ds = load_dataset("tabular", root)
    assert ds.items.loc[0, "attributes"] == {"tags": ["t"]}
    assert ds.interactions["timestamp"].tolist() == [123]


def test_csv_and_parquet_mixed(tmp_path: Path) -> None:
    root = write(tmp_path / "m", {"items.csv": "item_id,title\nx,X\n"})
    pd.DataFrame({"user_id": ["u"], "item_id": ["x"], "timestamp": [7]}).to_parquet(
        root / "interactions.parquet"
    )
    assert load_dataset("tabular", root).interactions["item_id"].tolist() == ["x"]


def test_fingerprint(tmp_path: Path, csv_dir: Path) -> None:
    fp = load_dataset("tabular", csv_dir).fingerprint
    same = write(tmp_path / "same", {"items.csv": ITEMS_CSV, "interactions.csv": INTERACTIONS_CSV})
    assert load_dataset("tabular", same).fingerprint == fp
    changed = write(
        tmp_path / "changed",
        {"items.csv": ITEMS_CSV.replace("Third", "Thirds"), "interactions.csv": INTERACTIONS_CSV},
    )
    assert load_dataset("tabular", changed).fingerprint != fp


def test_both_csv_and_parquet_is_an_error(csv_dir: Path) -> None:
    pd.DataFrame({"item_id": ["a1"], "title": ["t"]}).to_parquet(csv_dir / "items.parquet")
    with pytest.raises(DataError) as err:
        load_dataset("tabular", csv_dir)
    assert err.value.file == str(csv_dir / "items.parquet")
    assert "keep one" in str(err.value)

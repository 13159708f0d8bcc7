"""Every bad input raises a DataError naming the file, the 1-based row (header = row 1) and the column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serendip.data import DataError, load_dataset
from serendip.data import validate as v

MOVIES = (
    "movieId,title,genres\n1,Toy Story (1995),Animation\n2,Jumanji (1995),Adventure\n3,Heat (1995),Action\n"
)
RATINGS = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,3.5,964982704\n2,3,5,964982705\n"
TAGS = "userId,movieId,tag,timestamp\n1,1,pixar,964982703\n"
LINKS = "movieId,imdbId,tmdbId\n1,0114709,862\n"
ITEMS = "item_id,title,text\na,A,\nb,B,\nc,C,\n"
INTERACTIONS = "user_id,item_id,timestamp,weight\nu,a,1,1\nu,b,2,1\nw,c,3,1\n"

GOOD = {
    "movielens": {"movies.csv": MOVIES, "ratings.csv": RATINGS, "tags.csv": TAGS, "links.csv": LINKS},
    "tabular": {"items.csv": ITEMS, "interactions.csv": INTERACTIONS},
}


def build(root: Path, adapter: str, changes: dict[str, str | bytes | None]) -> Path:
    """Write the good files for `adapter` with `changes` applied (None removes a file)."""
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, str | bytes | None] = {**GOOD[adapter], **changes}
    for name, content in files.items():
        if content is None:
            continue
        data = content.encode("utf-8") if isinstance(content, str) else content
        (root / name).write_bytes(data)
    return root


def load_error(root: Path, adapter: str) -> DataError:
    with pytest.raises(DataError) as err:
        load_dataset(adapter, root)
    return err.value


# (id, adapter, changes, file, row, column, message fragment)
CASES = [
    # missing / empty files
    ("ml-missing-movies", "movielens", {"movies.csv": None}, "movies.csv", None, None, "file not found"),
    ("ml-missing-ratings", "movielens", {"ratings.csv": None}, "ratings.csv", None, None, "file not found"),
    ("ml-zero-bytes", "movielens", {"movies.csv": ""}, "movies.csv", None, None, "empty"),
    (
        "ml-header-only",
        "movielens",
        {"ratings.csv": "userId,movieId,rating,timestamp\n"},
        "ratings.csv",
        None,
        None,
        "no data rows",
    ),
    ("tab-missing-items", "tabular", {"items.csv": None}, "items.csv", None, None, "file not found"),
    (
        "tab-missing-inter",
        "tabular",
        {"interactions.csv": None},
        "interactions.csv",
        None,
        None,
        "file not found",
    ),
    ("tab-header-only", "tabular", {"items.csv": "item_id,title\n"}, "items.csv", None, None, "no data rows"),
    # missing columns: all of them are named
    (
        "ml-missing-cols",
        "movielens",
        {"ratings.csv": "userId,movie,score\n1,1,4\n"},
        "ratings.csv",
        None,
        None,
        "'movieId', 'rating', 'timestamp'",
    ),
    (
        "ml-tags-missing-col",
        "movielens",
        {"tags.csv": "userId,movieId,label\n1,1,x\n"},
        "tags.csv",
        None,
        None,
        "'tag'",
    ),
    (
        "tab-missing-cols",
        "tabular",
        {"items.csv": "id,name\na,A\n"},
        "items.csv",
        None,
        None,
        "'item_id', 'title'",
    ),
    # ids
    (
        "ml-dup-movie",
        "movielens",
        {"movies.csv": MOVIES + "2,Jumanji again (1995),Adventure\n"},
        "movies.csv",
        5,
        "movieId",
        "duplicate movieId '2' (first seen in row 3)",
    ),
    (
        "ml-dup-movie-spaces",
        "movielens",
        {"movies.csv": MOVIES.replace("3,Heat", " 1 ,Heat")},
        "movies.csv",
        4,
        "movieId",
        "duplicate movieId '1'",
    ),
    (
        "ml-empty-movie-id",
        "movielens",
        {"movies.csv": MOVIES.replace("3,Heat", ",Heat")},
        "movies.csv",
        4,
        "movieId",
        "empty movieId",
    ),
    (
        "tab-dup-item",
        "tabular",
        {"items.csv": ITEMS + "b,B2,\n"},
        "items.csv",
        5,
        "item_id",
        "duplicate item_id 'b' (first seen in row 3)",
    ),
    (
        "tab-empty-item-id",
        "tabular",
        {"items.csv": "item_id,title\na,A\n  ,B\n"},
        "items.csv",
        3,
        "item_id",
        "empty item_id",
    ),
    # titles
    (
        "ml-empty-title",
        "movielens",
        {"movies.csv": MOVIES.replace("Jumanji (1995)", " ")},
        "movies.csv",
        3,
        "title",
        "empty title",
    ),
    (
        "tab-empty-title",
        "tabular",
        {"items.csv": "item_id,title\na,A\nb,\n"},
        "items.csv",
        3,
        "title",
        "empty title",
    ),
    # users
    (
        "ml-empty-user",
        "movielens",
        {"ratings.csv": RATINGS.replace("2,3,5", ",3,5")},
        "ratings.csv",
        4,
        "userId",
        "empty userId",
    ),
    (
        "tab-empty-user",
        "tabular",
        {"interactions.csv": INTERACTIONS.replace("u,b,2", ",b,2")},
        "interactions.csv",
        3,
        "user_id",
        "empty user_id",
    ),
    # unknown items
    (
        "ml-unknown-movie",
        "movielens",
        {"ratings.csv": RATINGS + "3,99,4,964982706\n3,98,4,1\n"},
        "ratings.csv",
        5,
        "movieId",
        "unknown movieId (not in movies.csv) '99'",
    ),
    (
        "ml-tag-unknown-movie",
        "movielens",
        {"tags.csv": TAGS + "1,42,meh,1\n"},
        "tags.csv",
        3,
        "movieId",
        "unknown movieId",
    ),
    (
        "ml-link-unknown-movie",
        "movielens",
        {"links.csv": LINKS + "77,1,2\n"},
        "links.csv",
        3,
        "movieId",
        "unknown movieId",
    ),
    (
        "tab-unknown-item",
        "tabular",
        {"interactions.csv": INTERACTIONS.replace("w,c,3", "w,zz,3")},
        "interactions.csv",
        4,
        "item_id",
        "unknown item_id (not in items) 'zz'",
    ),
    # timestamps
    (
        "ml-bad-timestamp",
        "movielens",
        {"ratings.csv": RATINGS.replace("964982704", "yesterday")},
        "ratings.csv",
        3,
        "timestamp",
        "got 'yesterday'",
    ),
    (
        "ml-empty-timestamp",
        "movielens",
        {"ratings.csv": RATINGS.replace(",964982705", ",")},
        "ratings.csv",
        4,
        "timestamp",
        "got empty value",
    ),
    (
        "tab-bad-iso",
        "tabular",
        {"interactions.csv": INTERACTIONS.replace("u,b,2", "u,b,2023-13-45T00:00:00")},
        "interactions.csv",
        3,
        "timestamp",
        "ISO-8601",
    ),
    (
        "tab-inf-timestamp",
        "tabular",
        {"interactions.csv": INTERACTIONS.replace("w,c,3", "w,c,inf")},
        "interactions.csv",
        4,
        "timestamp",
        "got 'inf'",
    ),
    # ratings / weights
    (
        "ml-bad-rating",
        "movielens",
        {"ratings.csv": RATINGS.replace("3.5", "three")},
        "ratings.csv",
        3,
        "rating",
        "expected a finite number, got 'three'",
    ),
    (
        "ml-nan-rating",
        "movielens",
        {"ratings.csv": RATINGS.replace("4.0", "NaN")},
        "ratings.csv",
        2,
        "rating",
        "got 'NaN'",
    ),
    (
        "tab-bad-weight",
        "tabular",
        {"interactions.csv": INTERACTIONS.replace("w,c,3,1", "w,c,3,heavy")},
        "interactions.csv",
        4,
        "weight",
        "got 'heavy'",
    ),
    # attributes
    (
        "tab-bad-json",
        "tabular",
        {"items.csv": 'item_id,title,attributes\na,A,{}\nb,B,"{""genres"": [}"\n'},
        "items.csv",
        3,
        "attributes",
        "invalid JSON",
    ),
    (
        "tab-json-not-object",
        "tabular",
        {"items.csv": 'item_id,title,attributes\na,A,"[1, 2]"\n'},
        "items.csv",
        2,
        "attributes",
        "expected a JSON object",
    ),
    (
        "tab-json-nested",
        "tabular",
        {"items.csv": 'item_id,title,attributes\na,A,"{""x"": {""y"": 1}}"\n'},
        "items.csv",
        2,
        "attributes",
        "attribute 'x' must be a string or a list of strings",
    ),
    # unreadable CSV
    (
        "ml-too-many-fields",
        "movielens",
        {"ratings.csv": RATINGS + "3,1,4,5,extra,fields\n"},
        "ratings.csv",
        5,
        None,
        "unreadable CSV",
    ),
    (
        "tab-unterminated-quote",
        "tabular",
        {"items.csv": 'item_id,title\na,A\nb,"B\nc,C\n'},
        "items.csv",
        3,
        None,
        "EOF inside string",
    ),
    (
        "ml-not-utf8",
        "movielens",
        {"movies.csv": b"movieId,title,genres\n1,Caf\xe9 (1990),Drama\n"},
        "movies.csv",
        None,
        None,
        "not UTF-8",
    ),
    (
        "tab-bad-parquet",
        "tabular",
        {"items.csv": None, "items.parquet": b"PAR1 this is not parquet"},
        "items.parquet",
        None,
        None,
        "unreadable Parquet",
    ),
]


@pytest.mark.parametrize(
    ("adapter", "changes", "file", "row", "column", "fragment"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_bad_input(
    tmp_path: Path,
    adapter: str,
    changes: dict[str, str | bytes | None],
    file: str,
    row: int | None,
    column: str | None,
    fragment: str,
) -> None:
    root = build(tmp_path / "d", adapter, changes)
    err = load_error(root, adapter)
    assert err.file == str(root / file)
    assert err.row == row
    assert err.column == column
    assert fragment in str(err)
    assert str(err).startswith(str(root / file))


def test_good_fixtures_load(tmp_path: Path) -> None:
    # Guards the table above: each case fails because of its change, not because the base is broken.
    for adapter in GOOD:
        ds = load_dataset(adapter, build(tmp_path / adapter, adapter, {}))
        assert ds.n_items == 3 and len(ds.interactions) == 3


def test_missing_directory(tmp_path: Path) -> None:
    for adapter in GOOD:
        with pytest.raises(DataError) as err:
            load_dataset(adapter, tmp_path / "nowhere")
        assert err.value.file == str(tmp_path / "nowhere")


def test_blank_lines_keep_row_numbers(tmp_path: Path) -> None:
    # A blank line is skipped, but the rows after it keep their line numbers.
    ratings = "userId,movieId,rating,timestamp\n1,1,4,1\n\n1,2,x,2\n"
    root = build(tmp_path / "d", "movielens", {"ratings.csv": ratings})
    err = load_error(root, "movielens")
    assert (err.row, err.column) == (4, "rating")


def test_crlf_and_bom(tmp_path: Path) -> None:
    movies = "\ufeff" + MOVIES.replace("\n", "\r\n")
    ds = load_dataset("movielens", build(tmp_path / "d", "movielens", {"movies.csv": movies}))
    assert ds.items["item_id"].tolist() == ["1", "2", "3"]
    assert ds.items["title"].tolist()[0] == "Toy Story (1995)"


def test_literal_na_strings_are_data(tmp_path: Path) -> None:
    # "NA" and "null" are real titles/users; they must not be turned into missing values.
    root = build(
        tmp_path / "d",
        "tabular",
        {
            "items.csv": "item_id,title\nNA,null\n",
            "interactions.csv": "user_id,item_id,timestamp\nNone,NA,1\n",
        },
    )
    ds = load_dataset("tabular", root)
    assert ds.items["title"].tolist() == ["null"]
    assert ds.interactions["user_id"].tolist() == ["None"]


def test_parquet_errors_use_row_numbers(tmp_path: Path) -> None:
    root = build(tmp_path / "d", "tabular", {"interactions.csv": None})
    pd.DataFrame(
        {"user_id": ["u", "u", "u"], "item_id": ["a", "b", "c"], "timestamp": [1.0, np.nan, 3.0]}
    ).to_parquet(root / "interactions.parquet")
    err = load_error(root, "tabular")
    assert (err.file, err.row, err.column) == (str(root / "interactions.parquet"), 3, "timestamp")
    pd.DataFrame({"user_id": ["u", None], "item_id": ["a", "b"], "timestamp": [1, 2]}).to_parquet(
        root / "interactions.parquet"
    )
    err = load_error(root, "tabular")
    assert (err.row, err.column) == (3, "user_id")


def test_nothing_written(tmp_path: Path) -> None:
    root = build(tmp_path / "d", "movielens", {"ratings.csv": RATINGS.replace("3.5", "bad")})
    before = sorted(p.name for p in root.iterdir())
    load_error(root, "movielens")
    assert sorted(p.name for p in root.iterdir()) == before


# --- the helpers directly ---------------------------------------------------------------------------


def frame(**columns: list[object]) -> pd.DataFrame:
    df = pd.DataFrame(columns)
    df.index = pd.RangeIndex(2, len(df) + 2)
    return df


def test_first_bad_row_uses_row_labels() -> None:
    mask = pd.Series([False, False, True, True], index=[2, 3, 5, 6])
    assert v.first_bad_row(mask) == 5
    assert v.first_bad_row(pd.Series([False], index=[2])) is None


def test_timestamp_column_variants() -> None:
    df = frame(t=["10", "10.9", "1970-01-01T00:01:00Z", "1970-01-01T01:00:00+01:00", "-5"])
    assert v.timestamp_column(df, "t", Path("f.csv")).tolist() == [10, 10, 60, 0, -5]


def test_timestamp_column_rejects_huge_values() -> None:
    with pytest.raises(DataError) as err:
        v.timestamp_column(frame(t=["1", "1e30"]), "t", Path("f.csv"))
    assert (err.value.row, err.value.column) == (3, "t")


def test_require_columns_lists_found() -> None:
    with pytest.raises(DataError, match=r"missing required column\(s\) 'b', 'c' \(found: 'a'\)"):
        v.require_columns(frame(a=[1]), ("a", "b", "c"), Path("x.csv"))

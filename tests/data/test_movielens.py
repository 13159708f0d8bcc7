"""MovieLens adapter: mapping to the canonical schema, fingerprints, and the real ml-latest-small."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serendip.data import Dataset, load_dataset
from serendip.data.schema import INTERACTION_COLUMNS, ITEM_COLUMNS

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "movielens-small"
if not REAL.is_dir():
    REAL = Path("/work/shared/data/movielens-small")

MOVIES = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children\n"
    '2,"American President, The (1995)",Comedy|Drama|Romance\n'
    "3,Babylon 5,(no genres listed)\n"
    "4,Death Note: Desu nôto (2006–2007),Anime\n"
)
RATINGS = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,2.5,964981247\n7,2,5,1445714994\n"
TAGS = (
    "userId,movieId,tag,timestamp\n"
    "1,1,Pixar,1445714994\n"
    "2,1,fun,1445714995\n"
    "3,1,pixar,1445714996\n"
    "4,1, PIXAR ,1445714997\n"
    "4,1,Fun,1445714998\n"
    "4,1,classic,1445714999\n"
    "5,2,politics,1445715000\n"
)
LINKS = "movieId,imdbId,tmdbId\n1,0114709,862\n2,0112346,9087\n3,0105946,\n4,0877057,13916\n"


def write_movielens(root: Path, **files: str | None) -> Path:
    """A small MovieLens directory; pass name=None to leave a file out, name="..." to replace it."""
    contents = {"movies.csv": MOVIES, "ratings.csv": RATINGS, "tags.csv": TAGS, "links.csv": LINKS}
    for key, text in files.items():
        contents[key.replace("_csv", ".csv")] = text
    root.mkdir(parents=True, exist_ok=True)
    for name, text in contents.items():
        if text is not None:
            (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def small(tmp_path: Path) -> Path:
    root = write_movielens(tmp_path / "ml")
    (root / "posters").mkdir()
    (root / "posters" / "1.jpg").write_bytes(b"\xff\xd8fake-jpeg")
    (root / "posters" / "4.jpg").write_bytes(b"\xff\xd8fake-jpeg")
    return root


def test_items_follow_schema_and_file_order(small: Path) -> None:
    ds = load_dataset("movielens", small)
    assert isinstance(ds, Dataset)
    assert ds.name == "ml"
    assert tuple(ds.items.columns) == ITEM_COLUMNS
    assert ds.items["item_id"].tolist() == ["1", "2", "3", "4"]
    assert ds.items["title"].tolist()[1] == "American President, The (1995)"
    assert ds.item_index().to_dict() == {"1": 0, "2": 1, "3": 2, "4": 3}


def test_text_and_attributes(small: Path) -> None:
    items = load_dataset("movielens", small).items.set_index("item_id")
    toy = items.loc["1"]
    # pixar ×3 (case and spaces folded), fun ×2, classic ×1: most frequent first.
    assert toy["attributes"]["tags"] == ["pixar", "fun", "classic"]
    assert toy["attributes"]["genres"] == ["Adventure", "Animation", "Children"]
    assert toy["attributes"]["year"] == "1995"
    assert toy["attributes"]["imdb_id"] == "0114709"
    assert (
        toy["text"] == "Toy Story (1995). Genres: Adventure, Animation, Children. Tags: pixar, fun, classic"
    )

    babylon = items.loc["3"]
    assert babylon["attributes"]["genres"] == []
    assert babylon["attributes"]["tags"] == []
    assert "year" not in babylon["attributes"]
    assert "tmdb_id" not in babylon["attributes"]  # empty in links.csv
    assert babylon["text"] == "Babylon 5."
    assert items.loc["4", "attributes"]["year"] == "2006"
    assert (
        items.loc["2", "text"]
        == "American President, The (1995). Genres: Comedy, Drama, Romance. Tags: politics"
    )


def test_tags_capped_and_ties_alphabetical(tmp_path: Path) -> None:
    rows = "".join(f"{u},1,tag{u:02d},1\n" for u in range(15)) + "99,1,tag14,2\n"
    root = write_movielens(tmp_path / "ml", tags_csv="userId,movieId,tag,timestamp\n" + rows)
    tags = load_dataset("movielens", root, max_tags=4).items.loc[0, "attributes"]["tags"]
    assert tags == ["tag14", "tag00", "tag01", "tag02"]


def test_posters_only_when_file_exists(small: Path) -> None:
    images = load_dataset("movielens", small).items["image_uri"].tolist()
    assert images[0] == str((small / "posters" / "1.jpg").resolve())
    assert Path(images[0]).is_absolute()
    assert images[1] is None and images[2] is None
    assert images[3] == str((small / "posters" / "4.jpg").resolve())


def test_interactions_types(small: Path) -> None:
    inter = load_dataset("movielens", small).interactions
    assert tuple(inter.columns) == INTERACTION_COLUMNS
    assert inter["user_id"].tolist() == ["1", "1", "7"]
    assert inter["item_id"].tolist() == ["1", "3", "2"]
    assert inter["timestamp"].dtype == np.int64
    assert inter["timestamp"].tolist() == [964982703, 964981247, 1445714994]
    assert inter["weight"].dtype == np.float32
    assert inter["weight"].tolist() == [4.0, 2.5, 5.0]


def test_optional_files_absent(tmp_path: Path) -> None:
    root = write_movielens(tmp_path / "ml", tags_csv=None, links_csv=None)
    ds = load_dataset("movielens", root)
    assert ds.items.loc[0, "attributes"] == {
        "genres": ["Adventure", "Animation", "Children"],
        "tags": [],
        "year": "1995",
    }
    assert ds.items["image_uri"].isna().all()
    assert ds.items.loc[0, "text"] == "Toy Story (1995). Genres: Adventure, Animation, Children."


def test_name_override(small: Path) -> None:
    assert load_dataset("movielens", small, name="ml-tiny").name == "ml-tiny"


def test_fingerprint_stable_and_sensitive(tmp_path: Path, small: Path) -> None:
    fp = load_dataset("movielens", small).fingerprint
    assert len(fp) == 64 and fp == load_dataset("movielens", small).fingerprint
    # Same bytes elsewhere → same fingerprint (names are relative, not absolute paths).
    other = write_movielens(tmp_path / "copy")
    (other / "posters").mkdir()
    for p in ("1.jpg", "4.jpg"):
        (other / "posters" / p).write_bytes(b"different bytes: poster content is not hashed")
    assert load_dataset("movielens", other).fingerprint == fp
    # One more poster found → different fingerprint.
    (other / "posters" / "2.jpg").write_bytes(b"x")
    assert load_dataset("movielens", other).fingerprint != fp
    # One changed rating → different fingerprint.
    changed = write_movielens(tmp_path / "changed", ratings_csv=RATINGS.replace("2.5", "3.0"))
    (changed / "posters").mkdir()
    for p in ("1.jpg", "4.jpg"):
        (changed / "posters" / p).write_bytes(b"")
    assert load_dataset("movielens", changed).fingerprint != fp
    # Dropping an optional file changes it too.
    (small / "links.csv").unlink()
    assert load_dataset("movielens", small).fingerprint != fp


def test_unknown_adapter(small: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset adapter 'nope'"):
        load_dataset("nope", small)


@pytest.mark.skipif(not REAL.is_dir(), reason="MovieLens ml-latest-small not present")
def test_real_movielens_small() -> None:
    ds = load_dataset("movielens", REAL)
    assert ds.n_items == 9742
    assert len(ds.interactions) == 100836
    assert ds.items["item_id"].is_unique
    assert ds.interactions["item_id"].isin(ds.items["item_id"]).all()
    assert ds.interactions["user_id"].nunique() == 610
    n_posters = ds.items["image_uri"].notna().sum()
    assert n_posters == len(list((REAL / "posters").glob("*.jpg")))
    assert n_posters > 0.9 * ds.n_items
    assert Path(ds.items["image_uri"].dropna().iloc[0]).is_file()
    toy = ds.items.iloc[0]
    assert toy["item_id"] == "1" and toy["title"] == "Toy Story (1995)"
    assert toy["attributes"]["year"] == "1995"
    assert toy["text"].startswith(
        "Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy. Tags: "
    )
    assert "pixar" in toy["attributes"]["tags"]
    assert 0 < len(toy["attributes"]["tags"]) <= 10
    assert ds.interactions["weight"].between(0.5, 5.0).all()
    assert ds.interactions["timestamp"].min() > 800_000_000

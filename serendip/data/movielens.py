"""Adapter for the MovieLens ml-latest-small layout.

Directory contents: movies.csv, ratings.csv, optional tags.csv and links.csv, optional
``posters/<movieId>.jpg``. Items keep movies.csv order (that order is the internal item index);
interactions keep ratings.csv order.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from serendip.data import validate as v
from serendip.data.schema import DataError, Dataset, make_interactions, make_items

MOVIES = "movies.csv"
RATINGS = "ratings.csv"
TAGS = "tags.csv"
LINKS = "links.csv"
POSTERS = "posters"

NO_GENRES = "(no genres listed)"
# A trailing "(1995)" or a range "(2006–2007)"; the first year is the release year.
_YEAR = r"\((\d{4})(?:\s*[-–]\s*\d{4})?\)\s*$"


def load(path: Path, *, name: str | None = None, max_tags: int = 10) -> Dataset:
    """Load a MovieLens directory into the canonical schema; raises DataError on bad input."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(str(root), "dataset directory not found")
    src = v.SourceFiles(root)

    movies = _read(src, MOVIES, ("movieId", "title", "genres"))
    item_ids = v.id_column(movies, "movieId", root / MOVIES, "movieId")
    v.require_unique(item_ids, root / MOVIES, "movieId", "movieId")
    titles = v.text_column(movies, "title", root / MOVIES, what="title", required=True)
    known = pd.Index(item_ids)

    interactions = _load_ratings(src, root, known)
    tags = _load_tags(src, root, known, max_tags) if (root / TAGS).is_file() else {}
    links = _load_links(src, root, known) if (root / LINKS).is_file() else {}
    posters = _poster_uris(root, item_ids)

    genres = [
        _split_genres(g) for g in v.text_column(movies, "genres", root / MOVIES, what="", required=False)
    ]
    years = titles.str.extract(_YEAR, expand=False)
    texts: list[str] = []
    attributes: list[dict[str, str | list[str]]] = []
    for item_id, title, item_genres, year in zip(item_ids, titles, genres, years, strict=True):
        item_tags = tags.get(item_id, [])
        attrs: dict[str, str | list[str]] = {"genres": item_genres, "tags": item_tags}
        if isinstance(year, str):
            attrs["year"] = year
        attrs.update(links.get(item_id, {}))
        attributes.append(attrs)
        texts.append(_text(title, item_genres, item_tags))
    images = [posters.get(i) for i in item_ids]
    items = make_items(item_ids, titles, texts, images, attributes)

    fingerprint = src.fingerprint([("posters_found", str(len(posters)))])
    return Dataset(name=name or root.name, items=items, interactions=interactions, fingerprint=fingerprint)


def _read(src: v.SourceFiles, file: str, required: tuple[str, ...]) -> pd.DataFrame:
    path = src.root / file
    df = v.read_csv(path, src.read(file))
    v.require_columns(df, required, path)
    v.require_rows(df, path)
    return df


def _load_ratings(src: v.SourceFiles, root: Path, known: pd.Index) -> pd.DataFrame:
    path = root / RATINGS
    ratings = _read(src, RATINGS, ("userId", "movieId", "rating", "timestamp"))
    users = v.id_column(ratings, "userId", path, "userId")
    items = v.id_column(ratings, "movieId", path, "movieId")
    v.require_known(items, known, path, "movieId", "movieId (not in movies.csv)")
    weights = v.float_column(ratings, "rating", path)
    stamps = v.timestamp_column(ratings, "timestamp", path)
    return make_interactions(users, items, stamps, weights)


def _load_tags(src: v.SourceFiles, root: Path, known: pd.Index, max_tags: int) -> dict[str, list[str]]:
    """movieId → up to max_tags distinct lowercased tags, most frequent first (ties alphabetical)."""
    path = root / TAGS
    df = v.read_csv(path, src.read(TAGS))
    v.require_columns(df, ("movieId", "tag"), path)
    if len(df) == 0:  # a header-only tags file just means "no tags"
        return {}
    items = v.id_column(df, "movieId", path, "movieId")
    v.require_known(items, known, path, "movieId", "movieId (not in movies.csv)")
    tags = v.text_column(df, "tag", path, what="tag", required=False).str.lower()
    # Collapse inner whitespace so "sci  fi" and "sci fi" count as one tag.
    tags = tags.str.replace(r"\s+", " ", regex=True)
    pairs = pd.DataFrame({"item": items, "tag": tags})
    pairs = pairs[pairs["tag"] != ""]
    counts = pairs.groupby(["item", "tag"], sort=False).size().rename("n").reset_index()
    counts = counts.sort_values(["item", "n", "tag"], ascending=[True, False, True], kind="stable")
    top = counts.groupby("item", sort=False).head(max_tags)
    return {str(k): list(g) for k, g in top.groupby("item", sort=False)["tag"]}


def _load_links(src: v.SourceFiles, root: Path, known: pd.Index) -> dict[str, dict[str, str]]:
    """movieId → {"imdb_id", "tmdb_id"} (only the ids present), kept for poster/metadata look-ups."""
    path = root / LINKS
    df = v.read_csv(path, src.read(LINKS))
    v.require_columns(df, ("movieId",), path)
    if len(df) == 0:
        return {}
    items = v.id_column(df, "movieId", path, "movieId")
    v.require_known(items, known, path, "movieId", "movieId (not in movies.csv)")
    v.require_unique(items, path, "movieId", "movieId")
    out: dict[str, dict[str, str]] = {}
    columns = [(c, key) for c, key in (("imdbId", "imdb_id"), ("tmdbId", "tmdb_id")) if c in df.columns]
    values = [v.text_column(df, c, path, what=c, required=False).to_numpy() for c, _ in columns]
    for i, item in enumerate(items.to_numpy()):
        ids = {key: str(col[i]) for (_, key), col in zip(columns, values, strict=True) if col[i]}
        if ids:
            out[item] = ids
    return out


def _poster_uris(root: Path, item_ids: pd.Series) -> dict[str, str]:
    """movieId → absolute poster path, for posters that exist; one directory listing, not 10k stats."""
    folder = root / POSTERS
    try:
        names = {e.name for e in os.scandir(folder) if e.is_file()}
    except (FileNotFoundError, NotADirectoryError):
        return {}
    base = folder.resolve()
    return {i: str(base / f"{i}.jpg") for i in item_ids if f"{i}.jpg" in names}


def _split_genres(genres: str) -> list[str]:
    if genres == NO_GENRES:
        return []
    return [g.strip() for g in genres.split("|") if g.strip() and g.strip() != NO_GENRES]


def _text(title: str, genres: list[str], tags: list[str]) -> str:
    # "Title. Genres: a, b. Tags: x, y" — the sentence the text embedder sees.
    parts = [title if title.endswith(".") else f"{title}."]
    if genres:
        parts.append(f"Genres: {', '.join(genres)}.")
    if tags:
        parts.append(f"Tags: {', '.join(tags)}")
    return " ".join(parts)

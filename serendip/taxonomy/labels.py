"""Human-readable, unique cluster labels from item keywords (genres, tags, decade, title terms)."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "with",
        "from",
        "by",
        "is",
        "it",
        "its",
        "be",
        "as",
        "or",
        "la",
        "le",
        "les",
        "el",
        "de",
        "der",
        "die",
        "das",
        "part",
        "ii",
        "iii",
        "iv",
        "vs",
        "movie",
        "film",
        "story",
    ]
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]{2,}")


def item_keywords(title: str, attributes: dict) -> Counter[str]:
    """Weighted keywords of one item: attributes count fully, title words half."""
    kw: Counter[str] = Counter()
    for key in ("genres", "categories", "tags"):
        for value in attributes.get(key) or []:
            value = str(value).strip()
            if value:
                kw[value if key != "tags" else value.lower()] += 1.0
    year = str(attributes.get("year") or "")
    if year.isdigit() and len(year) == 4:
        kw[f"{year[:3]}0s"] += 1.0
    clean_title = re.sub(r"\(\d{4}\)", "", title or "")
    for word in _WORD.findall(clean_title):
        w = word.lower().strip("'-")
        if w not in _STOP and len(w) > 2:
            kw[w] += 0.5
    return kw


def rank_cluster_keywords(
    item_kw: Sequence[Counter[str]], assignments: Sequence[int], n_clusters: int, top: int = 8
) -> list[list[str]]:
    """Per cluster, keywords ranked by how characteristic they are (frequency x inverse document freq).

    A keyword must appear in at least two items of a cluster (or be its only evidence) to count, so a
    single odd title word does not name a cluster.
    """
    n_items = len(item_kw)
    df: Counter[str] = Counter()
    for kw in item_kw:
        df.update(kw.keys())
    per_cluster: list[Counter[str]] = [Counter() for _ in range(n_clusters)]
    support: list[Counter[str]] = [Counter() for _ in range(n_clusters)]
    sizes = Counter(int(c) for c in assignments)
    for kw, c in zip(item_kw, assignments, strict=True):
        per_cluster[int(c)].update(kw)
        support[int(c)].update(kw.keys())
    ranked: list[list[str]] = []
    for c in range(n_clusters):
        size = max(1, sizes[c])
        scored = []
        for term, weight in per_cluster[c].items():
            if support[c][term] < 2 and size > 2:
                continue
            tf = weight / size
            idf = math.log((1 + n_items) / (1 + df[term])) + 1.0
            scored.append((tf * idf, term))
        scored.sort(key=lambda s: (-s[0], s[1]))
        ranked.append([t for _, t in scored[:top]])
    return ranked


def unique_labels(ranked: Sequence[Sequence[str]], base_terms: int = 2, prefix: str = "cluster") -> list[str]:
    """Join the top terms of each cluster; extend with more terms until every label is unique."""
    labels = [_join(r[:base_terms]) or f"{prefix} {i}" for i, r in enumerate(ranked)]
    depth = [min(base_terms, len(r)) for r in ranked]
    for _ in range(8):
        dupes = _duplicated(labels)
        if not dupes:
            return labels
        for i in dupes:
            if depth[i] < len(ranked[i]):
                depth[i] += 1
                labels[i] = _join(ranked[i][: depth[i]])
    # Still colliding after using every keyword: number the later ones.
    seen: Counter[str] = Counter()
    out = []
    for label in labels:
        seen[label] += 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def _join(terms: Iterable[str]) -> str:
    return " · ".join(terms)


def _duplicated(labels: Sequence[str]) -> list[int]:
    counts = Counter(labels)
    return [i for i, label in enumerate(labels) if counts[label] > 1]

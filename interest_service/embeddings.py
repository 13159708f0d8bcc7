"""Novel-interest embeddings: one vector per proposed cluster that steers retrieval inside it.

The retrieval service searches *only* the chosen cluster's inverted list with this vector, so the
vector decides which of the cluster's items come first. Two pulls:

* the cluster centroid (in the sequence model's item space) — the cluster's typical items, a safe
  introduction to a new interest;
* the user embedding (SASRec over the recent history) — the items of that cluster that suit this
  user's taste.

    v = normalise( α · c / ‖c‖ + (1 − α) · u / ‖u‖ ) · ‖u‖        (α = record.centroid_weight, 0.6)

Both parts are unit-normalised first so α means the same for every cluster and user; the result
takes the user embedding's norm, so inner-product scores stay on the scale the ranker already sees
for relevance candidates. With α = 1 the search returns the cluster's most central items, with α = 0
it is plain personalised search restricted to the cluster. Users without a usable history get the
centroid direction (cold start).
"""

from __future__ import annotations

import numpy as np


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else np.zeros_like(v)


def novel_embeddings(
    centroids: np.ndarray, user_vec: np.ndarray | None, clusters: list[int], alpha: float
) -> list[np.ndarray]:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = []
    u_norm = float(np.linalg.norm(user_vec)) if user_vec is not None else 0.0
    for c in clusters:
        cdir = _unit(centroids[c].astype(np.float32))
        if u_norm <= 1e-12:
            v = cdir * float(np.linalg.norm(centroids[c]))
        else:
            v = _unit(alpha * cdir + (1.0 - alpha) * (user_vec / u_norm)) * u_norm
        if not np.all(np.isfinite(v)):
            raise ValueError(f"non-finite embedding for cluster {c}")
        # float16 in the record: keep values in its range (SASRec vectors are far below this).
        out.append(np.clip(v, -65000, 65000).astype(np.float32))
    return out

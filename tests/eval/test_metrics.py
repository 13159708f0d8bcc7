"""Metric formulas on hand-computable cases, then against rectools (a peer) on random inputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from serendip.eval import metrics as M
from serendip.eval.proposers import score_proposals
from serendip.eval.replay import EvalUser


def test_accuracy_metrics_by_hand():
    ranked = [5, 1, 7, 2]
    assert M.recall_at_k(ranked, {1, 2, 9}, 4) == pytest.approx(2 / 3)
    assert M.recall_at_k(ranked, {1, 2, 9}, 2) == pytest.approx(1 / 3)
    # hits at ranks 2 and 4: (1/log2 3 + 1/log2 5) / (1 + 1/log2 3 + 1/log2 4)
    want = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 0.5)
    assert M.ndcg_at_k(ranked, {1, 2, 9}, 4) == pytest.approx(want)
    with pytest.raises(ValueError, match="relevant"):
        M.recall_at_k(ranked, set(), 4)


def test_serendipity_counts_relevant_items_the_primitive_did_not_recommend():
    ranked = [5, 1, 7, 2]
    primitive = {1, 3, 4, 6}  # popularity's list for this user
    # relevant: 1 (also popular → not serendipitous), 2 and 7 (unexpected) → 2 of 4
    assert M.serendipity_at_k(ranked, {1, 2, 7}, primitive, 4) == pytest.approx(0.5)
    assert M.unexpectedness_at_k(ranked, primitive, 4) == pytest.approx(0.75)
    assert M.serendipity_at_k([1, 3, 4, 6], {1, 3}, primitive, 4) == 0.0


def test_novelty_diversity_coverage_by_hand():
    item_users = np.array([8, 4, 1, 0])  # item 3 never seen: counted as one user
    assert M.novelty_at_k([0, 1], item_users, 8, 2) == pytest.approx((0 + 1) / 2)
    assert M.novelty_at_k([2, 3], item_users, 8, 2) == pytest.approx(3.0)
    vecs = M.unit_rows(np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0]]))
    # pairs: (0,1) distance 1, (0,2) 0, (1,2) 1 → mean over ordered pairs = 4 / 6
    assert M.intra_list_diversity([0, 1, 2], vecs, 3) == pytest.approx(4 / 6)
    assert M.catalog_coverage([[0, 1], [1, 2]], 10, 2) == pytest.approx(0.3)
    assert M.new_cluster_share([0, 1, 2], np.array([0, 1, 2]), {0, 2}, 3) == pytest.approx(1 / 3)


def test_hit_at_m_and_wilson():
    assert M.hit_at_m([4, 9, 2], {2}, 1) == 0.0
    assert M.hit_at_m([4, 9, 2], {2}, 3) == 1.0
    lo, hi = M.wilson_interval(0, 10)
    assert lo == 0.0 and 0.25 < hi < 0.35  # Wilson's upper bound for 0/10 is 0.278
    lo, hi = M.wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-3) and hi == pytest.approx(0.7634, abs=1e-3)
    lo, hi = M.bootstrap_interval(np.array([0.0, 1.0] * 50))
    assert lo < 0.5 < hi


def _user(clusters: set[int], novel: set[int]) -> EvalUser:
    empty = np.zeros(0, dtype=np.int64)
    return EvalUser("u", empty, empty, clusters, {1}, novel)


def test_score_proposals_drops_explored_clusters_and_skips_users_without_novel_clusters():
    users = [_user({0, 1}, {5}), _user({0}, {2}), _user({3}, set())]
    proposals = [[1, 5, 6], [4, 6, 2], [7]]  # user 0 names an explored cluster: dropped, 5 moves up
    s = score_proposals("p", proposals, users, (1, 3), n_clusters=8)
    assert s.users == 2 and s.invalid == 1
    assert s.hits == {1: 0.5, 3: 1.0}


# --- peer implementation: rectools 0.19 ----------------------------------------------------------


def _random_case(seed: int, n_users=40, n_items=60, k=10):
    from rectools import Columns

    rng = np.random.default_rng(seed)
    lists = [rng.choice(n_items, size=k, replace=False).tolist() for _ in range(n_users)]
    truth = [
        set(rng.choice(n_items, size=rng.integers(1, 8), replace=False).tolist()) for _ in range(n_users)
    ]
    prev = pd.DataFrame(
        {Columns.User: rng.integers(0, 300, size=2000), Columns.Item: rng.integers(0, n_items - 5, size=2000)}
    ).drop_duplicates()
    reco = pd.DataFrame(
        [(u, i, r + 1) for u, items in enumerate(lists) for r, i in enumerate(items)],
        columns=[Columns.User, Columns.Item, Columns.Rank],
    )
    inter = pd.DataFrame(
        [(u, i) for u, items in enumerate(truth) for i in items], columns=[Columns.User, Columns.Item]
    )
    return lists, truth, prev, reco, inter


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accuracy_novelty_coverage_match_rectools(seed):
    from rectools import Columns
    from rectools.metrics import NDCG, CatalogCoverage, MeanInvUserFreq, Recall

    k, n_items = 10, 60
    lists, truth, prev, reco, inter = _random_case(seed, k=k, n_items=n_items)
    ours_recall = np.mean([M.recall_at_k(r, t, k) for r, t in zip(lists, truth, strict=True)])
    ours_ndcg = np.mean([M.ndcg_at_k(r, t, k) for r, t in zip(lists, truth, strict=True)])
    assert ours_recall == pytest.approx(Recall(k=k).calc(reco, inter))
    # rectools divides by the k-item ideal unless told to use the achievable one (our definition).
    assert ours_ndcg == pytest.approx(NDCG(k=k, divide_by_achievable=True).calc(reco, inter))

    item_users = np.bincount(prev[Columns.Item].to_numpy(), minlength=n_items)  # pairs are unique
    n_users = prev[Columns.User].nunique()
    ours_nov = np.mean([M.novelty_at_k(r, item_users, n_users, k) for r in lists])
    assert ours_nov == pytest.approx(MeanInvUserFreq(k=k).calc(reco, prev))

    catalog = list(range(n_items))
    assert M.catalog_coverage(lists, n_items, k) == pytest.approx(
        CatalogCoverage(k=k, normalize=True).calc(reco, catalog)
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_intra_list_diversity_matches_rectools_with_cosine_distance(seed):
    from rectools.metrics import IntraListDiversity
    from rectools.metrics.distances import PairwiseDistanceCalculator

    k, n_items = 10, 60
    lists, _, _, reco, _ = _random_case(seed, k=k, n_items=n_items)
    vecs = M.unit_rows(np.random.default_rng(seed).normal(size=(n_items, 8)))

    class Cosine(PairwiseDistanceCalculator):
        def _get_distances_for_item_pairs(self, items_0, items_1):
            a, b = vecs[np.asarray(items_0, dtype=np.int64)], vecs[np.asarray(items_1, dtype=np.int64)]
            return 1.0 - (a * b).sum(axis=1)

    ours = np.mean([M.intra_list_diversity(r, vecs, k) for r in lists])
    assert ours == pytest.approx(IntraListDiversity(k=k, distance_calculator=Cosine()).calc(reco), rel=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ge_serendipity_is_rectools_precision_without_the_primitive_items(seed):
    """rectools' Serendipity is another formula (rank difference); Ge et al.'s maps onto its Precision."""
    from rectools import Columns
    from rectools.metrics import Precision, Serendipity

    k, n_items = 10, 60
    lists, truth, prev, reco, inter = _random_case(seed, k=k, n_items=n_items)
    rng = np.random.default_rng(100 + seed)
    primitive = [set(rng.choice(n_items, size=k, replace=False).tolist()) for _ in lists]
    ours = np.mean([M.serendipity_at_k(r, t, p, k) for r, t, p in zip(lists, truth, primitive, strict=True)])
    keep = [i not in primitive[u] for u, i in zip(reco[Columns.User], reco[Columns.Item], strict=True)]
    filtered = reco[keep]
    # Users whose whole list was primitive have no rows left; rectools averages over users with rows.
    per_user = Precision(k=k).calc_per_user(filtered, inter).reindex(range(len(lists)), fill_value=0.0)
    assert ours == pytest.approx(per_user.mean())
    # ...and the two "serendipity" metrics really differ, which is why the docs name the mapping.
    rectools_srdp = Serendipity(k=k).calc(reco, inter, prev, catalog=list(range(n_items)))
    assert rectools_srdp != pytest.approx(ours)

import faiss
import numpy as np
import pytest

from serendip.index.relevance import RelevanceIndex, build_relevance_index, default_n_lists


@pytest.fixture(scope="module")
def items():
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((40, 32)).astype(np.float32)
    assign = rng.integers(0, 40, 8000)
    return (centers[assign] + 0.4 * rng.standard_normal((8000, 32))).astype(np.float32)


@pytest.fixture(scope="module")
def index(items):
    return RelevanceIndex(build_relevance_index(items), items)


def _exact_top(items, queries, k):
    return np.argsort(-(queries @ items.T), axis=1, kind="stable")[:, :k]


def test_list_count_grows_with_the_square_root_and_respects_training_minimum():
    assert default_n_lists(1_000_000) == 4000
    assert default_n_lists(8000) == 8000 // 39  # 4·√8000 = 358 lists would train on < 39 points each
    assert default_n_lists(10) == 1


def test_scores_are_the_exact_dot_products_best_first(items, index):
    q = np.random.default_rng(4).standard_normal((5, 32)).astype(np.float32)
    scores, ids = index.search(q, 20, nprobe=8)
    assert (ids >= 0).all()
    np.testing.assert_allclose(scores, np.einsum("nd,nkd->nk", q, items[ids]), rtol=1e-5, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_probing_every_list_recovers_the_exhaustive_top_k(items, index):
    q = items[np.random.default_rng(5).choice(len(items), 50, replace=False)] * 1.3
    _, ids = index.search(q, 10, nprobe=None)
    exact = _exact_top(items, q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), exact.tolist(), strict=True)])
    assert recall >= 0.9  # only the 4-bit codes' shortlist (refine × k) can lose an item
    _, ids = index.search(q, 10, nprobe=None, refine=8)
    wide = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), exact.tolist(), strict=True)])
    assert wide > recall and wide >= 0.98  # a longer shortlist buys the rest back


def test_more_probes_trade_time_for_recall(items, index):
    q = items[np.random.default_rng(6).choice(len(items), 100, replace=False)]
    exact = _exact_top(items, q, 10)

    def recall(nprobe):
        _, ids = index.search(q, 10, nprobe=nprobe)
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), exact.tolist(), strict=True)])

    few, many = recall(1), recall(index.n_lists // 4)
    assert many > few and many >= 0.9


def test_refuses_an_item_table_of_another_shape(items):
    ivf = build_relevance_index(items[:2000])
    with pytest.raises(ValueError, match="item table"):
        RelevanceIndex(ivf, items)


def test_load_refuses_another_index_type(tmp_path, items):
    flat = faiss.IndexFlatIP(32)
    flat.add(items)
    faiss.write_index(flat, str(tmp_path / "x.faiss"))
    with pytest.raises(ValueError, match="fast-scan"):
        RelevanceIndex.load(tmp_path / "x.faiss", items)

"""SASRec: learns a sequential pattern popularity cannot, persistence, padding invariance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from serendip.config import SeqModelConfig
from serendip.seqmodel import (
    SASRec,
    encode_users,
    evaluate_model,
    evaluate_popularity,
    histories_to_tokens,
    load_model,
    save_model,
    time_split,
    train_sasrec,
)

N_ITEMS = 40


def _successor_sequences(n_users: int = 160, seed: int = 0) -> list[np.ndarray]:
    """Each user walks i, i+1, i+2, ... (mod N_ITEMS) from a random start: only order predicts."""
    rng = np.random.default_rng(seed)
    return [
        (int(rng.integers(N_ITEMS)) + np.arange(int(rng.integers(6, 16)))) % N_ITEMS for _ in range(n_users)
    ]


def _cfg(**overrides: object) -> SeqModelConfig:
    base: dict[str, object] = dict(
        dim=32,
        max_len=12,
        layers=1,
        heads=2,
        dropout=0.0,
        epochs=25,
        batch_size=64,
        lr=5e-3,
        negatives=10_000,
        threads=1,
        seed=3,
    )
    base.update(overrides)
    return SeqModelConfig(**base)


@pytest.fixture(scope="module")
def trained() -> tuple[SASRec, list[np.ndarray], list[np.ndarray]]:
    train, targets = time_split(_successor_sequences(), holdout=1)
    return train_sasrec(train, N_ITEMS, _cfg()), train, targets


def test_learns_successor_pattern_and_beats_popularity(trained) -> None:
    model, train, targets = trained
    got = evaluate_model(model, train, targets, k=5)
    pop = evaluate_popularity(train, targets, N_ITEMS, k=5)
    assert got["users"] == pop["users"] == len(train)
    assert got["recall"] >= 0.9, got
    assert got["ndcg"] >= 0.7, got
    assert got["recall"] > pop["recall"] + 0.5, (got, pop)


def test_sampled_softmax_also_learns() -> None:
    train, targets = time_split(_successor_sequences(seed=1), holdout=1)
    model = train_sasrec(train, N_ITEMS, _cfg(negatives=8, epochs=20))
    got = evaluate_model(model, train, targets, k=5)
    pop = evaluate_popularity(train, targets, N_ITEMS, k=5)
    assert got["recall"] > pop["recall"] + 0.4, (got, pop)


def test_training_is_deterministic_and_reports_progress() -> None:
    seqs = _successor_sequences(n_users=30)
    seen: list[tuple[int, int, float]] = []
    a = train_sasrec(seqs, N_ITEMS, _cfg(epochs=2, dropout=0.2), lambda *p: seen.append(p))
    b = train_sasrec(seqs, N_ITEMS, _cfg(epochs=2, dropout=0.2))
    assert [(e, n) for e, n, _ in seen] == [(1, 2), (2, 2)]
    assert all(np.isfinite(loss) for *_, loss in seen)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def test_save_load_round_trip(trained, tmp_path: Path) -> None:
    model, train, _ = trained
    path = tmp_path / "models" / "sasrec.pt"
    save_model(model, path)
    loaded = load_model(path)
    assert loaded.hparams() == model.hparams()
    assert torch.equal(loaded.item_embeddings(), model.item_embeddings())
    np.testing.assert_array_equal(encode_users(loaded, train[:20]), encode_users(model, train[:20]))


def test_load_rejects_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a serendip SASRec"):
        load_model(path)


def test_histories_to_tokens_left_pads_and_truncates() -> None:
    tokens = histories_to_tokens([[4, 5], [], [0, 1, 2, 3, 4, 5]], max_len=4)
    assert tokens.dtype == np.int64
    np.testing.assert_array_equal(tokens, [[0, 0, 5, 6], [0, 0, 0, 0], [3, 4, 5, 6]])


def test_padding_does_not_change_embedding(trained) -> None:
    model, _, _ = trained
    history = [7, 8, 9, 10]
    with torch.inference_mode():
        short = model.encode(torch.tensor([[8, 9, 10, 11]]))
        padded = model.encode(torch.tensor([[0] * 8 + [8, 9, 10, 11]]))
        # Inside a batch, the longest history decides the width; padding must still not matter.
        batched = encode_users(model, [history, list(range(12))])[0]
    torch.testing.assert_close(short, padded, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(batched, short[0].numpy(), atol=1e-5, rtol=1e-5)
    # Histories longer than max_len keep only their most recent max_len items.
    long = list(range(30))
    np.testing.assert_allclose(encode_users(model, [long]), encode_users(model, [long[-12:]]), atol=1e-6)


def test_scores_are_dot_products_of_encode_and_item_table(trained) -> None:
    model, train, _ = trained
    users = encode_users(model, train[:5])
    table = model.item_embeddings().detach().numpy()
    assert users.shape == (5, 32) and users.dtype == np.float32
    assert table.shape == (N_ITEMS, 32)
    # The next item of the successor walk must be the best-scoring unseen item.
    top = np.argmax(users @ table.T, axis=1)
    np.testing.assert_array_equal(top, [(int(h[-1]) + 1) % N_ITEMS for h in train[:5]])


def test_time_split_and_metrics_by_hand() -> None:
    seqs = [np.array([1, 2, 3, 4]), np.array([5, 6]), np.array([0, 1, 2])]
    train, targets = time_split(seqs, holdout=1)
    assert [t.tolist() for t in train] == [[1, 2, 3], [5, 6], [0, 1]]
    assert [t.tolist() for t in targets] == [[4], [], [2]]
    # Popularity over the training parts: item 1 (2x) first, then ties by index: 0, 2, 3, 5, 6, ...
    got = evaluate_popularity(train, targets, n_items=8, k=2)
    # user 0 (seen 1,2,3): top-2 = [0, 5] → miss; user 2 (seen 0,1): top-2 = [2, 3] → hit at rank 1.
    assert got == {"recall": 0.5, "ndcg": 0.5, "users": 2}
    with pytest.raises(ValueError):
        time_split(seqs, holdout=0)


def test_block_equals_the_modules_it_holds() -> None:
    """The block calls its submodules' parameters functionally (cheaper online); the result must be
    what calling the modules gives: x + proj(attn(LN(x))), then x + FF(LN(x))."""
    torch.manual_seed(0)
    model = SASRec(n_items=30, dim=16, max_len=8, layers=2, heads=2, dropout=0.2).eval()
    block = model.blocks[0]
    x = torch.randn(3, 8, 16)
    allowed = torch.ones(8, 8, dtype=torch.bool).tril()[None, None].expand(3, 1, 8, 8)
    with torch.no_grad():
        q, k, v = block.qkv(block.ln_attn(x)).split(16, dim=-1)
        heads = [t.reshape(3, 8, 2, 8).transpose(1, 2) for t in (q, k, v)]
        scores = heads[0] @ heads[1].transpose(-1, -2) / 8**0.5
        attn = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ heads[2]
        ref = x + block.proj(attn.transpose(1, 2).reshape(3, 8, 16))
        ref = ref + block.ff(block.ln_ff(ref))
        torch.testing.assert_close(block(x, allowed), ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(block(x, allowed, last_only=True), ref[:, -1:], atol=1e-5, rtol=1e-5)
    # Training mode still applies dropout (outputs differ between two passes).
    block.train()
    assert not torch.allclose(block(x, allowed), block(x, allowed))

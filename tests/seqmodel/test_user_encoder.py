import numpy as np
import pytest
import torch

from serendip.seqmodel import SASRec, encode_users
from serendip.seqmodel.user_encoder import (
    OnnxUserEncoder,
    TorchUserEncoder,
    export_encoder,
    open_user_encoder,
)


@pytest.fixture(scope="module")
def model() -> SASRec:
    torch.manual_seed(3)
    m = SASRec(n_items=300, dim=32, max_len=12, layers=2, heads=2, dropout=0.3)
    with torch.no_grad():  # weights away from their initial values, so every block matters
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
        m.item_emb.weight[0].zero_()
    return m.eval()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> OnnxUserEncoder:
    path = export_encoder(model, tmp_path_factory.mktemp("enc") / "encoder.onnx")
    return OnnxUserEncoder(model, path)


def test_export_matches_the_eager_model(model, exported):
    rng = np.random.default_rng(0)
    batches = [
        [[5]],
        [[]],  # the cold-start vector
        [[1, 2], [], [7]],
        [list(rng.integers(0, 300, n)) for n in (0, 1, 11, 12, 13, 40)],  # past max_len: newest 12
        [list(rng.integers(0, 300, 12)) for _ in range(20)],
    ]
    for histories in batches:
        want = encode_users(model, histories)
        got = exported.encode(histories)
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert exported.encode([]).shape == (0, 32)


def test_users_differ_and_order_matters(exported):
    # The dynamic length axis must really be dynamic: different histories, different users.
    a, b, c = exported.encode([[1, 2, 3], [3, 2, 1], [1, 2, 3, 4, 5, 6, 7]])
    assert not np.allclose(a, b) and not np.allclose(a, c)


def test_choosing_an_encoder(model, exported, tmp_path):
    path = export_encoder(model, tmp_path / "e.onnx")
    assert isinstance(open_user_encoder(model, path), OnnxUserEncoder)
    assert isinstance(open_user_encoder(model, path, "torch"), TorchUserEncoder)
    assert isinstance(open_user_encoder(model, None), TorchUserEncoder)  # auto without an export
    with pytest.raises(ValueError, match="no exported encoder"):
        open_user_encoder(model, None, "onnx")
    torch_enc = open_user_encoder(model, None)
    np.testing.assert_array_equal(torch_enc.encode([[4, 5]]), encode_users(model, [[4, 5]]))


def test_export_leaves_the_training_mode_alone(tmp_path):
    m = SASRec(n_items=50_000, dim=32, max_len=4, layers=1, heads=1, dropout=0.1)
    assert m.training
    export_encoder(m, tmp_path / "e.onnx")
    assert m.training
    # Block weights only: the 6.4 MB item table stays out of the graph.
    assert (tmp_path / "e.onnx").stat().st_size < 1_000_000

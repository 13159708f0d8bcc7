"""Which user encoder a served bundle gets, and bundles whose encoder cannot be trusted."""

import numpy as np
import pandas as pd
import pytest

from retrieval_service.recommender import stored_histories
from retrieval_service.serving_bundle import load_serving_bundle
from retrieval_service.store import StoredUser
from serendip.bundle import BundleError
from serendip.bundle import bundle as B
from serendip.seqmodel import encode_users
from tests.retrieval_service.conftest import clone_bundle, retrain_model


def test_the_exported_encoder_serves_by_default(serving_bundle, small_bundle):
    assert B.ENCODER in small_bundle.manifest.files
    assert serving_bundle.encoder.kind == "onnx"
    histories = [[0, 1, 2], [], list(range(5, 80))]
    np.testing.assert_allclose(
        serving_bundle.encoder.encode(histories), encode_users(serving_bundle.model, histories), atol=1e-5
    )


def test_torch_on_request(small_bundle):
    assert load_serving_bundle(small_bundle.path, encoder="torch").encoder.kind == "torch"


def test_an_encoder_from_another_model_is_refused(small_bundle, tmp_path):
    # A retrained seqmodel.pt next to the old encoder.onnx: hashes are fine, the pair is not.
    path = clone_bundle(small_bundle, tmp_path, "stale-encoder", retrain_model)
    with pytest.raises(BundleError, match="exported encoder disagrees with the model"):
        load_serving_bundle(path)
    assert load_serving_bundle(path, encoder="torch").encoder.kind == "torch"


def test_a_bundle_without_an_export(small_bundle, tmp_path):
    path = clone_bundle(small_bundle, tmp_path, "no-encoder", lambda d: (d / B.ENCODER).unlink())
    assert load_serving_bundle(path).encoder.kind == "torch"  # auto falls back
    with pytest.raises(BundleError, match="no exported encoder"):
        load_serving_bundle(path, encoder="onnx")


def test_stored_histories_map_a_batch_of_ids(serving_bundle):
    ids = serving_bundle.item_ids
    stored = [
        StoredUser(None, False, [ids[5].encode(), b"no-such-item", ids[2].encode()]),
        StoredUser(None, False, []),
        StoredUser(None, True, [b"\xff\xfe not utf-8", ids[7].encode(), ids[5].encode()]),
    ]
    assert stored_histories(serving_bundle, stored) == [[5, 2], [], [7, 5]]
    assert stored_histories(serving_bundle, [StoredUser(None, False, [])]) == [[]]


def test_duplicate_item_ids_are_refused(small_bundle, tmp_path):
    def duplicate(d):
        items = pd.read_parquet(d / B.ITEMS)
        items.loc[1, "item_id"] = items.loc[0, "item_id"]
        items.to_parquet(d / B.ITEMS, index=False)

    path = clone_bundle(small_bundle, tmp_path, "duplicate-ids", duplicate)
    with pytest.raises(BundleError, match="duplicate item id"):
        load_serving_bundle(path)

import json
import shutil

import faiss
import numpy as np
import pytest

from serendip.bundle import BundleError, BundleWriter, DatasetInfo, load_bundle, verify_bundle
from serendip.bundle.manifest import sha256_file
from serendip.index.relevance import build_relevance_index


def _copy(bundle, tmp_path):
    dst = tmp_path / bundle.bundle_id
    shutil.copytree(bundle.path, dst)
    return dst


def test_small_bundle_is_verified_and_consistent(small_bundle):
    m = small_bundle.manifest
    assert m.schema_version == 1 and m.bundle_id == small_bundle.path.name
    assert {"items.parquet", "taxonomy.json", "index.faiss", "seqmodel.pt"} <= set(m.files)
    for name, entry in m.files.items():
        assert sha256_file(small_bundle.path / name) == entry.sha256
    assert m.dataset.n_items == len(small_bundle.items) == small_bundle.index.n_items
    assert m.dataset.fingerprint and len(m.dataset.fingerprint) == 64


def test_taxonomy_is_balanced_hierarchical_and_labelled(small_bundle, small_settings):
    tax = small_bundle.taxonomy
    n = len(small_bundle.items)
    assert tax.n_clusters == small_settings.taxonomy.n_fine
    sizes = np.bincount(tax.item_clusters, minlength=tax.n_clusters)
    assert sizes.min() >= 1
    assert sizes.max() <= np.ceil(small_settings.taxonomy.balance * n / tax.n_clusters)
    labels = [c.label for c in tax.clusters]
    assert len(set(labels)) == len(labels)
    assert all(len(label) >= 3 for label in labels)
    assert {c.parent for c in tax.clusters} == set(range(len(tax.groups)))


def test_index_lists_are_the_taxonomy_clusters(small_bundle):
    tax, index = small_bundle.taxonomy, small_bundle.index
    emb = small_bundle.item_embeddings
    q = emb[:5].copy()
    chosen = np.array([[0, 3, 7]] * 5)
    _, ids = index.search_clusters(q, 20, chosen)
    got = ids[ids >= 0]
    assert set(tax.item_clusters[got].tolist()) <= {0, 3, 7}
    # Exactly the brute-force top-20 over those clusters' members.
    members = np.flatnonzero(np.isin(tax.item_clusters, [0, 3, 7]))
    want = members[np.argsort(-(emb[members] @ q[0]), kind="stable")[:20]]
    assert ids[0].tolist() == want.tolist()


def test_sequence_model_beats_popularity(small_bundle):
    ev = small_bundle.evaluation
    assert ev["sasrec"]["users"] > 100
    assert ev["sasrec"]["recall"] > ev["popularity"]["recall"]
    assert ev["sasrec"]["ndcg"] > ev["popularity"]["ndcg"]


def test_corrupt_file_is_refused(small_bundle, tmp_path):
    path = _copy(small_bundle, tmp_path)
    data = bytearray((path / "index.faiss").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / "index.faiss").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"index\.faiss.*sha256"):
        load_bundle(path)


def test_missing_file_is_refused(small_bundle, tmp_path):
    path = _copy(small_bundle, tmp_path)
    (path / "seqmodel.pt").unlink()
    with pytest.raises(BundleError, match=r"seqmodel\.pt.*missing"):
        load_bundle(path)


def test_other_schema_version_is_refused(small_bundle, tmp_path):
    path = _copy(small_bundle, tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="schema version 99"):
        verify_bundle(path)


def test_mismatched_parts_are_refused_even_with_valid_hashes(small_bundle, tmp_path):
    path = _copy(small_bundle, tmp_path)
    np.save(path / "item_clusters.npy", np.zeros(3, dtype=np.int32))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["item_clusters.npy"] = {
        "sha256": sha256_file(path / "item_clusters.npy"),
        "bytes": (path / "item_clusters.npy").stat().st_size,
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="inconsistent bundle: taxonomy covers 3 items"):
        load_bundle(path)


def _replace_file(path, name, write):
    write(path / name)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": sha256_file(path / name), "bytes": (path / name).stat().st_size}
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_relevance_index_of_another_catalog_is_refused(small_bundle, tmp_path):
    path = _copy(small_bundle, tmp_path)
    other = np.random.default_rng(0).standard_normal((500, small_bundle.index.dim)).astype(np.float32)
    _replace_file(path, "relevance.faiss", lambda p: faiss.write_index(build_relevance_index(other), str(p)))
    with pytest.raises(BundleError, match="relevance index holds 500"):
        load_bundle(path)


def test_relevance_index_covers_the_catalog_in_the_model_space(small_bundle):
    rel = small_bundle.relevance_index
    assert rel is not None and rel.n_items == len(small_bundle.items)
    q = small_bundle.item_embeddings[:5]
    scores, ids = rel.search(q, 5, nprobe=None)
    np.testing.assert_allclose(
        scores, np.einsum("nd,nkd->nk", q, small_bundle.item_embeddings[ids]), rtol=1e-5, atol=1e-5
    )


def test_failed_build_leaves_nothing_and_keeps_current(tmp_path):
    info = DatasetInfo(name="x", fingerprint="0" * 64, n_items=1, n_users=1, n_interactions=1)
    with BundleWriter(tmp_path, "good") as w:
        w.path("a.txt").write_text("a")
        w.publish(dataset=info, config={}, summary={})
    with pytest.raises(RuntimeError), BundleWriter(tmp_path, "broken") as w:
        w.path("a.txt").write_text("half")
        raise RuntimeError("killed mid-build")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "good"]
    assert (tmp_path / "current").resolve().name == "good"
    assert verify_bundle(tmp_path / "current").bundle_id == "good"


def test_missing_bundle_message_says_what_to_do(tmp_path):
    with pytest.raises(BundleError, match="serendip build"):
        load_bundle(tmp_path)

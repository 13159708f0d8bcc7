"""Refresh end to end on real Redis: selection, records, fallback, last good record kept, resume."""

from __future__ import annotations

import pytest

from interest_service.backends.openai_backend import OpenAIBackend
from interest_service.engine import InterestEngine
from interest_service.refresh import run_refresh
from serendip.store import (
    decode_record,
    encode_record,
    push_history,
    record_key,
    seed_histories,
    user_histories,
)
from serendip.store.record import ProposalSource

from .conftest import openai_cfg

PREFIX = "serendip:v1"
USERS = [str(u) for u in range(1, 7)]


@pytest.fixture
def seeded(redis_client, small_bundle):
    hist = user_histories(small_bundle.interactions, 4.0)
    seed_histories(redis_client, PREFIX, {u: hist[u] for u in USERS})
    return redis_client


def _engine(icfg, bundle, client, base_url, **cfg):
    c = icfg(
        backend="openai",
        openai=openai_cfg(base_url).model_dump(),
        prompt={"max_summary_chars": 8, "max_reason_chars": 8, "n_interests": 1, "n_recent": 3},
        refresh={"batch_size": 3, **cfg.pop("refresh", {})},
        **cfg,
    )
    return InterestEngine(c, bundle, OpenAIBackend(c.openai), client)


def _record(client, uid):
    return decode_record(client.get(record_key(PREFIX, uid)))


def test_refresh_writes_valid_records_and_skips_fresh_users(seeded, small_bundle, icfg, llama_server):
    engine = _engine(icfg, small_bundle, seeded, llama_server)
    stats = run_refresh(engine, USERS)
    assert stats.selected == 6 and stats.selection["missing"] == 6
    assert stats.outcomes["refreshed"] + stats.outcomes["fallback"] == 6 and stats.outcomes["refreshed"] >= 1
    n_clusters = engine.catalog.n_clusters
    for uid in USERS:
        rec = _record(seeded, uid)
        assert len(encode_record(rec)) <= 512
        assert rec.bundle_id == small_bundle.bundle_id and rec.dim == small_bundle.centroids.shape[1]
        ids = [i.cluster_id for i in rec.interests]
        assert len(ids) == len(set(ids)) == engine.m and all(0 <= c < n_clusters for c in ids)
        items = seeded.lrange(f"{PREFIX}:{{{uid}}}:hist", 0, -1)
        history_clusters = {
            int(engine.catalog.item_clusters[engine.catalog.item_index[i.decode()]]) for i in items
        }
        assert not set(ids) & history_clusters  # only clusters new to the user
        assert all(i.label == engine.catalog.labels[i.cluster_id] for i in rec.interests)
    # Second run: nothing is stale; then one user's history moves and only they are refreshed.
    again = run_refresh(engine, USERS)
    assert again.selected == 0 and again.selection["skip_fresh"] == 6
    push_history(seeded, PREFIX, "3", [str(small_bundle.item_ids[0])])
    moved = run_refresh(engine, USERS)
    assert moved.selected == 1 and moved.selection["history_changed"] == 1


def test_backend_down_falls_back_but_keeps_the_last_good_record(seeded, small_bundle, icfg, llama_server):
    good = _engine(icfg, small_bundle, seeded, llama_server)
    run_refresh(good, USERS[:3])
    llm_users = [u for u in USERS[:3] if _record(seeded, u).source == ProposalSource.PROPOSAL_SOURCE_LLM]
    assert llm_users
    before = {u: seeded.get(record_key(PREFIX, u)) for u in llm_users}
    down = _engine(icfg, small_bundle, seeded, "http://127.0.0.1:9/v1")
    stats = run_refresh(down, USERS, force=True)
    assert stats.outcomes["kept"] == len(llm_users)  # LLM failed: the good records stay, byte for byte
    for u in llm_users:
        assert seeded.get(record_key(PREFIX, u)) == before[u]
    for u in USERS[3:]:  # users without a record get a valid fallback record
        rec = _record(seeded, u)
        assert rec.source == ProposalSource.PROPOSAL_SOURCE_TRANSITION and len(rec.interests) == down.m


def test_killed_run_resumes_without_redoing_finished_users(seeded, small_bundle, icfg):
    engine = _engine(icfg, small_bundle, seeded, "http://127.0.0.1:9/v1")  # fallback only: fast
    first = run_refresh(engine, USERS, force=True, stop_after_batches=1)  # "killed" after batch 1
    assert first.processed == 3
    done = {u: seeded.get(record_key(PREFIX, u)) for u in USERS[:3]}
    resumed = run_refresh(engine, USERS, force=True)
    assert resumed.resumed_skipped == 3 and resumed.processed == 3
    for u in USERS[:3]:
        assert seeded.get(record_key(PREFIX, u)) == done[u]  # not rewritten
    assert not list((engine.cfg.refresh.state_dir / "checkpoints").glob("*.jsonl"))  # finished
    again = run_refresh(engine, USERS, force=True)  # a finished run does not resume
    assert again.resumed_skipped == 0 and again.processed == 6


def test_cluster_tuple_mode_serves_covered_users_from_the_table(seeded, small_bundle, icfg, llama_server):
    # Users 1-4 just engaged with the same item: their 1-cluster tuple is shared (one LLM call).
    for uid in USERS[:4]:
        push_history(seeded, PREFIX, uid, [str(small_bundle.item_ids[0])])
    engine = _engine(
        icfg,
        small_bundle,
        seeded,
        llama_server,
        refresh={"tuple_mode": True, "tuple_size": 1, "tuple_min_users": 2, "tuple_max": 2},
    )
    stats = run_refresh(engine, USERS)
    assert stats.tuple_calls >= 1
    sources = [_record(seeded, u).source for u in USERS]
    assert stats.outcomes["tuple"] == sources.count(ProposalSource.PROPOSAL_SOURCE_LLM_TUPLE) >= 2
    assert list(engine.cfg.refresh.state_dir.glob("tuples-*.json"))
    # A later run reuses the stored table: no new tuple call.
    again = _engine(
        icfg,
        small_bundle,
        seeded,
        llama_server,
        refresh={"tuple_mode": True, "tuple_size": 1, "tuple_min_users": 2, "tuple_max": 2},
    )
    assert run_refresh(again, USERS, force=True).tuple_calls == 0


@pytest.mark.parametrize("mode", ["malformed", "wrong_shape", "500"])
def test_bad_answers_never_become_records(seeded, small_bundle, icfg, faulty, mode):
    from .conftest import FaultyHandler

    FaultyHandler.mode = mode
    url = f"http://127.0.0.1:{faulty.server_address[1]}/v1"
    engine = _engine(icfg, small_bundle, seeded, url)
    stats = run_refresh(engine, USERS[:3])
    assert stats.outcomes["fallback"] == 3  # retried, then the transition model
    for u in USERS[:3]:
        rec = _record(seeded, u)
        assert rec.source == ProposalSource.PROPOSAL_SOURCE_TRANSITION and rec.model_id == "transition"
        assert all(0 <= i.cluster_id < engine.catalog.n_clusters for i in rec.interests)

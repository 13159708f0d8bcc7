"""The Ray engine on a local Ray instance: shards spread over several worker processes, every user
written exactly once to a real Redis, a failing shard reported while the others finish."""

from __future__ import annotations

import pytest
import redis

from serendip.bundle import load_bundle
from serendip.stack.ray_engine import RayEngine, shards
from serendip.store import decode_record, record_key
from serendip.store.history import seed_histories, user_histories
from tests.stack.conftest import REPO, UpProcess
from tests.stack.ray_worker import make_worker

pytest.importorskip("ray")
pytestmark = pytest.mark.slow
PREFIX = "serendip:ray-test"


def test_shards_cover_users_once():
    users = [str(i) for i in range(10)]
    parts = list(shards(users, 4))
    assert [len(p) for p in parts] == [4, 4, 2] and [u for p in parts for u in p] == users


@pytest.fixture(scope="module")
def engine():
    eng = RayEngine(
        num_workers=2,
        shard_size=40,
        max_retries=1,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
        init_kwargs={"num_cpus": 2, "object_store_memory": 80 * 1024 * 1024},
    )
    yield eng
    eng.shutdown()


def test_distributed_refresh_writes_every_user_once(engine, stack_up: UpProcess, redis_server):
    bundle = load_bundle(stack_up.bundle_root, verify=False)
    client = redis.Redis.from_url(redis_server.url)
    histories = user_histories(bundle.interactions, 4.0)
    seed_histories(client, PREFIX, histories)
    users = sorted(histories)
    context = {"bundle": str(stack_up.bundle_root), "redis_url": redis_server.url, "prefix": PREFIX}

    report = engine.run(make_worker, context, users)

    assert not report.failed and report.shards == -(-len(users) // 40)
    done = [u for r in report.results for u in r["users"]]
    assert sorted(done) == users  # each user in exactly one shard
    assert len({r["pid"] for r in report.results}) == 2  # both actors did work
    for user in users[::25]:
        rec = decode_record(client.get(record_key(PREFIX, user)))
        assert rec.bundle_id == bundle.bundle_id and len(rec.interests) == 2
    client.close()


def test_failing_shard_is_reported_and_the_rest_finish(engine, stack_up: UpProcess, redis_server):
    users = [str(u) for u in range(1, 121)]
    context = {
        "bundle": str(stack_up.bundle_root),
        "redis_url": redis_server.url,
        "prefix": PREFIX,
        "fail_user": "50",
    }
    report = engine.run(make_worker, context, users)
    assert len(report.failed) == 1 and "50" in report.failed[0].users
    assert "refusing shard with user 50" in report.failed[0].error
    assert sorted(u for r in report.results for u in r["users"]) == sorted(
        set(users) - set(report.failed[0].users)
    )

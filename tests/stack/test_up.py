"""`serendip up` end to end: a real tiny bundle built by `up`, embedded Redis, the retrieval service as
a subprocess, the demo page in headless Chromium, then SIGINT stops everything.

The tests run in file order and share one `serendip up` (session fixture); the last one stops it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import redis
from PIL import Image

from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.api.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from serendip.bundle import load_bundle
from serendip.store import Interest, Record, encode_record, read_history, record_key
from tests.stack.browser import dump_dom, find_chromium, screenshot
from tests.stack.conftest import UpProcess

pytestmark = pytest.mark.slow
PREFIX = "serendip:v1"
USER = "414"  # the most active MovieLens user: a long history


def _recommend(target: str, user: str, k: int = 12, ratio: float = 0.25) -> pb.RecommendResponse:
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RetrievalServiceStub(channel)
        return stub.Recommend(pb.RecommendRequest(user_id=user, k=k, exploration_ratio=ratio), timeout=10)


def _write_record(up: UpProcess, user: str, n: int = 2) -> list[int]:
    """A record as the interest service writes it (same protobuf and key), for clusters new to the user.

    Written by the test because the interest service's refresh is not part of this run (--refresh
    skip); its rationale text marks it as such."""
    bundle = load_bundle(up.bundle_root, verify=False)
    client = redis.Redis.from_url(up.redis_url)
    history = read_history(client, PREFIX, user)
    seen = {
        int(bundle.taxonomy.item_clusters[bundle.item_index[i]]) for i in history if i in bundle.item_index
    }
    novel = [c for c in range(bundle.taxonomy.n_clusters) if c not in seen][:n]
    assert len(novel) == n, f"user {user} has seen almost every cluster: {sorted(seen)}"
    now = int(time.time() * 1000)
    interests = [
        Interest(
            c,
            bundle.taxonomy.clusters[c].label,
            0.9 - 0.1 * i,
            f"test record: try cluster {c}",
            np.asarray(bundle.centroids[c], dtype=np.float32),
        )
        for i, c in enumerate(novel)
    ]
    record = Record(interests, bundle.bundle_id, "test-writer", "test", now, now + 3_600_000)
    client.set(record_key(PREFIX, user), encode_record(record))
    client.close()
    return novel


def _commands() -> set[str]:
    from serendip.stack.up import available_commands

    return available_commands()


def test_up_printed_every_endpoint(stack_up: UpProcess):
    out = stack_up.output()
    assert "bundle: none under" in out and "bundle: built" in out  # built because none was published
    assert "users seeded from the bundle's interactions" in out
    assert "metrics http://" in out
    if "serve-interest" in _commands():
        assert "interest: SERVING" in out  # the interest service's CLI is installed: up started it
    metrics = urllib.request.urlopen(
        stack_up.wait_for(r"metrics (http://\S+/metrics)", 1).group(1), timeout=5
    )
    assert b"grpc_server_handled_total" in metrics.read()


def test_recommend_answers_relevance_then_novel(stack_up: UpProcess):
    r = _recommend(stack_up.retrieval, USER)
    assert len(r.items) == 12 and r.bundle_id
    assert r.record_status == pb.RECORD_STATUS_MISS
    assert {i.source for i in r.items} == {pb.ITEM_SOURCE_RELEVANCE}

    novel = _write_record(stack_up, USER)
    r = _recommend(stack_up.retrieval, USER)
    assert r.record_status == pb.RECORD_STATUS_HIT
    assert r.novel_slots == 3  # round(12 * 0.25)
    novel_items = [i for i in r.items if i.source == pb.ITEM_SOURCE_NOVEL_INTEREST]
    assert len(novel_items) == 3 and {i.cluster_id for i in novel_items} <= set(novel)


def test_demo_page_in_headless_chromium(stack_up: UpProcess, tmp_path: Path):
    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium not found: scripts/setup.sh installs Debian's chromium")
        pytest.skip("chromium not installed (scripts/setup.sh installs it)")
    _write_record(stack_up, USER)
    api = json.loads(
        urllib.request.urlopen(f"{stack_up.demo}api/recommend?user={USER}&k=12&ratio=0.25").read()
    )
    assert api["record_status"] == "HIT" and len(api["recent"]) > 0
    url = f"{stack_up.demo}?user={USER}"

    dom = dump_dom(chromium, url)
    assert 'data-ready="1"' in dom, dom[-3000:]
    assert dom.count('data-source="novel"') == 3
    assert dom.count('data-source="relevance"') == 9
    assert "test record: try cluster" in dom  # the novel interests' reasons
    assert f"user {USER} · record HIT" in dom

    png = screenshot(chromium, url, tmp_path / "demo.png")
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert img.shape[:2] == (1500, 1280)

    def pixels(rgb: tuple[int, int, int]) -> int:
        return int((np.abs(img - np.array(rgb)).sum(axis=2) < 30).sum())

    # Novel cards are outlined magenta and relevance cards blue (3 px around 132x~260 px cards):
    # both colours must cover a real area of the rendered page, and posters must have rendered
    # (many distinct colours, not a blank or error page).
    assert pixels((0xE1, 0x2D, 0x6E)) > 3 * 1500, "no novel-marked cards visible"
    assert pixels((0x26, 0x80, 0xC2)) > 9 * 1500, "no relevance-marked cards visible"
    assert len(np.unique(img.reshape(-1, 3) // 16, axis=0)) > 500, "page looks blank (no posters)"


def test_sigint_stops_everything(stack_up: UpProcess):
    children = stack_up.children()
    assert len(children) >= 2, children  # redis-server and the retrieval service at least
    t0 = time.monotonic()
    stack_up.proc.send_signal(signal.SIGINT)
    assert stack_up.proc.wait(60) == 0, stack_up.output()[-3000:]
    elapsed = time.monotonic() - t0
    stopped = stack_up.wait_for(r"stopped (.*) in [0-9.]+s", 1).group(1)
    codes = dict(re.findall(r"(\w+) \((-?\d+)\)", stopped))
    assert {"retrieval", "redis"} <= set(codes) and set(codes.values()) == {"0"}, stopped
    if "interest: SERVING" in stack_up.output():
        assert "interest" in codes  # drained on SIGTERM too
    for pid in children:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )
    with pytest.raises(grpc.RpcError):
        _recommend(stack_up.retrieval, USER)
    assert elapsed < 30

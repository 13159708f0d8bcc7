"""Fixtures of the interest-service tests: real models, a real OpenAI-compatible server, real Redis."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from serendip.store.server import free_port


@pytest.fixture(scope="session")
def gguf() -> Path:
    from interest_service.backends.local import default_gguf

    folder, name = default_gguf()
    return folder / name


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M (the default local model), loaded once: de-quantising the GGUF takes ~15-30 s."""
    from interest_service.backends.local import LocalBackend
    from interest_service.config import LocalBackendConfig

    backend = LocalBackend(LocalBackendConfig(batch_size=8))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def llama_server(gguf: Path, tmp_path_factory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on the SmolLM2 GGUF (a real server, on loopback)."""
    pytest.importorskip("llama_cpp.server", reason="pip install 'llama-cpp-python[server]'")
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    fh = open(log, "wb")  # noqa: SIM115 (open for the server's whole life, closed below)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            "--n_threads",
            "1",
            "--model_alias",
            "smollm2",
        ],
        stdout=fh,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"llama.cpp server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        fh.close()


@pytest.fixture(scope="session")
def catalog(small_bundle):
    from interest_service.catalog import Catalog

    return Catalog.from_bundle(small_bundle)


@pytest.fixture
def icfg(tmp_path, movielens_path):
    """An InterestConfig for tests: state under tmp, images from the MovieLens folder, small batches."""
    from interest_service.config import InterestConfig

    def make(**overrides):
        raw = {
            "prompt": {"describe": "metadata", "n_recent": 4},
            "local": {"batch_size": 8},
            "refresh": {"state_dir": str(tmp_path / "state"), "batch_size": 4},
            "images": {"allowed_roots": [str(movielens_path)]},
        }
        for section, values in overrides.items():
            if isinstance(values, dict):
                raw.setdefault(section, {}).update(values)
            else:
                raw[section] = values
        return InterestConfig.model_validate(raw)

    return make


def openai_cfg(base_url: str, **kw):
    from interest_service.config import OpenAIBackendConfig

    base = {
        "base_url": base_url,
        "model": "smollm2",
        "response_format": "json_object",
        "images": False,
        "timeout_s": 120,
        "retries": 1,
        "backoff_s": 0.05,
        "concurrency": 2,
    }
    return OpenAIBackendConfig.model_validate({**base, **kw})


def users_of(bundle, catalog, n: int, start: int = 0):
    from interest_service.catalog import UserContext
    from serendip.store import user_histories

    hist = user_histories(bundle.interactions, 4.0)
    chosen = list(hist.items())[start : start + n]
    return [UserContext.build(uid, items[::-1], catalog, 5) for uid, items in chosen]


class FaultyHandler(http.server.BaseHTTPRequestHandler):
    mode = "500"
    calls = 0

    def do_POST(self):
        type(self).calls += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.mode == "slow":
            time.sleep(2)
        if self.mode == "500":
            self.send_response(500)
            self.end_headers()
            return
        content = "this is not json {" if self.mode == "malformed" else '{"summary":"x","interests":[]}'
        body = json.dumps(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": content},
                    }
                ],
            }
        ).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def faulty():
    """A real HTTP server speaking the chat-completions route badly (mode set per test)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FaultyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture
def refresh_config(tmp_path: Path, redis_server, movielens_path: Path):
    """Writes serendip.toml for `serendip refresh` through the CLI with an LLM endpoint that is down
    (a dead port, no retries), so users get the transition-model fallback quickly."""

    def write(gateway_url: str | None = None, redis_url: bool = True, n_recent: int | None = None) -> Path:
        path = tmp_path / "serendip.toml"
        push = f'pushgateway_url = "{gateway_url}"' if gateway_url else ""
        redis = f'url = "{redis_server.url}"' if redis_url else ""
        recent = f"n_recent = {n_recent}" if n_recent is not None else ""
        path.write_text(
            f"""
[redis]
{redis}
[data]
path = "{movielens_path}"
[interest]
backend = "openai"
[interest.openai]
base_url = "http://127.0.0.1:9/v1"
retries = 0
[interest.refresh]
state_dir = "{tmp_path / "state"}"
batch_size = 2
{push}
[interest.prompt]
describe = "metadata"
{recent}
"""
        )
        return path

    return write

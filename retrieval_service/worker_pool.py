"""Compute worker processes: each holds the bundle, a Redis client and a recommender, and answers
the micro-batches the server sends it over a pipe.

Why processes: in one process the compute shares the GIL with the gRPC event loop. Each GIL
release inside a batch (every torch operator, FAISS call and socket read) can wait for the loop's
current turn. A batch of 15 took 12 ms of wall time for 8 ms of CPU, and the process never used
more than one core. In a worker, nothing else wants the GIL. See docs/retrieval.md for the numbers.

Protocol: two `multiprocessing` pipes per worker, carrying pickled values.
- The batch pipe belongs to the worker's one batcher thread in the server: it sends a list of
  queries and reads ``(ok, serialised responses)`` itself, with no thread hop in between. Each hop
  costs latency at one client. The bytes go to gRPC as they are.
- The control pipe carries ``(request id, kind, payload)`` with kind one of stage, commit, discard,
  metrics, stop, and replies ``(request id, ok, payload)``. A reader thread in the server matches
  the replies to the callers.

A worker answers both pipes on its main thread. ``stage`` loads and verifies a bundle on a side
thread, so batches keep being answered while a new bundle loads.

A worker that dies is restarted with the bundle it last served. Meanwhile its batches fail with
`ComputeUnavailable`, which callers see as UNAVAILABLE. Each restart is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from prometheus_client import Counter
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from retrieval_service.compute import (
    BundleInfo,
    ComputeUnavailable,
    Processor,
    load_for_serving,
    make_recommender,
)
from retrieval_service.config import ServiceSettings
from retrieval_service.metrics import RetrievalMetrics
from retrieval_service.validation import Query
from serendip.bundle import BundleError

log = logging.getLogger(__name__)

# spawn, not fork: a forked child would inherit the server's gRPC, torch and OpenMP thread state.
_CONTEXT = multiprocessing.get_context("spawn")
START_TIMEOUT_S = 600.0  # a worker loads and verifies the whole bundle before it answers
STOP_TIMEOUT_S = 30.0
RESTART_BACKOFF_S = 1.0
METRICS_TIMEOUT_S = 2.0


class WorkerError(Exception):
    """The worker raised while handling a request (a bug, not a caller's mistake)."""


def _worker_main(batches: Connection, conn: Connection, settings_json: str, path: str) -> None:
    """The worker process: ``batches`` is the batch pipe, ``conn`` the control pipe."""
    # The server drains and then stops its workers itself: a Ctrl-C or SIGTERM sent to the whole
    # process group must not kill a worker while the server is still answering calls.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import torch

    settings = ServiceSettings.model_validate_json(settings_json)
    torch.set_num_threads(settings.retrieval.threads)
    send_lock = threading.Lock()

    def reply(rid: int, ok: bool, payload: Any) -> None:
        with send_lock:
            conn.send((rid, ok, payload))

    try:
        bundle = load_for_serving(settings, Path(path))
    except Exception as exc:
        reply(0, False, f"{exc}")
        return
    metrics = RetrievalMetrics()
    recommender = make_recommender(settings, bundle, metrics)
    staged: dict[int, Any] = {}
    reply(0, True, BundleInfo.of(bundle))

    def stage(rid: int, target: str) -> None:
        try:
            fresh = load_for_serving(settings, Path(target))
        except Exception as exc:
            reply(rid, False, f"{exc}")
            return
        staged[0] = fresh
        reply(rid, True, BundleInfo.of(fresh))

    while True:
        try:
            ready = wait([batches, conn])
            if batches in ready:
                queries = batches.recv()
                try:
                    answer: tuple[bool, Any] = (
                        True,
                        [r.SerializeToString() for r in recommender.respond(queries)],
                    )
                except Exception as exc:  # keep serving; the server fails this one batch
                    log.exception("compute worker: batch failed")
                    answer = (False, f"{type(exc).__name__}: {exc}")
                batches.send(answer)
            if conn not in ready:
                continue
            rid, kind, payload = conn.recv()
        except (EOFError, OSError):
            break  # the server has gone
        try:
            if kind == "stage":
                threading.Thread(target=stage, args=(rid, payload), name="stage", daemon=True).start()
            elif kind == "commit":
                # The swap: batches after this one use the new bundle.
                recommender.bundles.current = staged.pop(0)
                reply(rid, True, None)
            elif kind == "discard":
                staged.clear()
                reply(rid, True, None)
            elif kind == "metrics":
                reply(rid, True, list(metrics.compute_registry.collect()))
            elif kind == "stop":
                recommender.close()
                reply(rid, True, None)
                break
            else:
                reply(rid, False, f"unknown request kind {kind!r}")
        except Exception as exc:  # keep serving; the server fails this one request
            log.exception("compute worker: %s failed", kind)
            reply(rid, False, f"{type(exc).__name__}: {exc}")


class _Worker:
    """One worker process and the pipe to it. `call` may be used from any thread."""

    def __init__(self, settings_json: str, index: int, on_restart: Any) -> None:
        self.index = index
        self.path: Path | None = None  # the bundle it serves, reloaded after a restart
        self._settings_json = settings_json
        self._on_restart = on_restart
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._pending_lock = threading.Lock()  # apart from the send lock: see _read
        self._pending: dict[int, Future[tuple[bool, Any]]] = {}
        self._conn: Connection | None = None
        self._batches: Connection | None = None
        self._batch_lock = threading.Lock()
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._closing = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, path: Path) -> BundleInfo:
        """Start the process and wait until it serves ``path``. Raises `BundleError` if it cannot."""
        parent, child = _CONTEXT.Pipe()
        batches, child_batches = _CONTEXT.Pipe()
        proc = _CONTEXT.Process(
            target=_worker_main,
            args=(child_batches, child, self._settings_json, str(path)),
            name=f"retrieval-worker-{self.index}",
            daemon=True,  # never outlive the server
        )
        proc.start()
        child.close()
        child_batches.close()
        try:
            if not parent.poll(START_TIMEOUT_S):
                raise BundleError(f"compute worker {self.index} did not start in {START_TIMEOUT_S:.0f}s")
            _, ok, payload = parent.recv()
            if not ok:  # the bundle was refused; the worker is exiting by itself
                raise BundleError(payload)
        except (EOFError, OSError, BundleError) as exc:
            parent.close()
            batches.close()
            proc.kill()
            proc.join()
            if isinstance(exc, BundleError):
                raise
            raise BundleError(f"compute worker {self.index} died while loading {path}") from exc
        with self._send_lock, self._batch_lock:
            self._conn, self._batches, self._proc, self.path = parent, batches, proc, Path(path)
        threading.Thread(
            target=self._read, args=(parent,), name=f"worker-{self.index}-reader", daemon=True
        ).start()
        return payload

    def run_batch(self, queries: list[Query]) -> list[bytes]:
        with self._batch_lock:  # one batcher thread per worker; the lock guards a restart's swap
            conn = self._batches
            if conn is None:
                raise ComputeUnavailable(f"compute worker {self.index} is restarting")
            try:
                conn.send(queries)
                ok, payload = conn.recv()
            except (EOFError, OSError) as exc:
                raise ComputeUnavailable(f"compute worker {self.index} died") from exc
        if not ok:
            raise WorkerError(payload)
        return payload

    def call(self, kind: str, payload: Any = None, timeout: float | None = None) -> Any:
        fut: Future[tuple[bool, Any]] = Future()
        with self._send_lock:
            conn = self._conn
            if conn is None:
                raise ComputeUnavailable(f"compute worker {self.index} is restarting")
            rid = next(self._ids)
            with self._pending_lock:
                self._pending[rid] = fut
            try:
                conn.send((rid, kind, payload))
            except (OSError, ValueError) as exc:
                with self._pending_lock:
                    self._pending.pop(rid, None)
                raise ComputeUnavailable(f"compute worker {self.index} is gone") from exc
        ok, result = fut.result(timeout)
        if not ok:
            if kind == "stage":
                raise BundleError(result)
            raise WorkerError(result)
        return result

    def _read(self, conn: Connection) -> None:
        # Only the pending lock here, never the send lock: a sender blocked on a full pipe waits
        # for the worker, which may itself wait for this thread to read its replies.
        while True:
            try:
                rid, ok, payload = conn.recv()
            except (EOFError, OSError):
                break
            with self._pending_lock:
                fut = self._pending.pop(rid, None)
            if fut is not None:
                fut.set_result((ok, payload))
        with self._send_lock:
            if self._conn is conn:
                self._conn = None
        conn.close()
        with self._batch_lock:  # a batch in flight has already failed on its own pipe
            if self._batches is not None:
                self._batches.close()
                self._batches = None
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        for fut in pending.values():
            fut.set_exception(ComputeUnavailable(f"compute worker {self.index} died"))
        if not self._closing:
            self._restart()

    def _restart(self) -> None:
        exitcode = self._proc.exitcode if self._proc else None
        log.error("compute worker %d died (exit code %s): restarting it", self.index, exitcode)
        self._on_restart()
        while not self._closing and self.path is not None:
            try:
                self.start(self.path)
                log.info("compute worker %d restarted", self.index)
                return
            except BundleError as exc:
                log.error("compute worker %d failed to restart: %s", self.index, exc)
                time.sleep(RESTART_BACKOFF_S)

    def stop(self) -> None:
        self._closing = True
        with contextlib.suppress(Exception):  # already gone, or stuck: it is killed below
            self.call("stop", timeout=STOP_TIMEOUT_S)
        if self._proc is not None:
            self._proc.join(STOP_TIMEOUT_S)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()


class WorkerPool:
    """`Compute` over ``n`` worker processes; one batcher thread feeds each."""

    def __init__(self, settings: ServiceSettings, n: int, metrics: RetrievalMetrics) -> None:
        if n < 1:
            raise ValueError("a worker pool needs at least one worker")
        restarts = Counter(
            "serendip_retrieval_worker_restarts_total",
            "Compute worker processes restarted after they died.",
            registry=metrics.registry,
        )
        settings_json = settings.model_dump_json()
        self.workers = [_Worker(settings_json, i, restarts.inc) for i in range(n)]
        self._info: BundleInfo | None = None
        metrics.registry.register(WorkerMetrics(self))

    async def start(self, path: Path) -> BundleInfo:
        results = await asyncio.gather(
            *(asyncio.to_thread(w.start, path) for w in self.workers), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.close()
            raise failed[0]
        self._info = results[0]  # type: ignore[assignment]
        return self._info

    @property
    def info(self) -> BundleInfo:
        if self._info is None:
            raise RuntimeError("worker pool not started")
        return self._info

    def processors(self) -> list[Processor]:
        return [w.run_batch for w in self.workers]  # type: ignore[misc]

    async def replace(self, path: Path) -> BundleInfo:
        """Stage the bundle in every worker; swap it in only when all of them have it."""
        staged = await asyncio.gather(
            *(asyncio.to_thread(w.call, "stage", str(path)) for w in self.workers), return_exceptions=True
        )
        failed = [r for r in staged if isinstance(r, BaseException)]
        if failed:
            await asyncio.gather(
                *(asyncio.to_thread(w.call, "discard") for w, r in zip(self.workers, staged, strict=True)
                  if not isinstance(r, BaseException)),
                return_exceptions=True,
            )  # fmt: skip
            exc = failed[0]
            raise exc if isinstance(exc, BundleError) else BundleError(f"{path}: {exc}") from exc
        for w in self.workers:
            w.path = Path(path)  # from now on a restarted worker loads the new bundle
        await asyncio.gather(*(asyncio.to_thread(w.call, "commit") for w in self.workers))
        self._info = staged[0]  # type: ignore[assignment]
        return self._info

    async def close(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in self.workers))


class WorkerMetrics(Collector):
    """The workers' hot-path metrics, summed over workers, collected when Prometheus scrapes."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        families: list[Metric] = []
        for worker in self.pool.workers:
            try:
                families.extend(worker.call("metrics", timeout=METRICS_TIMEOUT_S))
            except Exception:  # restarting or stuck: its series are missing from this scrape
                continue
        yield from merge_families(families)


def merge_families(families: list[Metric]) -> Iterator[Metric]:
    """One family per name. Counters and histograms are summed, gauges take the highest value
    (the circuit state: open anywhere shows as open), ``_created`` the earliest."""
    merged: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for family in families:
        out = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
        series = values.setdefault(family.name, {})
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            old = series.get(key)
            if old is None:
                series[key] = sample.value
            elif sample.name.endswith("_created"):
                series[key] = min(old, sample.value)
            elif out.type == "gauge":
                series[key] = max(old, sample.value)
            else:
                series[key] = old + sample.value
    for name, family in merged.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
        yield family

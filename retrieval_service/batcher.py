"""Micro-batching without a wait, on batcher threads that feed themselves.

Calls go into a thread-safe queue. A batcher thread takes whatever is queued as one batch, runs it,
posts the results back to the event loop in a single callback, and at once takes the next batch.
There is one thread per processor (per compute worker process), all taking from the same queue.
Under light load every batch holds one request, so latency pays nothing; under load requests queue
while the previous batch runs and are then served together, so the fixed costs (Redis round trip,
model call, FAISS call) are shared.

Why the threads take batches themselves rather than the loop handing them over (``run_in_executor``):
with a hand-over, the compute sat idle after each batch until the loop had answered the batch's
calls and got round to collecting the next batch.

Calls whose caller has gone (deadline passed, cancelled) are dropped before any work is spent on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Q = TypeVar("Q")
R = TypeVar("R")

_STOP = object()


class DeadlineExpired(Exception):
    pass


class MicroBatcher(Generic[Q, R]):
    """Each of ``processors`` gets its own thread; it returns one result per query, in order."""

    def __init__(
        self,
        processors: Sequence[Callable[[list[Q]], list[R]]],
        max_batch: int,
        on_dropped: Callable[[str, int], None] | None = None,
        on_thread_start: Callable[[], None] | None = None,
        thread_name: str = "micro-batcher",
    ) -> None:
        if not processors:
            raise ValueError("a micro-batcher needs at least one processor")
        self._processors = list(processors)
        self._max_batch = max_batch
        self._on_dropped = on_dropped or (lambda reason, n: None)
        self._on_thread_start = on_thread_start
        self._thread_name = thread_name
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._threads = [
            threading.Thread(target=self._work, args=(process,), name=f"{self._thread_name}-{n}", daemon=True)
            for n, process in enumerate(self._processors)
        ]
        for thread in self._threads:
            thread.start()

    async def stop(self) -> None:
        """Answer everything queued so far, then end the threads."""
        if self._threads:
            for _ in self._threads:  # each thread ends at the first stop it takes
                self._queue.put(_STOP)
            for thread in self._threads:
                await asyncio.to_thread(thread.join)
            self._threads = []
        # Anything submitted after the stop was queued behind it: fail it rather than let it hang.
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not _STOP:
                _, fut, _ = item  # type: ignore[misc]
                if not fut.done():
                    fut.set_exception(RuntimeError("server stopped"))

    async def submit(self, query: Q, deadline: float | None = None) -> R:
        """``deadline``: time.monotonic() value after which the caller no longer wants the answer."""
        if self._loop is None or not self._threads:
            raise RuntimeError("micro-batcher not running")
        fut: asyncio.Future[R] = self._loop.create_future()
        self._queue.put((query, fut, deadline))
        return await fut

    def _work(self, process: Callable[[list[Q]], list[R]]) -> None:
        if self._on_thread_start:
            self._on_thread_start()
        get, get_nowait = self._queue.get, self._queue.get_nowait
        while True:
            first = get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:  # finish this batch, then end
                    stop = True
                    break
                batch.append(item)
            self._run_batch(process, batch)  # type: ignore[arg-type]
            if stop:
                return

    def _run_batch(
        self, process: Callable[[list[Q]], list[R]], batch: list[tuple[Q, asyncio.Future[R], float | None]]
    ) -> None:
        now = time.monotonic()
        live: list[tuple[Q, asyncio.Future[R]]] = []
        expired: list[asyncio.Future[R]] = []
        cancelled = 0
        for query, fut, deadline in batch:
            # done() is read off the loop thread: a stale "not done" only costs one wasted answer,
            # which _deliver then drops.
            if fut.done():  # its caller has gone: cancelled, or its deadline passed in gRPC
                cancelled += 1
            elif deadline is not None and deadline <= now:
                expired.append(fut)
            else:
                live.append((query, fut))
        if cancelled:
            self._on_dropped("cancelled", cancelled)
        if expired:
            self._on_dropped("deadline", len(expired))
            self._post(_fail, expired, DeadlineExpired())
        if not live:
            return
        try:
            results = process([q for q, _ in live])
        except Exception as exc:  # a bug or a dead worker, not a caller's mistake: fail this batch
            self._post(_fail, [fut for _, fut in live], exc)
            return
        self._post(_deliver, [fut for _, fut in live], results)

    def _post(self, fn: Callable[..., None], *args: object) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(fn, *args)


def _deliver(futures: list[asyncio.Future[R]], results: list[R]) -> None:
    for fut, result in zip(futures, results, strict=True):
        if not fut.done():
            fut.set_result(result)


def _fail(futures: list[asyncio.Future[R]], exc: BaseException) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_exception(exc)

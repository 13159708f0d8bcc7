"""Micro-batching without a wait: whatever is queued when the worker is free becomes one batch.

Under light load every batch holds one request, so latency pays nothing; under load requests queue
while the previous batch runs and are then served together, so the fixed costs (Redis round trip,
model call, FAISS call) are shared. Requests whose caller has gone (deadline passed, cancelled)
are dropped before any work is spent on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Q = TypeVar("Q")
R = TypeVar("R")


class DeadlineExpired(Exception):
    pass


class MicroBatcher(Generic[Q, R]):
    def __init__(
        self,
        process: Callable[[list[Q]], Awaitable[list[R]]],
        max_batch: int,
        on_dropped: Callable[[str, int], None] | None = None,
    ) -> None:
        self._process = process
        self._max_batch = max_batch
        self._on_dropped = on_dropped or (lambda reason, n: None)
        self._queue: asyncio.Queue[tuple[Q, asyncio.Future[R], float | None]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._in_flight: list[tuple[Q, asyncio.Future[R]]] = []

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._worker:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        # Nothing should be left after a drain, but a caller must never hang on a stopped worker.
        left = [fut for _, fut in self._in_flight]
        while not self._queue.empty():
            left.append(self._queue.get_nowait()[1])
        for fut in left:
            if not fut.done():
                fut.set_exception(RuntimeError("server stopped"))
        self._in_flight = []

    async def submit(self, query: Q, deadline: float | None = None) -> R:
        """``deadline``: time.monotonic() value after which the caller no longer wants the answer."""
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((query, fut, deadline))
        return await fut

    async def _run(self) -> None:
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while len(batch) < self._max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            now = time.monotonic()
            live = []
            cancelled = expired = 0
            for query, fut, deadline in batch:
                if fut.done():  # its caller has gone: cancelled, or its deadline passed in gRPC
                    cancelled += 1
                elif deadline is not None and deadline <= now:
                    fut.set_exception(DeadlineExpired())
                    expired += 1
                else:
                    live.append((query, fut))
            if cancelled:
                self._on_dropped("cancelled", cancelled)
            if expired:
                self._on_dropped("deadline", expired)
            if not live:
                continue
            self._in_flight = live
            try:
                results = await self._process([q for q, _ in live])
            except Exception as exc:  # a bug, not a caller's mistake: fail this batch, keep serving
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

"""Hot reload: load and verify a new bundle off the event loop, then swap it in with one assignment.

The compute does the loading and the swap (compute.py, worker_pool.py: every worker has the new
bundle before any swaps). In-flight batches keep the bundle they started with (they hold a
reference), so no request is dropped or sees two bundles. A bundle that fails verification is
refused and the serving one stays; the watcher remembers a refused target and only tries again
when the `current` link moves on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from retrieval_service.compute import Compute
from retrieval_service.metrics import RetrievalMetrics
from serendip.bundle import BundleError, resolve_bundle_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadResult:
    bundle_id: str
    previous_bundle_id: str
    changed: bool
    load_seconds: float


class BundleReloader:
    def __init__(
        self,
        compute: Compute,
        root: Path,
        current: str,
        metrics: RetrievalMetrics,
    ) -> None:
        self.compute = compute
        self.root = Path(root)
        self.current = current
        self.metrics = metrics
        self._lock = asyncio.Lock()  # one load at a time: two would double the memory for nothing
        self._refused: Path | None = None

    def resolve(self, path: Path | None = None) -> Path:
        """The bundle directory ``path`` (or the configured root's `current` link) names now.

        Only bundles under the configured root: the admin RPC must not become a way to make the
        service open arbitrary files.
        """
        target = resolve_bundle_path(Path(path) if path else self.root, self.current).resolve()
        root = self.root.resolve()
        if target != root and root not in target.parents:
            raise BundleError(f"{target} is outside the bundle root {root}")
        return target

    async def reload(self, path: Path | None = None) -> ReloadResult:
        """Raises `BundleError` (the serving bundle unchanged) when the target cannot be served."""
        async with self._lock:
            previous = self.compute.info
            try:
                target = self.resolve(path)
            except BundleError:
                self.metrics.reloads["refused"].inc()
                raise
            if target == previous.path.resolve():
                self.metrics.reloads["unchanged"].inc()
                return ReloadResult(previous.bundle_id, previous.bundle_id, False, 0.0)
            t0 = time.perf_counter()
            try:
                fresh = await self.compute.replace(target)
            except BundleError as exc:
                self._refused = target
                self.metrics.reloads["refused"].inc()
                log.error("bundle refused, still serving %s: %s", previous.bundle_id, exc)
                raise
            self._refused = None
            self.metrics.reloads["ok"].inc()
            self.metrics.bundle_served(fresh.bundle_id, fresh.index_device, fresh.n_items, fresh.n_clusters)
            seconds = time.perf_counter() - t0
            log.info(
                "serving bundle %s (was %s), loaded in %.2fs", fresh.bundle_id, previous.bundle_id, seconds
            )
            return ReloadResult(fresh.bundle_id, previous.bundle_id, True, seconds)

    async def watch(self, interval_s: float) -> None:
        """Follow the root's `current` link: reload whenever it names another bundle."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                target = self.resolve()
                if target in (self.compute.info.path.resolve(), self._refused):
                    continue
                await self.reload()
            except BundleError:
                continue  # link missing or mid-swap, or the bundle refused (logged, counted)
            except Exception:  # keep watching whatever happens; serving is not affected
                log.exception("bundle watcher")

"""Distributed refresh on Ray: user shards spread over a pool of Ray actors.

The engine knows nothing about LLMs or records, so the core never imports the interest service.
The caller (the interest service's ``serendip refresh --engine ray``) passes a *worker factory*: a
module-level function, importable on the Ray workers, that turns a picklable context (e.g. the
settings dump) into a callable ``worker(user_ids) -> result``. Each actor calls the factory once
(the model or the vLLM client is built once per actor, not per shard) and then serves shards::

    engine = RayEngine(num_workers=8, shard_size=256)
    report = engine.run(make_refresh_worker, settings.model_dump(mode="json"), user_ids)

Ray connects to ``address`` or ``$RAY_ADDRESS`` (set by KubeRay's RayJob), else starts a local
instance. A shard whose actor dies is retried on another actor (``max_retries``); a shard that keeps
failing is reported in ``failed`` with its users, and the others still finish.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)
R = TypeVar("R")
WorkerFactory = Callable[[Any], Callable[[list[str]], R]]


@dataclass
class FailedShard:
    users: list[str]
    error: str


@dataclass
class EngineReport(Generic[R]):
    results: list[R] = field(default_factory=list)
    failed: list[FailedShard] = field(default_factory=list)
    shards: int = 0
    users: int = 0
    seconds: float = 0.0

    @property
    def failed_users(self) -> int:
        return sum(len(f.users) for f in self.failed)


def shards(users: Sequence[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(users), size):
        yield list(users[i : i + size])


class _Shell:
    """The actor body: builds the worker once, then runs shards."""

    def __init__(self, factory: WorkerFactory[Any], context: Any) -> None:
        self.worker = factory(context)

    def run(self, users: list[str]) -> Any:
        return self.worker(users)

    def pid(self) -> int:
        return os.getpid()


class RayEngine:
    def __init__(
        self,
        num_workers: int | None = None,
        shard_size: int = 256,
        address: str | None = None,
        cpus_per_worker: float = 1.0,
        gpus_per_worker: float = 0.0,
        max_retries: int = 2,
        runtime_env: dict[str, Any] | None = None,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        self.num_workers = num_workers
        self.shard_size = shard_size
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.cpus_per_worker = cpus_per_worker
        self.gpus_per_worker = gpus_per_worker
        self.max_retries = max_retries
        self.runtime_env = runtime_env
        self.init_kwargs = init_kwargs or {}
        self._started_ray = False

    def _init(self):
        import ray

        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, **self.init_kwargs}
            if self.runtime_env:
                kwargs["runtime_env"] = self.runtime_env
            ray.init(address=self.address, **kwargs)
            self._started_ray = True
        return ray

    def _pool_size(self, ray: Any) -> int:
        if self.num_workers:
            return self.num_workers
        cpus = float(ray.cluster_resources().get("CPU", 1))
        return max(1, int(cpus // max(self.cpus_per_worker, 1e-9)))

    def run(
        self,
        factory: WorkerFactory[R],
        context: Any,
        users: Sequence[str],
        on_result: Callable[[R], None] | None = None,
    ) -> EngineReport[R]:
        """Refresh ``users`` in shards over a pool of actors; results in completion order (each one
        also passed to ``on_result`` as it arrives, e.g. for a progress bar)."""
        ray = self._init()
        t0 = time.monotonic()
        report: EngineReport[R] = EngineReport(users=len(users))
        pending_shards = list(shards(users, self.shard_size))
        report.shards = len(pending_shards)
        if not pending_shards:
            return report
        actor_cls = ray.remote(num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker, max_restarts=1)(
            _Shell
        )
        size = min(self._pool_size(ray), len(pending_shards))
        context_ref = ray.put(context)
        actors = [actor_cls.remote(factory, context_ref) for _ in range(size)]
        attempts: dict[int, int] = {}
        in_flight: dict[Any, tuple[Any, int, list[str]]] = {}  # ref -> (actor, shard no, users)
        queue = list(enumerate(pending_shards))
        idle = list(actors)

        def submit() -> None:
            while idle and queue:
                actor = idle.pop()
                no, part = queue.pop(0)
                in_flight[actor.run.remote(part)] = (actor, no, part)

        submit()
        while in_flight:
            done, _ = ray.wait(list(in_flight), num_returns=1)
            ref = done[0]
            actor, no, part = in_flight.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as exc:  # the worker raised, or its actor died
                attempts[no] = attempts.get(no, 0) + 1
                dead = isinstance(exc, ray.exceptions.RayActorError)
                if not dead:
                    idle.append(actor)
                if attempts[no] <= self.max_retries and (idle or in_flight):
                    log.warning("shard %d failed (%s); retry %d", no, type(exc).__name__, attempts[no])
                    queue.append((no, part))
                else:
                    report.failed.append(FailedShard(part, f"{type(exc).__name__}: {exc}"))
            else:
                report.results.append(result)
                idle.append(actor)
                if on_result:
                    on_result(result)
            submit()
        for no, part in queue:  # every actor died: nothing left to run them
            report.failed.append(FailedShard(part, f"shard {no}: no live worker left"))
        for actor in actors:
            ray.kill(actor)
        report.seconds = time.monotonic() - t0
        return report

    def shutdown(self) -> None:
        """Stop the local Ray instance this engine started (a cluster it joined is left alone)."""
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False

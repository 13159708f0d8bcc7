"""`serendip up`: the whole stack on one machine, without Docker.

Order: Redis (embedded unless ``redis.url`` is set) → bundle (built when missing) → recent histories
seeded from the bundle's interactions → refresh (``wait``: before the services; ``background``: beside
them) → retrieval and interest services as subprocesses, each waited for on its gRPC health → the
demo page. Then it prints the endpoints and waits; Ctrl-C (SIGINT) or SIGTERM stops everything in
reverse order and returns 0. A service that dies on its own stops the stack with exit code 1.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import redis

from serendip.bundle import BundleError, resolve_bundle_path
from serendip.config import Settings
from serendip.stack.health import grpc_serving
from serendip.stack.procs import Child, Interrupted, serendip_argv, wait_exit, wait_until
from serendip.store import RedisServer
from serendip.store.server import free_port

RefreshMode = Literal["wait", "background", "skip"]
Say = Callable[[str], None]


@dataclass
class UpOptions:
    config: Path | None = None
    host: str = "127.0.0.1"
    # 0 = pick a free port.
    retrieval_port: int = 50051
    retrieval_metrics_port: int = 9101
    interest_port: int = 50052
    interest_metrics_port: int = 9102
    demo_port: int | None = 8080  # None = no demo page
    redis_port: int = 0  # the embedded Redis; ignored when redis.url is set
    state_dir: Path = Path("artifacts/stack")  # logs and the embedded Redis's data
    build: bool = True  # build the bundle when none is published
    seed: bool = True  # (re)write recent histories from the bundle's interactions
    refresh: RefreshMode = "background"
    refresh_args: list[str] = field(default_factory=list)  # passed through to `serendip refresh`
    interest: bool = True  # start the interest service (when its CLI is installed)
    ready_timeout_s: float = 600.0
    stop_grace_s: float = 20.0


@dataclass
class Endpoint:
    name: str
    address: str
    metrics: str = ""
    log: str = ""


def _port(p: int) -> int:
    return p or free_port()


def available_commands() -> set[str]:
    """Commands of the `serendip` CLI, services' plugins included (loaded through entry points)."""
    from serendip.cli import app

    names = set()
    for c in app.registered_commands:
        name = c.name or (c.callback.__name__.replace("_", "-") if c.callback else "")
        names.add(name)
    return names


class Stack:
    def __init__(self, settings: Settings, options: UpOptions, say: Say = print) -> None:
        self.settings = settings
        self.opt = options
        self.say = say
        self.redis: RedisServer | None = None
        self.redis_url = settings.redis.url or ""
        self.children: dict[str, Child] = {}
        self.refresh: Child | None = None
        self.demo = None
        self.endpoints: list[Endpoint] = []
        self.log_dir = Path(options.state_dir) / "logs"
        self.commands = available_commands()
        self.abort = threading.Event()  # set by SIGINT/SIGTERM; every wait in start() watches it

    # ---------------------------------------------------------------- start-up steps
    def env(self) -> dict[str, str]:
        """Children see the same configuration, plus this stack's Redis and ports."""
        env = dict(os.environ)
        if self.opt.config is not None:
            env["SERENDIP_CONFIG"] = str(Path(self.opt.config).resolve())
        env["SERENDIP_REDIS__URL"] = self.redis_url
        env["SERENDIP_INTEREST__SERVER__HOST"] = self.opt.host
        env["SERENDIP_INTEREST__SERVER__GRPC_PORT"] = str(self.interest_port)
        env["SERENDIP_INTEREST__SERVER__METRICS_PORT"] = str(self.interest_metrics_port)
        env["SERENDIP_RETRIEVAL__HOST"] = self.opt.host
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        return env

    def start_redis(self) -> None:
        if self.redis_url:
            client = redis.Redis.from_url(self.redis_url, socket_timeout=2)
            client.ping()
            client.close()
            self.say(f"redis: using {self.redis_url}")
            return
        data = Path(self.opt.state_dir) / "redis"
        self.redis = RedisServer(port=_port(self.opt.redis_port), data_dir=data, persist=True).start()
        self.redis_url = self.redis.url
        self.endpoints.append(Endpoint("redis (embedded)", self.redis_url, log=str(data)))
        self.say(f"redis: started an embedded redis-server at {self.redis_url} (data in {data})")

    def bundle_path(self) -> Path | None:
        try:
            return resolve_bundle_path(Path(self.settings.bundle.root), self.settings.bundle.current)
        except BundleError:
            return None

    def ensure_bundle(self) -> Path:
        path = self.bundle_path()
        if path is not None:
            self.say(f"bundle: {path.name}")
            return path
        if not self.opt.build:
            raise BundleError(f"no bundle under {self.settings.bundle.root} and --no-build was given")
        self.say(f"bundle: none under {self.settings.bundle.root}; building (serendip build) …")
        child = Child("build", serendip_argv("build"), self.log_dir, self.env()).start()
        self.children["build"] = child
        code = wait_exit(child, self.abort)
        del self.children["build"]
        child.stop()
        path = self.bundle_path()
        if code != 0 or path is None:
            raise RuntimeError(f"serendip build failed ({code}); see {child.log_path}:\n{child.tail()}")
        self.say(f"bundle: built {path.name}")
        return path

    def seed(self) -> int:
        from serendip.stack.seed import seed_from_bundle

        n = seed_from_bundle(self.settings, self.redis_url)
        self.say(f"histories: {n:,} users seeded from the bundle's interactions")
        return n

    def start_refresh(self) -> Child | None:
        if self.opt.refresh == "skip":
            return None
        if "refresh" not in self.commands:
            self.say("refresh: skipped (`serendip refresh` is not installed: interest service missing)")
            return None
        argv = serendip_argv("refresh", *self.opt.refresh_args)
        self.refresh = Child("refresh", argv, self.log_dir, self.env()).start()
        self.say(f"refresh: running ({self.opt.refresh}); log {self.refresh.log_path}")
        return self.refresh

    def wait_refresh(self) -> None:
        assert self.refresh is not None
        code = wait_exit(self.refresh, self.abort)
        self._report_refresh(code)

    def _report_refresh(self, code: int) -> None:
        assert self.refresh is not None
        if code == 0:
            self.say("refresh: finished; novel-interest records are in Redis")
        else:
            self.say(
                f"refresh: failed with exit code {code} (services keep serving relevance-only); "
                f"see {self.refresh.log_path}"
            )
        self.refresh.stop()
        self.refresh = None

    def start_services(self) -> None:
        self.retrieval_port = _port(self.opt.retrieval_port)
        self.retrieval_metrics_port = _port(self.opt.retrieval_metrics_port)
        argv = serendip_argv(
            "serve-retrieval",
            "--port", str(self.retrieval_port),
            "--metrics-port", str(self.retrieval_metrics_port),
            "--redis-url", self.redis_url,
        )  # fmt: skip
        retrieval = Child("retrieval", argv, self.log_dir, self.env()).start()
        self.children["retrieval"] = retrieval
        interest = None
        if self.opt.interest and "serve-interest" in self.commands:
            interest = Child("interest", serendip_argv("serve-interest"), self.log_dir, self.env()).start()
            self.children["interest"] = interest
        elif self.opt.interest:
            self.say("interest service: not started (`serendip serve-interest` is not installed)")
        # Both load their models in parallel; wait for each on its own health endpoint.
        target = f"{self.opt.host}:{self.retrieval_port}"
        wait_until(lambda: grpc_serving(target), self.opt.ready_timeout_s, child=retrieval, abort=self.abort)
        self.endpoints.append(
            Endpoint(
                "retrieval gRPC",
                target,
                f"http://{self.opt.host}:{self.retrieval_metrics_port}/metrics",
                str(retrieval.log_path),
            )
        )
        self.say(f"retrieval: SERVING on {target}")
        if interest is not None:
            target = f"{self.opt.host}:{self.interest_port}"
            wait_until(
                lambda: grpc_serving(target), self.opt.ready_timeout_s, child=interest, abort=self.abort
            )
            self.endpoints.append(
                Endpoint(
                    "interest gRPC",
                    target,
                    f"http://{self.opt.host}:{self.interest_metrics_port}/metrics",
                    str(interest.log_path),
                )
            )
            self.say(f"interest: SERVING on {target}")

    def start_demo(self, bundle_path: Path) -> None:
        if self.opt.demo_port is None:
            return
        from serendip.stack.demo.server import DemoServer

        self.demo = DemoServer(
            host=self.opt.host,
            port=_port(self.opt.demo_port),
            retrieval_target=f"{self.opt.host}:{self.retrieval_port}",
            redis_url=self.redis_url,
            key_prefix=self.settings.redis.key_prefix,
            bundle_root=Path(self.settings.bundle.root),
            bundle_current=self.settings.bundle.current,
        ).start()
        self.endpoints.append(Endpoint("demo page", self.demo.url))
        self.say(f"demo: {self.demo.url}")

    def start(self) -> None:
        self.interest_port = _port(self.opt.interest_port)
        self.interest_metrics_port = _port(self.opt.interest_metrics_port)
        self.start_redis()
        bundle_path = self.ensure_bundle()
        if self.opt.seed:
            self.seed()
        if self.opt.refresh == "wait" and self.start_refresh():
            self.wait_refresh()
        self.start_services()
        if self.opt.refresh == "background":
            self.start_refresh()
        self.start_demo(bundle_path)

    # ---------------------------------------------------------------- running and stopping
    def poll(self) -> str | None:
        """One look at the children: returns why the stack must stop, or None."""
        if self.refresh is not None and self.refresh.poll() is not None:
            self._report_refresh(self.refresh.poll() or 0)
        for name, child in self.children.items():
            code = child.poll()
            if code is not None:
                return f"{name} exited with code {code}; last log lines:\n{child.tail()}"
        return None

    def stop(self) -> dict[str, int | None]:
        """Reverse order; the services get SIGTERM together (each drains), then Redis stops."""
        codes: dict[str, int | None] = {}
        if self.demo is not None:
            self.demo.stop()
            self.demo = None
        running = [c for c in (self.refresh, *self.children.values()) if c is not None]
        for child in running:
            child.terminate()
        for child in running:
            codes[child.name] = child.stop(self.opt.stop_grace_s)
        self.children.clear()
        self.refresh = None
        if self.redis is not None:
            self.redis.close()
            codes["redis"] = 0
            self.redis = None
        return codes


def run_up(
    settings: Settings, options: UpOptions, say: Say = print, on_ready: Callable[[Stack], None] | None = None
) -> int:
    """Start the stack, wait for SIGINT/SIGTERM or a dead service, stop everything. Returns an exit code."""
    stack = Stack(settings, options, say)
    stop = stack.abort
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        try:
            stack.start()
        except Interrupted:
            say("interrupted during start-up")
            return 130
        except Exception as exc:
            if stop.is_set():
                say("interrupted during start-up")
                return 130
            say(f"start-up failed: {exc}")
            return 1
        if on_ready:
            on_ready(stack)
        while not stop.wait(0.5):
            reason = stack.poll()
            if reason:
                say(f"stopping: {reason}")
                code = 1
                break
        say("stopping …")
    finally:
        t0 = time.monotonic()
        codes = stack.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        say(
            "stopped "
            + ", ".join(f"{k} ({v})" for k, v in codes.items())
            + f" in {time.monotonic() - t0:.1f}s"
        )
    return code

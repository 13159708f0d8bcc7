"""``python -m serendip.stack.demo``: the demo page on its own (containers, Kubernetes)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from serendip.config import load_settings
from serendip.stack.demo.server import DemoServer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serendip.stack.demo", description=__doc__)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--retrieval", default="localhost:50051", help="HOST:PORT of the retrieval service")
    p.add_argument("--config", type=Path, default=None, help="TOML config (redis.url, bundle.root)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings(args.config)
    if not settings.redis.url:
        print("redis.url must be set (SERENDIP_REDIS__URL)", file=sys.stderr)
        return 2
    server = DemoServer(
        args.host,
        args.port,
        args.retrieval,
        settings.redis.url,
        settings.redis.key_prefix,
        Path(settings.bundle.root),
        settings.bundle.current,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    logging.info("demo page on %s", server.url)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

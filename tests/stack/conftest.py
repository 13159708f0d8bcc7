"""One real `serendip up` for the stack tests: it builds a tiny bundle, starts an embedded Redis, the
services and the demo page on free ports; the last test stops it with SIGINT."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.stack.tiny import TINY_ITEMS, write_tiny_config, write_tiny_dataset

REPO = Path(__file__).resolve().parents[2]
UP_TIMEOUT_S = 420


@dataclass
class UpProcess:
    proc: subprocess.Popen[str]
    config: Path
    bundle_root: Path
    lines: list[str] = field(default_factory=list)
    retrieval: str = ""
    demo: str = ""
    redis_url: str = ""

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = re.search(pattern, self.output())
            if m:
                return m
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the reader thread catch the last lines
                break
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} from serendip up (rc {self.proc.poll()}):\n{self.output()}")

    def children(self) -> list[int]:
        """Direct children of the `serendip up` process (from /proc)."""
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid:
                out.append(int(d.name))
        return out


@pytest.fixture(scope="session")
def stack_up(tmp_path_factory: pytest.TempPathFactory, movielens_path: Path) -> Iterator[UpProcess]:
    root = tmp_path_factory.mktemp("stack")
    data = write_tiny_dataset(movielens_path, root / "data", TINY_ITEMS)
    config = write_tiny_config(root / "serendip.toml", data, root / "bundles")
    argv = [
        sys.executable, "-c", "import sys; from serendip.cli import app; sys.argv[0] = 'serendip'; app()",
        "up", "--config", str(config), "--state-dir", str(root / "state"),
        "--retrieval-port", "0", "--retrieval-metrics-port", "0",
        "--interest-port", "0", "--interest-metrics-port", "0",
        # No refresh: one user with the default CPU model took 179 s on this shared 2-core machine.
        "--demo-port", "0", "--refresh", "skip", "--ready-timeout", "300",
    ]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200", "SERENDIP_CONFIG": ""}
    env.pop("SERENDIP_CONFIG")
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    up = UpProcess(proc, config, root / "bundles")

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            up.lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        up.wait_for(r"serendip is up", UP_TIMEOUT_S)
        up.retrieval = up.wait_for(r"retrieval: SERVING on (\S+)", 1).group(1)
        up.demo = up.wait_for(r"demo: (http://\S+)", 1).group(1)
        up.redis_url = up.wait_for(r"embedded redis-server at (redis://\S+)", 1).group(1)
        yield up
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()

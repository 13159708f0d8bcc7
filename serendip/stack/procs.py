"""Child processes of the stack: started in their own session, logged to files, stopped in order.

Each child runs in a new session (process group) so that a Ctrl-C in the terminal reaches only
`serendip up`, which then stops the children itself, one after another, with SIGTERM (the services
drain on it) and SIGKILL only after a grace period. On Linux a child also gets SIGTERM if `serendip
up` itself dies (PR_SET_PDEATHSIG), so a killed stack leaves no orphans.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1


def serendip_argv(*args: str) -> list[str]:
    """The `serendip` CLI of this interpreter (works in a venv and in the images alike)."""
    return [
        sys.executable,
        "-c",
        "import sys; from serendip.cli import app; sys.argv[0] = 'serendip'; app()",
        *args,
    ]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """One named subprocess whose stdout+stderr go to ``log_dir/<name>.log``."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_dir) / f"{name}.log"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._terminated = False

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def poll(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def tail(self, n_bytes: int = 2000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-n_bytes:].decode(errors="replace")

    def terminate(self) -> None:
        """Send SIGTERM once (a second one could hit a service after it restored default handlers)."""
        if self.proc is not None and self.proc.poll() is None and not self._terminated:
            self.proc.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, grace_s: float = 15.0) -> int | None:
        """SIGTERM (unless already sent), wait up to ``grace_s``, then SIGKILL. Returns the exit code."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.terminate()
                try:
                    self.proc.wait(grace_s)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
            code = self.proc.returncode
        if self._log:
            self._log.close()
            self._log = None
        return code


class Interrupted(Exception):
    """A stop was asked for (Ctrl-C) while waiting."""


def wait_until(
    predicate: Callable[[], bool],
    timeout_s: float,
    interval_s: float = 0.2,
    child: Child | None = None,
    abort: threading.Event | None = None,
) -> None:
    """Poll ``predicate`` until true; fail early when ``child`` exits or ``abort`` is set."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if abort is not None and abort.is_set():
            raise Interrupted()
        if child is not None and child.poll() is not None:
            raise RuntimeError(
                f"{child.name} exited with {child.poll()} before it was ready; "
                f"last log lines:\n{child.tail()}"
            )
        if predicate():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"not ready within {timeout_s:.0f}s" + (f": {child.name}" if child else ""))


def wait_exit(child: Child, abort: threading.Event | None = None, interval_s: float = 0.2) -> int:
    """Wait for ``child`` to exit; raise Interrupted when ``abort`` is set first."""
    while True:
        code = child.poll()
        if code is not None:
            return code
        if abort is not None and abort.wait(interval_s):
            raise Interrupted()
        if abort is None:
            time.sleep(interval_s)

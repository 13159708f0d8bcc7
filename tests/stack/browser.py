"""Headless Chromium (Debian's `chromium`, installed by scripts/setup.sh) for the demo-page test."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(binary: str, args: list[str], timeout_s: float) -> subprocess.CompletedProcess[bytes]:
    with tempfile.TemporaryDirectory(prefix="serendip-chromium-") as profile:
        return subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )


def dump_dom(binary: str, url: str, budget_ms: int = 15000, timeout_s: float = 90) -> str:
    """The DOM after the page's scripts ran (virtual time lets its fetches finish first)."""
    r = _run(binary, [f"--virtual-time-budget={budget_ms}", "--dump-dom", url], timeout_s)
    if r.returncode != 0:
        raise RuntimeError(f"chromium --dump-dom failed ({r.returncode}): {r.stderr.decode()[-2000:]}")
    return r.stdout.decode()


def screenshot(binary: str, url: str, out: Path, size: tuple[int, int] = (1280, 1500),
               budget_ms: int = 15000, timeout_s: float = 90) -> Path:  # fmt: skip
    r = _run(
        binary,
        [
            f"--virtual-time-budget={budget_ms}",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={out}",
            url,
        ],
        timeout_s,
    )
    if r.returncode != 0 or not out.is_file():
        raise RuntimeError(f"chromium --screenshot failed ({r.returncode}): {r.stderr.decode()[-2000:]}")
    return out

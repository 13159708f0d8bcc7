"""Safe image loading: only configured roots, schemes and hosts; bounded size and time.

Item images come from catalog data (an ``image_uri`` per item), which the service does not control.
A URI may point outside the data directory (``../../etc/passwd``), at an internal address
(``http://169.254.169.254/``), at a huge file or at bytes that are not an image. Each of those is
refused with a reason, counted, and the item goes into the prompt without its image.
"""

from __future__ import annotations

import base64
import http.client
import io
import ipaddress
import socket
import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image

from interest_service.config import ImageConfig


class ImageRejected(Exception):
    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass
class LoadedImage:
    uri: str
    image: Image.Image  # RGB, at most max_side on its longer side

    def data_url(self, quality: int = 85) -> str:
        buf = io.BytesIO()
        self.image.save(buf, format="JPEG", quality=quality)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass
class ImagePolicy:
    config: ImageConfig
    stats: Counter[str] = field(default_factory=Counter)  # "loaded" and one key per refusal reason
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        # Resolved once: a root that is itself a symlink is judged by where it points.
        self._roots = [Path(r).resolve() for r in self.config.allowed_roots]

    def load(self, uri: str | None) -> LoadedImage | None:
        """The image, or None (counted under its reason) when it is missing or refused."""
        try:
            if not uri:
                raise ImageRejected("missing")
            data = self._read(uri)
            image = self._decode(data)
        except ImageRejected as exc:
            self._count(exc.reason)
            return None
        self._count("loaded")
        return LoadedImage(uri=uri, image=image)

    def remote_url(self, uri: str) -> str | None:
        """An http(s) URI that passes the scheme/host/address checks, for a server to fetch itself."""
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https"):
            return None
        try:
            self._check_remote(parts.scheme, parts.hostname or "", parts.port)
        except ImageRejected as exc:
            self._count(exc.reason)
            return None
        return uri

    def _count(self, reason: str) -> None:
        with self._lock:
            self.stats[reason] += 1
        from interest_service.metrics import IMAGES

        IMAGES.labels(result=reason).inc()

    # -- sources --------------------------------------------------------------------------------
    def _read(self, uri: str) -> bytes:
        parts = urlsplit(uri)
        scheme = parts.scheme.lower() if len(parts.scheme) > 1 else ""  # "C:" is a drive, not a scheme
        if scheme in ("", "file"):
            if "file" not in self.config.allowed_schemes:
                raise ImageRejected("scheme", "file")
            return self._read_file(parts.path if scheme == "file" else uri)
        if scheme not in ("http", "https") or scheme not in self.config.allowed_schemes:
            raise ImageRejected("scheme", scheme)
        return self._read_http(uri)

    def _read_file(self, raw: str) -> bytes:
        if "\x00" in raw:
            raise ImageRejected("path", "NUL byte")
        path = Path(raw)
        if not path.is_absolute():
            if not self._roots:
                raise ImageRejected("path", "relative path without a root")
            path = self._roots[0] / path
        resolved = path.resolve()  # follows symlinks and '..': judged by the real location
        if not any(resolved.is_relative_to(root) for root in self._roots):
            raise ImageRejected("outside_roots", str(raw))
        if not resolved.is_file():
            raise ImageRejected("missing", str(raw))
        if resolved.stat().st_size > self.config.max_bytes:
            raise ImageRejected("too_large", f"{resolved.stat().st_size} bytes")
        with open(resolved, "rb") as fh:
            data = fh.read(self.config.max_bytes + 1)
        if len(data) > self.config.max_bytes:
            raise ImageRejected("too_large")
        return data

    def _check_remote(self, scheme: str, host: str, port: int | None) -> list[str]:
        if not host or host.lower() not in {h.lower() for h in self.config.allowed_hosts}:
            raise ImageRejected("host", host)
        port = port or (443 if scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ImageRejected("unreachable", str(exc)) from exc
        addresses = sorted({info[4][0] for info in infos})
        if not self.config.allow_internal_hosts:
            for addr in addresses:
                ip = ipaddress.ip_address(addr.split("%")[0])
                if not ip.is_global or ip.is_multicast:
                    raise ImageRejected("internal_address", f"{host} -> {addr}")
        return addresses

    def _read_http(self, uri: str) -> bytes:
        parts = urlsplit(uri)
        scheme, host = parts.scheme.lower(), parts.hostname or ""
        addresses = self._check_remote(scheme, host, parts.port)
        port = parts.port or (443 if scheme == "https" else 80)
        timeout = self.config.timeout_s
        # Connect to the address that was checked, not a fresh DNS answer (DNS rebinding).
        try:
            sock = socket.create_connection((addresses[0], port), timeout=timeout)
            if scheme == "https":
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            conn.sock = sock
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            conn.request("GET", path, headers={"Host": parts.netloc, "Accept": "image/*"})
            resp = conn.getresponse()
            if resp.status != 200:  # redirects are refused too: they could lead anywhere
                raise ImageRejected("http_status", str(resp.status))
            length = resp.getheader("Content-Length")
            if length and length.isdigit() and int(length) > self.config.max_bytes:
                raise ImageRejected("too_large", f"Content-Length {length}")
            data = resp.read(self.config.max_bytes + 1)
            conn.close()
        except TimeoutError as exc:
            raise ImageRejected("timeout", uri) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ImageRejected("unreachable", str(exc)) from exc
        if len(data) > self.config.max_bytes:
            raise ImageRejected("too_large")
        return data

    def _decode(self, data: bytes) -> Image.Image:
        try:
            with Image.open(io.BytesIO(data)) as probe:
                w, h = probe.size  # header only: refuse bombs before decoding pixels
                if w * h > self.config.max_pixels:
                    raise ImageRejected("too_large", f"{w}x{h} pixels")
                probe.verify()
            image = Image.open(io.BytesIO(data))
            image.draft("RGB", (self.config.max_side, self.config.max_side))  # cheap JPEG downscale
            image = image.convert("RGB")
        except ImageRejected:
            raise
        except Exception as exc:  # PIL raises many types for corrupt data
            raise ImageRejected("undecodable", type(exc).__name__) from exc
        image.thumbnail((self.config.max_side, self.config.max_side))
        return image

"""Image sources: roots, schemes, hosts, internal addresses, size and time limits, bad bytes."""

import contextlib
import http.server
import io
import os
import threading
import time

import pytest
from PIL import Image

from interest_service.config import ImageConfig
from interest_service.images import ImagePolicy


def _jpeg(w=64, h=96) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "posters"
    r.mkdir()
    (r / "ok.jpg").write_bytes(_jpeg())
    (r / "big.jpg").write_bytes(_jpeg(1000, 1000))
    (r / "bad.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (tmp_path / "secret.jpg").write_bytes(_jpeg())
    os.symlink(tmp_path / "secret.jpg", r / "link.jpg")
    return r


def test_local_files_only_inside_roots(root):
    policy = ImagePolicy(ImageConfig(allowed_roots=[root], max_side=32))
    img = policy.load(str(root / "ok.jpg"))
    assert (
        img is not None and max(img.image.size) <= 32 and img.data_url().startswith("data:image/jpeg;base64,")
    )
    assert policy.load("ok.jpg") is not None  # relative to the first root
    for uri in (str(root / "../secret.jpg"), "../secret.jpg", str(root / "link.jpg"), "/etc/passwd"):
        assert policy.load(uri) is None, uri
    assert policy.load(str(root / "missing.jpg")) is None
    assert policy.load(None) is None
    assert policy.load(str(root / "bad.jpg")) is None
    assert policy.stats["outside_roots"] == 4
    assert policy.stats["missing"] == 2 and policy.stats["undecodable"] == 1 and policy.stats["loaded"] == 2


def test_size_limits(root):
    small = ImagePolicy(ImageConfig(allowed_roots=[root], max_bytes=500))
    assert small.load(str(root / "ok.jpg")) is None and small.stats["too_large"] == 1
    bomb = ImagePolicy(ImageConfig(allowed_roots=[root], max_pixels=10_000))
    assert bomb.load(str(root / "big.jpg")) is None and bomb.stats["too_large"] == 1


def test_schemes_and_hosts_are_allow_listed(root):
    policy = ImagePolicy(ImageConfig(allowed_roots=[root]))  # default: file only
    assert policy.load("http://example.org/a.jpg") is None and policy.stats["scheme"] == 1
    assert policy.load("ftp://example.org/a.jpg") is None
    web = ImagePolicy(
        ImageConfig(allowed_roots=[root], allowed_schemes=["https"], allowed_hosts=["cdn.example"])
    )
    assert web.load("https://evil.example/a.jpg") is None and web.stats["host"] == 1
    internal = ImagePolicy(
        ImageConfig(allowed_schemes=["http"], allowed_hosts=["127.0.0.1", "169.254.169.254", "localhost"])
    )
    for uri in ("http://127.0.0.1:1/x.jpg", "http://169.254.169.254/latest/meta-data", "http://localhost/x"):
        assert internal.load(uri) is None
    assert internal.stats["internal_address"] == 3
    assert internal.remote_url("http://169.254.169.254/x") is None


class _Handler(http.server.BaseHTTPRequestHandler):
    body = _jpeg()

    def do_GET(self):
        if self.path == "/slow.jpg":
            time.sleep(1.5)
        if self.path == "/redirect.jpg":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client gave up (the timeout test)
            self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def test_http_fetch_with_timeout_and_no_redirects():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        policy = ImagePolicy(
            ImageConfig(
                allowed_schemes=["http"],
                allowed_hosts=["127.0.0.1"],
                allow_internal_hosts=True,
                timeout_s=0.5,
            )
        )
        assert policy.load(f"http://127.0.0.1:{port}/ok.jpg") is not None
        assert policy.load(f"http://127.0.0.1:{port}/slow.jpg") is None
        assert policy.load(f"http://127.0.0.1:{port}/redirect.jpg") is None
        assert policy.stats["timeout"] == 1 and policy.stats["http_status"] == 1
        tiny = ImagePolicy(
            ImageConfig(
                allowed_schemes=["http"],
                allowed_hosts=["127.0.0.1"],
                allow_internal_hosts=True,
                max_bytes=100,
            )
        )
        assert tiny.load(f"http://127.0.0.1:{port}/ok.jpg") is None and tiny.stats["too_large"] == 1
    finally:
        server.shutdown()

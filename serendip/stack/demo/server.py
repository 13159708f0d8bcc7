"""The demo's HTTP server (stdlib ``ThreadingHTTPServer``).

Routes: ``/`` the page, ``/static/*`` its script and style, ``/api/users`` a few users to pick from,
``/api/recommend?user=&k=&ratio=`` one Recommend call over gRPC plus the user's recent history from
Redis, ``/poster/<item_id>`` a known item's local poster, ``/healthz``.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import redis

from serendip.api.retrieval.v1 import retrieval_pb2 as pb
from serendip.api.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from serendip.stack.demo.catalog import Catalog
from serendip.store import read_history

log = logging.getLogger(__name__)
STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript", "style.css": "text/css"}
RECENT_SHOWN = 12
SOURCE = {
    pb.ITEM_SOURCE_RELEVANCE: "relevance",
    pb.ITEM_SOURCE_NOVEL_INTEREST: "novel",
    pb.ITEM_SOURCE_COLD_START: "cold_start",
}


class DemoApp:
    """Everything a request needs; shared by the handler threads."""

    def __init__(
        self, retrieval_target: str, redis_url: str, key_prefix: str, catalog: Catalog, timeout_s: float = 5.0
    ) -> None:
        # round_robin: with a headless Service (dns:///...) calls spread over every pod.
        self.channel = grpc.insecure_channel(
            retrieval_target, options=[("grpc.lb_policy_name", "round_robin")]
        )
        self.stub = pb_grpc.RetrievalServiceStub(self.channel)
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.prefix = key_prefix
        self.catalog = catalog
        self.timeout_s = timeout_s

    def close(self) -> None:
        self.channel.close()
        self.redis.close()

    def users(self) -> dict[str, Any]:
        cat = self.catalog.refresh()
        return {"users": cat.users, "bundle_id": cat.bundle_id}

    def recommend(self, user: str, k: int, ratio: float | None) -> dict[str, Any]:
        cat = self.catalog.refresh()
        request = pb.RecommendRequest(user_id=user, k=k)
        if ratio is not None:
            request.exploration_ratio = ratio
        resp = self.stub.Recommend(request, timeout=self.timeout_s)
        try:
            recent_ids = read_history(self.redis, self.prefix, user, RECENT_SHOWN)
            history_error = ""
        except (redis.RedisError, ValueError) as exc:
            recent_ids, history_error = [], str(exc)
        recent = []
        for item_id in recent_ids:
            view = cat.item(item_id)
            if view is not None:
                recent.append(
                    {
                        "item_id": item_id,
                        "title": view.title,
                        "cluster_label": view.cluster_label,
                        "poster": view.poster_url(),
                    }
                )
        items = []
        for it in resp.items:
            view = cat.item(it.item_id)
            items.append(
                {
                    "item_id": it.item_id,
                    "title": it.title or (view.title if view else it.item_id),
                    "source": SOURCE.get(it.source, "unspecified"),
                    "cluster_id": it.cluster_id,
                    "cluster_label": it.cluster_label,
                    "score": round(float(it.score), 4),
                    "poster": view.poster_url() if view else None,
                }
            )
        return {
            "user": user,
            "bundle_id": resp.bundle_id,
            "record_status": pb.RecordStatus.Name(resp.record_status).removeprefix("RECORD_STATUS_"),
            "novel_slots": resp.novel_slots,
            "novel_interests": [
                {
                    "cluster_id": n.cluster_id,
                    "label": n.label,
                    "rationale": n.rationale,
                    "score": round(float(n.score), 3),
                }
                for n in resp.novel_interests
            ],
            "recent": recent,
            "history_error": history_error,
            "items": items,
        }


class Handler(BaseHTTPRequestHandler):
    server_version = "serendip-demo"
    app: DemoApp  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, ctype: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        try:
            if url.path in ("/", "/index.html"):
                self._static("index.html")
            elif url.path.startswith("/static/"):
                self._static(url.path.removeprefix("/static/"))
            elif url.path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            elif url.path == "/api/users":
                self._json(200, self.app.users())
            elif url.path == "/api/recommend":
                self._recommend(parse_qs(url.query))
            elif url.path.startswith("/poster/"):
                self._poster(url.path.removeprefix("/poster/"))
            else:
                self._json(404, {"error": "not found"})
        except BrokenPipeError:
            pass
        except Exception as exc:  # the page shows the message; the server keeps running
            log.exception("demo request failed")
            self._json(500, {"error": f"{type(exc).__name__}: {exc}"})

    def _static(self, name: str) -> None:
        if name not in STATIC:
            self._json(404, {"error": "not found"})
            return
        body = resources.files("serendip.stack.demo").joinpath("static", name).read_bytes()
        self._send(200, body, STATIC[name])

    def _recommend(self, q: dict[str, list[str]]) -> None:
        user = (q.get("user") or [""])[0]
        try:
            k = int((q.get("k") or ["12"])[0])
            ratio_s = (q.get("ratio") or [""])[0]
            ratio = float(ratio_s) if ratio_s else None
        except ValueError:
            self._json(400, {"error": "k must be an integer and ratio a number"})
            return
        try:
            self._json(200, self.app.recommend(user, k, ratio))
        except grpc.RpcError as exc:
            status = 400 if exc.code() == grpc.StatusCode.INVALID_ARGUMENT else 502
            self._json(status, {"error": f"{exc.code().name}: {exc.details()}"})

    def _poster(self, item_id: str) -> None:
        found = self.app.catalog.refresh().poster_file(item_id)
        if found is None:
            self._json(404, {"error": "no poster"})
            return
        path, ctype = found
        self._send(200, path.read_bytes(), ctype, cache="max-age=3600")


class DemoServer:
    """The demo HTTP server on its own thread (``serendip up``) or in the foreground (``__main__``)."""

    def __init__(
        self,
        host: str,
        port: int,
        retrieval_target: str,
        redis_url: str,
        key_prefix: str,
        bundle_root: Path,
        bundle_current: str = "current",
    ) -> None:
        catalog = Catalog(bundle_root, bundle_current)
        self.app = DemoApp(retrieval_target, redis_url, key_prefix, catalog)
        handler = type("BoundHandler", (Handler,), {"app": self.app})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.host, self.port = host, int(self.httpd.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> DemoServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="demo-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread:
            self._thread.join(5)
        self.app.close()

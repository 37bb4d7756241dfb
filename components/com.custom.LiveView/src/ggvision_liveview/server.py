"""The HTTP side: a stdlib :class:`~http.server.ThreadingHTTPServer`, read-only, GET/HEAD only.

====================  ==========================================================================
``/``                 the page (``static/index.html``, ``live.js``, ``style.css``)
``/events``           Server-Sent Events: one ``state`` event per change (at most one per answer),
                      with each camera's annotated JPEG when it is new for this viewer
``/api/state``        the same state once, as JSON, without pixels
``/metrics``          Prometheus text (:mod:`ggvision_liveview.metrics`)
``/healthz``          200 ``ok`` while the process serves (never asks for the token)
``/readyz``           200 when a model component reports RUNNING and answers came lately, else 503
                      with the reasons (never asks for the token)
====================  ==========================================================================

Why SSE and not MJPEG or a WebSocket: the page needs the answer (labels, scores, frame id, the
status panels) beside each picture, and MJPEG carries pictures only; SSE is one long GET that
the browser reconnects by itself and that needs no protocol code here (a WebSocket would, and it
is two-way, which a read-only view does not want). Each viewer has its own thread that sends
only the newest state, so a slow viewer skips frames instead of queueing them, and a JPEG is made
only when a viewer is about to send it (once per frame, shared by all viewers); the page closes
its stream while hidden, so nothing is encoded for a tab nobody looks at.

With a ``token`` configured every other path needs it (``?token=`` or ``Authorization: Bearer``);
responses never carry file paths (the state is built from chosen fields only) and nothing here
changes any configuration.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ggvision.errors import GgvisionError
from ggvision_liveview.metrics import CONTENT_TYPE, Metrics
from ggvision_liveview.render import Renderer
from ggvision_liveview.state import LiveState

log = logging.getLogger(__name__)

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/live.js": ("live.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
PUBLIC = frozenset({"/healthz", "/readyz", "/live.js", "/style.css"})
HEARTBEAT_S = 1.0  # an event at least this often: stale components turn "down" on the page
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class LiveViewError(GgvisionError):
    """The live view cannot serve (its address is taken, say)."""


def _static(name: str) -> bytes:
    return (resources.files("ggvision_liveview") / "static" / name).read_bytes()


class LiveServer:
    """Owns the listening socket and the viewers' threads."""

    def __init__(
        self,
        state: LiveState,
        renderer: Renderer,
        metrics: Metrics,
        *,
        host: str,
        port: int,
        token: str = "",
        max_viewers: int = 8,
    ) -> None:
        self.state, self.renderer, self.metrics = state, renderer, metrics
        self.host, self.port, self.token = host, port, token
        self.pages = {path: (_static(name), ctype) for path, (name, ctype) in STATIC.items()}
        self.stopping = threading.Event()
        self.max_viewers = max_viewers
        self.viewers = 0  # under _lock
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"live": self})
        server = _Server6 if ":" in self.host else ThreadingHTTPServer  # ::1 is IPv6
        try:
            httpd = server((self.host, self.port), handler)
        except OSError as exc:
            raise LiveViewError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc} "
                "(set another port in the configuration)"
            ) from exc
        httpd.daemon_threads = True
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.5}, name="liveview-http"
        )
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.state.wake()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def authorized(self, path: str, query: dict[str, list[str]], header: str | None) -> bool:
        if not self.token or path in PUBLIC:
            return True
        given = (query.get("token") or [""])[0]
        if not given and header and header.startswith("Bearer "):
            given = header[len("Bearer ") :]
        return hmac.compare_digest(given.encode(), self.token.encode())

    def state_doc(self) -> dict[str, Any]:
        doc = self.state.snapshot()
        ready, _ = self.state.readiness()
        doc["ready"] = ready
        doc["viewers"] = self.viewers
        return doc

    def stream(self, handler: _Handler) -> None:
        """One viewer's event stream, until it goes away or the server stops."""
        with self._lock:
            full = self.viewers >= self.max_viewers
            if not full:
                self.viewers += 1
        if full:
            handler.plain(HTTPStatus.SERVICE_UNAVAILABLE, "too many viewers\n")
            return
        try:
            handler.send_response(HTTPStatus.OK)
            handler.send_header("Content-Type", "text/event-stream")
            handler.common_headers()
            handler.end_headers()
            if handler.command == "HEAD":
                return
            sent: dict[str, str] = {}  # camera -> the frame id this viewer has
            version = -1
            while not self.stopping.is_set():
                version = self.state.wait(version, HEARTBEAT_S)
                if self.stopping.is_set():
                    break
                doc = self.state_doc()
                for cam in doc["cameras"]:
                    name, frame_id = cam["camera"], cam["frame_id"]
                    if not frame_id or sent.get(name) == frame_id:
                        continue
                    view = self.state.frame_of(name)
                    jpeg = self.renderer.jpeg(view) if view is not None else None
                    if jpeg is not None:
                        cam["jpeg"] = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
                        sent[name] = frame_id
                data = json.dumps(doc, separators=(",", ":"))
                handler.wfile.write(f"event: state\ndata: {data}\n\n".encode())
                handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the viewer left
        finally:
            with self._lock:
                self.viewers -= 1


class _Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    live: LiveServer
    server_version = "ggvision-liveview"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args, extra={"event": "liveview.http"})

    def common_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)

    def body(self, status: HTTPStatus, data: bytes, ctype: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.common_headers()
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def plain(self, status: HTTPStatus, text: str, **headers: str) -> None:
        self.body(status, text.encode(), "text/plain; charset=utf-8", **headers)

    def json(self, status: HTTPStatus, doc: Any) -> None:
        self.body(status, json.dumps(doc).encode(), "application/json")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        live = self.live
        if not live.authorized(url.path, parse_qs(url.query), self.headers.get("Authorization")):
            self.plain(HTTPStatus.UNAUTHORIZED, "token required\n", WWW_Authenticate="Bearer")
            return
        if url.path in live.pages:
            data, ctype = live.pages[url.path]
            self.body(HTTPStatus.OK, data, ctype)
        elif url.path == "/events":
            self.close_connection = True
            live.stream(self)
        elif url.path == "/api/state":
            self.json(HTTPStatus.OK, live.state_doc())
        elif url.path == "/metrics":
            self.body(HTTPStatus.OK, live.metrics.render(), CONTENT_TYPE)
        elif url.path == "/healthz":
            self.plain(HTTPStatus.OK, "ok\n")
        elif url.path == "/readyz":
            ready, reasons = live.state.readiness()
            status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
            self.json(status, {"ready": ready, "reasons": reasons})
        else:
            self.plain(HTTPStatus.NOT_FOUND, "not found\n")

    def _refuse(self) -> None:
        self.plain(HTTPStatus.METHOD_NOT_ALLOWED, "read-only\n", Allow="GET, HEAD")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

"""The daemon's plain HTTP side, on the websocket port: the web page, ``/healthz``, ``/metrics``.

:class:`HttpRoutes` is the websocket server's ``process_request`` hook: it answers plain
GETs itself and lets websocket handshakes on ``/`` through, once their ``Origin`` is one
the daemon accepts (no ``Origin``: a program; ``--allow-origin``; or the page's own
origin, the host and port the browser asked for, when that is this machine or the daemon
has a token). A GET of ``/`` without ``Upgrade: websocket`` is the page
(:mod:`streamer.web`); its static files are under ``/web/``.
"""

from __future__ import annotations

import email.utils
import http
import json
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .metrics import CONTENT_TYPE_LATEST
from .options import is_loopback

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from .app import Server

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
ASSETS = "/web/"
PAGE_HEADERS = {
    # The token may be in the page's URL: never send it on as a referrer.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'",
}


def load_files() -> dict[str, tuple[bytes, str]]:
    """The page's files (package data of :mod:`streamer.web`): name -> (bytes, type)."""
    folder = resources.files("streamer.web")
    files = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in TYPES:
            files[entry.name] = (entry.read_bytes(), TYPES[suffix])
    return files


def page_url(host: str, port: int, token: str | None) -> str:
    """The page's address as ``streamer serve`` prints it (the token left as a placeholder)."""
    if host in ("", "0.0.0.0", "::"):
        import socket

        host = socket.gethostname()
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + ("?token=YOUR_TOKEN" if token else "")


class HttpRoutes:
    """``process_request`` for the daemon's websocket server."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.files = load_files()
        self.allowed = set(server.options.allowed_origins)

    def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/healthz":
            body = self.server.health()
            healthy = body["status"] == "ok"
            status = http.HTTPStatus.OK if healthy else http.HTTPStatus.SERVICE_UNAVAILABLE
            return respond(status, json.dumps(body) + "\n", "application/json")
        if path == "/metrics":
            if not self._authorized(request):
                return respond(
                    http.HTTPStatus.UNAUTHORIZED,
                    "send the token: Authorization: Bearer TOKEN, or /metrics?token=TOKEN\n",
                )
            return respond(http.HTTPStatus.OK, self.server.exposition(), CONTENT_TYPE_LATEST)
        if path.startswith(ASSETS) and path[len(ASSETS) :] in self.files:
            body, content_type = self.files[path[len(ASSETS) :]]
            return respond(http.HTTPStatus.OK, body, content_type, PAGE_HEADERS)
        if path != "/":
            return respond(
                http.HTTPStatus.NOT_FOUND,
                "not found: the web page and the websocket endpoint are /; also GET /healthz "
                "and /metrics\n",
            )
        if "websocket" not in request.headers.get("Upgrade", "").lower():
            return self._page(request)
        origin = request.headers.get("Origin")
        if origin is not None and not self.origin_ok(origin, request.headers.get("Host", "")):
            return respond(
                http.HTTPStatus.FORBIDDEN,
                f"origin {origin} is not allowed; start the daemon with --allow-origin "
                f"{origin} to let that page connect\n",
            )
        return None  # the websocket handshake

    def origin_ok(self, origin: str, host: str) -> bool:
        """An origin in ``--allow-origin``, or the page's own: the address the browser
        connected to, when that is a loopback name (a daemon without a token listens on
        loopback only, so another site's name pointed at 127.0.0.1 is refused) or when the
        daemon has a token (which that site does not know)."""
        if origin in self.allowed:
            return True
        hostname = urlsplit(f"//{host}").hostname or ""
        own = origin in (f"http://{host}", f"https://{host}")
        return own and (bool(self.server.options.token) or is_loopback(hostname))

    def _authorized(self, request: Request) -> bool:
        return self.server.token_ok(self.server.request_token(request))

    def _page(self, request: Request) -> Response:
        if self._authorized(request):
            body, content_type = self.files["index.html"]
            return respond(http.HTTPStatus.OK, body, content_type, PAGE_HEADERS)
        body, content_type = self.files["token.html"]
        return respond(http.HTTPStatus.UNAUTHORIZED, body, content_type, PAGE_HEADERS)


def respond(
    status: http.HTTPStatus,
    body: str | bytes,
    content_type: str = "text/plain; charset=utf-8",
    headers: dict[str, str] | None = None,
) -> Response:
    data = body.encode() if isinstance(body, str) else body
    fields = Headers(
        {
            "Date": email.utils.formatdate(usegmt=True),
            "Connection": "close",
            "Content-Type": content_type,
            "Content-Length": str(len(data)),
            **(headers or {}),
        }
    )
    return Response(status.value, status.phrase, fields, data)

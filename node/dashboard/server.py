"""The dashboard's HTTP server: stdlib ``http.server`` in a thread, loopback only.

Two routes, both behind the node's operator token (``admin.token``), given either as
``?token=...`` or as ``Authorization: Bearer ...`` and compared in constant time:

``GET /``           the page (HTML, CSS and JS inline; nothing is fetched from elsewhere)
``GET /api/state``  the JSON snapshot of :func:`node.dashboard.state.build_state`

The request threads never touch asyncio objects: each ``/api/state`` hands a collector to
the daemon's event loop with :func:`asyncio.run_coroutine_threadsafe` and waits for the
result, so the snapshot is taken between two loop steps like an admin call is.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import secrets
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from node.base.address import format_host_port, parse_host_port
from node.base.logs import log

__all__ = ["DashboardError", "DashboardServer"]

STATE_TIMEOUT_S = 5.0


class DashboardError(Exception):
    """The dashboard cannot be served; ``str()`` is one line."""


def _page_template() -> str:
    return resources.files("node.dashboard").joinpath("index.html").read_text(encoding="utf-8")


def _loopback_host(host_header: str) -> bool:
    """True when the ``Host`` header names a loopback host (defeats DNS rebinding)."""
    host = host_header.strip()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    else:
        host = host.rpartition(":")[0] if host.count(":") == 1 else host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "fednode-dashboard"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes every request to stderr, token in the query string included.
        log.debug(
            "dashboard request",
            extra={"fields": {"path": urlsplit(self.path).path, "client": self.client_address[0]}},
        )

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        # The token travels in the page URL: never leak it to another origin.
        self.send_header("Referrer-Policy", "no-referrer")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: HTTPStatus, data: Any, extra: dict[str, str] | None = None) -> None:
        body = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
        self._send(status, body, "application/json", extra)

    def _authorized(self, query: dict[str, list[str]]) -> bool:
        supplied = ""
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            supplied = header[len("Bearer ") :].strip()
        elif query.get("token"):
            supplied = query["token"][0]
        return hmac.compare_digest(supplied.encode(), self.server.token.encode())

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not _loopback_host(self.headers.get("Host", "")):
            self._json(HTTPStatus.MISDIRECTED_REQUEST, {"error": "Host must be a loopback name"})
            return
        if not self._authorized(query):
            self.server.on_reject()
            self._json(
                HTTPStatus.UNAUTHORIZED,
                {
                    "error": "missing or wrong token: open http://HOST:PORT/?token=<admin.token> "
                    "(the token is in admin.token in the node's data dir)"
                },
                {"WWW-Authenticate": 'Bearer realm="fednode"'},
            )
            return
        if url.path == "/":
            self._page()
        elif url.path == "/api/state":
            self._state()
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {url.path}"})

    def _page(self) -> None:
        nonce = secrets.token_urlsafe(16)
        body = self.server.page.replace("__NONCE__", nonce).encode()
        csp = (
            "default-src 'none'; "
            f"script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; img-src 'self' data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
        self._send(
            HTTPStatus.OK, body, "text/html; charset=utf-8", {"Content-Security-Policy": csp}
        )

    def _state(self) -> None:
        try:
            state = self.server.snapshot()
        except Exception as exc:  # the daemon is stopping or its loop is busy
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"node state unavailable: {exc}"})
            return
        self._json(HTTPStatus.OK, state)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    token: str
    page: str
    snapshot: Callable[[], dict[str, Any]]
    on_reject: Callable[[], None]


class _Server6(_Server):
    address_family = socket.AF_INET6


class DashboardServer:
    """The per-node dashboard over HTTP on loopback.

    Parameters
    ----------
    address : str
        Loopback ``HOST:PORT`` to bind; port 0 picks a free port.
    token : str
        The operator token every request must carry.
    collect : callable
        Returns the ``/api/state`` dict; always called on ``loop``.
    loop : asyncio.AbstractEventLoop
        The daemon's event loop.
    on_reject : callable, optional
        Called (in a request thread) for every request refused for its token; default none.
    """

    def __init__(
        self,
        address: str,
        token: str,
        collect: Callable[[], dict[str, Any]],
        loop: asyncio.AbstractEventLoop,
        on_reject: Callable[[], None] | None = None,
    ) -> None:
        if not token:
            raise DashboardError("the dashboard needs a non-empty token")
        self.host, self._port = parse_host_port(address)
        self._collect = collect
        self._loop = loop
        self._token = token
        self._on_reject = on_reject or (lambda: None)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def _snapshot(self) -> dict[str, Any]:
        if self._loop.is_closed():
            raise DashboardError("the node is stopping")

        async def collect() -> dict[str, Any]:
            return self._collect()

        future = asyncio.run_coroutine_threadsafe(collect(), self._loop)
        try:
            return future.result(STATE_TIMEOUT_S)
        except TimeoutError:
            future.cancel()
            raise

    def start(self) -> None:
        """Bind and serve in a daemon thread; raise :class:`DashboardError` if it cannot."""
        server_cls = _Server6 if ":" in self.host else _Server
        try:
            httpd = server_cls((self.host, self._port), _Handler)
        except OSError as exc:
            address = format_host_port(self.host, self._port)
            raise DashboardError(f"cannot serve the dashboard on {address}: {exc}") from None
        httpd.token = self._token
        httpd.page = _page_template()
        httpd.snapshot = self._snapshot
        httpd.on_reject = self._on_reject
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="dashboard", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._httpd is None:
            raise DashboardError("the dashboard is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://HOST:PORT/`` without the token."""
        return f"http://{format_host_port(self.host, self.port)}/"

    def url_with_token(self) -> str:
        """The URL an operator opens: ``http://HOST:PORT/?token=...``."""
        return f"{self.url}?token={quote(self._token, safe='')}"

    async def stop(self) -> None:
        """Stop serving and close the socket (waits up to one poll interval)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        # shutdown() blocks until serve_forever notices; keep the loop free meanwhile,
        # since a request thread may be waiting on it for a snapshot.
        await asyncio.to_thread(httpd.shutdown)
        with contextlib.suppress(OSError):
            httpd.server_close()

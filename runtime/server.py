"""The real-time server: the page from ``client_web/``, ``/healthz``, ``/metrics``, one session per ``/ws``.

``websockets`` (asyncio API) serves everything on one port; its ``process_request`` hook answers
plain HTTP requests (static files, health) and lets ``/ws`` upgrade. Each socket gets a
:class:`~vlogger.runtime.session.Session` with its own peer connection and pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http
import importlib
import json
import logging
import mimetypes
import signal
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from vlogger.runtime.access import Access
from vlogger.runtime.agent import agent_access, serve_agent
from vlogger.runtime.brains import make_brain
from vlogger.runtime.capacity import session_capacity
from vlogger.runtime.engine_factory import EngineFactory
from vlogger.runtime.metrics import CONTENT_TYPE, ServerMetrics
from vlogger.runtime.protocol import error_event
from vlogger.runtime.server_config import ServerConfig
from vlogger.runtime.session import Session

__all__ = ["CLIENT_DIR", "VloggerServer", "enable_loopback_ice"]

_LOG = logging.getLogger(__name__)

#: The browser page's folder (index.html, app.js, style.css).
CLIENT_DIR = Path(__file__).resolve().parent.parent / "client_web"
_STATIC = {".html", ".js", ".css", ".png", ".jpg", ".svg", ".ico"}


def enable_loopback_ice() -> None:
    """Make aioice offer 127.0.0.1 as a host candidate too (it leaves loopback out).

    Process-wide (aioice reads a module function); idempotent. For same-machine tests only.
    """
    import aioice.ice

    original = aioice.ice.get_host_addresses
    if getattr(original, "_vlogger_loopback", False):
        return

    @functools.wraps(original)
    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = list(original(use_ipv4, use_ipv6))
        if use_ipv4 and "127.0.0.1" not in addresses:
            addresses.insert(0, "127.0.0.1")
        return addresses

    with_loopback._vlogger_loopback = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = with_loopback


def _text(status: http.HTTPStatus, message: str) -> Response:
    return _response(status, (message + "\n").encode(), "text/plain; charset=utf-8")


def _static_files(folder: Path) -> dict[str, tuple[str, bytes]]:
    """The page's files by URL path (read once: requests never touch the file system)."""
    out: dict[str, tuple[str, bytes]] = {}
    if folder.is_dir():
        for f in sorted(folder.iterdir()):
            if f.suffix in _STATIC and f.is_file():
                out[f.name] = (f.name, f.read_bytes())
    return out


def _response(status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


class VloggerServer:
    """``await server.start()`` then ``await server.stop()`` (or :meth:`serve_forever`)."""

    def __init__(
        self,
        engines: EngineFactory,
        config: ServerConfig | None = None,
        version: str = "0",
        static_dir: Path = CLIENT_DIR,
    ) -> None:
        self.engines = engines
        self.config = config or ServerConfig()
        self.version = version
        self.static_dir = static_dir
        self.sessions: dict[str, Session] = {}
        self.default_avatar: Any = None
        self.access = Access(self.config.token, self.config.allowed_origins, self.config.host)
        self.max_sessions = self.config.max_sessions or 1
        """Concurrent sessions (``ServerConfig.max_sessions``, or the measured capacity)."""
        self.metrics = ServerMetrics(open_sessions=lambda: len(self.sessions))
        """This server's Prometheus metrics (``GET /metrics``, its own registry)."""
        self._static = _static_files(static_dir)
        self._server: Server | None = None
        self._opened = 0
        self._opening = 0

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        host = self.config.host
        host = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host in ("::", "[::]") else host
        return f"http://{f'[{host}]' if ':' in host and not host.startswith('[') else host}:{self.port}/"

    async def start(self) -> None:
        """Fit the default avatar, then listen."""
        if self.config.loopback_ice:
            enable_loopback_ice()
        self.default_avatar = await asyncio.to_thread(self.engines.load_avatar, None)
        await asyncio.to_thread(importlib.import_module, "scipy.signal")  # the resampler, 0.5 s to import
        await asyncio.to_thread(self.engines.prepare)  # the voice, motion models, render processes
        if self.config.listen_enabled:  # whisper loads in about a second: not in the first session
            await asyncio.to_thread(self.engines.make_asr)
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            max_size=self.config.max_message_bytes,
            max_queue=16,
            compression=None,
            close_timeout=min(self.config.websocket_close_timeout_s, self.config.close_timeout_s),
            ping_interval=self.config.keepalive_s,
            ping_timeout=self.config.keepalive_timeout_s,
        )
        self.access.bind(self.port)
        if self.config.max_sessions is None:
            height = int(self.default_avatar.image.shape[0])
            self.max_sessions = session_capacity(height)
        _LOG.info("serving on %s (up to %d sessions)", self.url, self.max_sessions)

    async def stop(self) -> None:
        """Close every session and the listening socket."""
        if self._server is not None:
            self._server.close(close_connections=False)
        sessions = list(self.sessions.values())
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), self.config.close_timeout_s)
            self._server = None
        await asyncio.to_thread(self.engines.close)

    async def serve_forever(self) -> None:
        """Start, serve until SIGINT or SIGTERM, then shut down cleanly."""
        await self.start()
        await self.serve_until_signal()

    async def serve_until_signal(self) -> None:
        """Serve (already started) until SIGINT or SIGTERM, then close every session."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            _LOG.info("shutting down (%d sessions)", len(self.sessions))
            await self.stop()

    # ---- HTTP ------------------------------------------------------------------------------
    def login_url(self) -> str:
        """The one-time browser login link (with ``--token``); a used one is replaced."""
        return f"{self.url}login?code={self.access.login_code}"

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        try:
            return self._route(connection, request)
        except Exception:  # an odd request must cost one 400, never a traceback per request
            _LOG.warning("bad HTTP request %.80r", request.path)
            return _text(http.HTTPStatus.BAD_REQUEST, "bad request")

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        if path in ("/ws", "/agent") and not self.access.origin_ok(request):
            return _text(
                http.HTTPStatus.FORBIDDEN,
                "cross-origin WebSocket refused (allow the page's origin with --allowed-origin)",
            )
        if path == "/agent":
            denied = agent_access(request, connection.remote_address, self.config.token)
            if denied is not None:
                status, reason = denied
                return _text(http.HTTPStatus(status), reason)
            return None
        if path in ("/ws", "/metrics"):
            if not self.access.authorized(request):
                return _text(
                    http.HTTPStatus.UNAUTHORIZED,
                    "this server needs its token: 'Authorization: Bearer <token>', or log in once "
                    "in the browser with the link the server printed",
                )
            if path == "/metrics":
                return _response(http.HTTPStatus.OK, self.metrics.exposition(), CONTENT_TYPE)
            return None
        if path == "/healthz":
            body = json.dumps({"status": "ok", "version": self.version, "sessions": len(self.sessions)})
            return _response(http.HTTPStatus.OK, body.encode(), "application/json")
        if path == "/auth":
            info = {**self.access.describe(), "logged_in": self.access.authorized(request)}
            return _response(http.HTTPStatus.OK, json.dumps(info).encode(), "application/json")
        if path == "/login":
            ok, message = self.access.login(query)
            if not ok:
                return _text(http.HTTPStatus.UNAUTHORIZED, message)
            _LOG.warning("browser logged in (%s); the next one-time link: %s", message, self.login_url())
            response = _text(http.HTTPStatus.SEE_OTHER, message)
            response.headers["Location"] = "/"
            response.headers["Set-Cookie"] = self.access.cookie_header()
            return response
        static = self._static.get("index.html" if path in ("/", "") else path.lstrip("/"))
        if static is None:
            return _text(http.HTTPStatus.NOT_FOUND, "not found")
        name, content = static
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        return _response(http.HTTPStatus.OK, content, ctype)

    # ---- WebSocket -------------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path.split("?", 1)[0] if ws.request is not None else "/ws"
        if path == "/agent":
            await serve_agent(ws, self)
            return
        await self.run_session(ws)

    async def run_session(self, ws: ServerConnection, headless: bool = False) -> None:
        """Run one session on ``ws`` until it closes (``headless``: created by an agent)."""
        limit = self.max_sessions
        if len(self.sessions) + self._opening >= limit:
            msg = (
                f"the server holds its maximum of {limit} sessions (the capacity measured for this "
                "size on this machine; vlogger serve --max-sessions changes it)"
            )
            self.metrics.sessions_refused.labels("server_busy").inc()
            with contextlib.suppress(Exception):
                await ws.send(json.dumps(error_event("server_busy", msg)))
                await ws.close(1013, "server busy")
            return
        self._opened += 1  # each session idles differently (blinks, gaze), reproducibly
        session = Session(
            ws,
            self.engines,
            self.default_avatar,
            self.config,
            self.version,
            index=self._opened - 1,
            brain=None if headless else make_brain(self.config.brain),
            headless=headless,
            metrics=self.metrics,
        )
        self._opening += 1
        try:
            await session.build()
        except Exception as exc:
            _LOG.exception("session %s could not start", session.id)
            self.metrics.sessions_refused.labels("start_failed").inc()
            with contextlib.suppress(Exception):
                await ws.send(json.dumps(error_event("internal", f"the session could not start: {exc}")))
                await ws.close(1011, "session could not start")
            return
        finally:
            self._opening -= 1
        self.sessions[session.id] = session
        self.metrics.sessions_started.inc()
        _LOG.info("session %s opened (%d open)", session.id, len(self.sessions))
        try:
            await session.run()
        finally:
            self.sessions.pop(session.id, None)
            self.metrics.session_closed(session.id)
            _LOG.info("session %s ended (%d open)", session.id, len(self.sessions))

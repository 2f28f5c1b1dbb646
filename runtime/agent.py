"""The ``/agent`` WebSocket: a chat agent drives a session (see docs/protocol.md).

Access: with a token (``vlogger serve --token T`` or ``VLOGGER_TOKEN``) every agent must send
``Authorization: Bearer T`` (compared in constant time); without one only loopback peers may
connect. Browsers from other origins are refused either way.

After connecting, the agent sends ``{"type":"attach","session":ID}`` (a page's session) or
``{"type":"create"}`` (a headless session of its own, whose ``/ws`` protocol then runs on this
socket). An attached agent receives the session's ``user``, ``transcript``, ``utterance``,
``avatar`` and ``connection`` events and sends ``say``, ``audio.*`` + binary PCM and
``interrupt``; while it is attached the built-in brain is silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from vlogger.runtime.access import is_loopback
from vlogger.runtime.protocol import error_event, event

__all__ = ["AgentLink", "agent_access", "serve_agent"]

_LOG = logging.getLogger(__name__)


def agent_access(request: Request, remote: Any, token: str | None) -> tuple[int, str] | None:
    """``None`` when the agent may connect, else ``(HTTP status, reason)``."""
    if token:
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())
        if not ok:
            return 401, "the agent socket needs 'Authorization: Bearer <token>' with the server's token"
        return None
    host = remote[0] if isinstance(remote, tuple) and remote else ""
    if not is_loopback(str(host)):
        return 403, "without --token the agent socket is open to this machine (loopback) only"
    return None


class AgentLink:
    """One attached agent: a bounded queue of events and the task that sends them."""

    def __init__(self, ws: ServerConnection, queue_size: int) -> None:
        self.ws = ws
        self.session_id: str | None = None
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=queue_size)
        self._task = asyncio.ensure_future(self._send())
        self._closer: asyncio.Future[None] | None = None
        self.closed = False

    def put(self, ev: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            self._queue.put_nowait(ev)
        except asyncio.QueueFull:
            _LOG.warning("agent does not read its events; closing it")
            self.closed = True
            self._closer = asyncio.ensure_future(self._close(1008, "slow_client"))

    def session_closed(self, session_id: str) -> None:
        """The page's session ended: tell the agent, then end its socket."""
        self.put(event("detached", session=session_id, reason="the session closed"))
        self.put(None)  # type: ignore[arg-type]

    async def _send(self) -> None:
        with contextlib.suppress(ConnectionClosed, asyncio.CancelledError):
            while True:
                ev = await self._queue.get()
                if ev is None:
                    await self._close(1000, "session closed")
                    return
                await self.ws.send(json.dumps(ev))

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code, reason), 1.0)
        self.ws.transport.abort()

    async def stop(self) -> None:
        self.closed = True
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task


async def serve_agent(ws: ServerConnection, server: Any) -> None:
    """Run one ``/agent`` connection until it closes (``server`` is the VloggerServer)."""
    cfg = server.config
    link: AgentLink | None = None
    session: Any = None
    try:
        async for message in ws:
            if session is not None:
                await session.agent_message(message, link)
                if session.closed.is_set():
                    break
                continue
            reply = await _first_message(ws, server, message)
            if reply is None:  # a headless session ran on this socket and ended
                return
            if isinstance(reply, dict):
                await ws.send(json.dumps(reply))
                continue
            session = reply
            link = AgentLink(ws, cfg.agent_event_queue_size)
            link.session_id = session.id
            session.attach(link)
            link.put(event("attached", session=session.id, version=server.version))
    except ConnectionClosed:
        pass
    finally:
        if session is not None and link is not None:
            session.detach(link)
        if link is not None:
            await link.stop()


async def _first_message(ws: ServerConnection, server: Any, message: str | bytes) -> Any:
    """Handle ``attach``/``create``: the session to attach to, an error event, or ``None`` once a
    created session has run to its end."""
    if isinstance(message, bytes):
        return error_event("not_attached", "send attach or create before audio")
    try:
        obj = json.loads(message)
    except ValueError:
        return error_event("bad_json", "message is not valid JSON")
    if not isinstance(obj, dict):
        return error_event("bad_json", "message must be a JSON object")
    kind = obj.get("type")
    if kind == "create":
        return await server.run_session(ws, headless=True)
    if kind == "attach":
        sid = obj.get("session")
        if not isinstance(sid, str):
            return error_event("bad_message", "attach needs a string 'session' (the id of a session event)")
        session = server.sessions.get(sid)
        if session is None or session.headless:
            return error_event("unknown_session", f"no open session {sid[:40]!r} to attach to")
        if len(session.agents) >= server.config.max_agents_per_session:
            return error_event(
                "bad_state", f"session {sid} already has {server.config.max_agents_per_session} agents"
            )
        return session
    if isinstance(kind, str) and kind in ("say", "interrupt", "audio.start", "audio.end", "avatar", "offer"):
        return error_event("not_attached", f"send attach or create before {kind}")
    return error_event("unknown_type", "the agent socket starts with attach or create")

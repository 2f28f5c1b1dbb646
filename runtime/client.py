"""A small async client of the ``/agent`` socket, so an agent is a few lines::

    from vlogger.runtime.client import connect

    async with connect("ws://127.0.0.1:8080/agent", token=None, session=SESSION_ID) as session:
        async for event in session:
            if event["type"] == "transcript" and event["final"]:
                await session.say(f"You said: {event['text']}")

Without ``session`` the client creates a headless session of its own (the ``session`` event is
then in :attr:`AgentSession.info`). See docs/protocol.md for every event.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

__all__ = ["AgentError", "AgentSession", "connect"]


class AgentError(RuntimeError):
    """The server refused the connection or the attach."""


def _agent_url(url: str) -> str:
    if url.startswith("http://"):
        url = "ws://" + url[len("http://") :]
    elif url.startswith("https://"):
        url = "wss://" + url[len("https://") :]
    if not url.rstrip("/").endswith("/agent"):
        url = url.rstrip("/") + "/agent"
    return url


class AgentSession:
    """One attached (or created) session; iterate it for events, call :meth:`say` to speak."""

    def __init__(self, ws: Any, info: dict[str, Any]) -> None:
        self.ws = ws
        self.info = info
        """The ``attached`` (or ``session``) event."""
        self.id: str = info.get("session") or info.get("id") or ""
        self._ids = itertools.count(1)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._events()

    async def _events(self) -> AsyncIterator[dict[str, Any]]:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            async for msg in self.ws:
                if isinstance(msg, str):
                    yield json.loads(msg)

    async def send(self, obj: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(obj))

    async def say(self, text: str, id: str | None = None) -> str:
        """Queue ``text``; returns the utterance id used in its ``utterance`` events."""
        uid = id or f"agent{next(self._ids)}"
        await self.send({"type": "say", "id": uid, "text": text})
        return uid

    async def interrupt(self) -> None:
        """Stop what the avatar is saying and everything queued."""
        await self.send({"type": "interrupt"})

    async def play(
        self, pcm: np.ndarray, sample_rate: int, id: str | None = None, piece_s: float = 0.1
    ) -> str:
        """Send speech as an ``audio.*`` segment (mono float in [-1, 1] or int16)."""
        uid = id or f"agent{next(self._ids)}"
        x = np.asarray(pcm)
        if x.dtype != np.int16:
            x = (np.clip(x.astype(np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)
        await self.send({"type": "audio.start", "id": uid, "sample_rate": int(sample_rate)})
        step = max(1, int(piece_s * sample_rate))
        for k in range(0, x.size, step):
            await self.ws.send(x[k : k + step].astype("<i2").tobytes())
        await self.send({"type": "audio.end", "id": uid})
        return uid

    async def close(self) -> None:
        await self.ws.close()


@contextlib.asynccontextmanager
async def connect(
    url: str, token: str | None = None, session: str | None = None, timeout: float = 10.0
) -> AsyncIterator[AgentSession]:
    """Open ``/agent``, attach to ``session`` (or create a headless one), yield the session."""
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import InvalidStatus

    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        ws = await ws_connect(_agent_url(url), additional_headers=headers, max_size=None)
    except InvalidStatus as exc:
        raise AgentError(f"the server refused the agent socket: HTTP {exc.response.status_code}") from exc
    try:
        await ws.send(json.dumps({"type": "attach", "session": session} if session else {"type": "create"}))
        want = "attached" if session else "session"
        while True:
            ev = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            if ev.get("type") == "error":
                raise AgentError(f"{ev.get('code')}: {ev.get('message')}")
            if ev.get("type") == want:
                break
        yield AgentSession(ws, ev)
    finally:
        await ws.close()

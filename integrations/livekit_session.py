"""A vlogger avatar for a LiveKit agent in a few lines: the agent-side ``AvatarSession`` plugin.

::

    from vlogger.integrations.livekit_session import AvatarSession

    avatar = AvatarSession(worker_url="http://127.0.0.1:8090", photo="me.jpg")
    await avatar.start(session, room=ctx.room)  # before or after session.start(...)

:meth:`AvatarSession.start` mints the avatar's LiveKit token with the API key and secret the agent
already has (``LIVEKIT_API_KEY`` / ``LIVEKIT_API_SECRET``): identity ``vlogger-avatar-<room>``,
kind ``agent``, ``roomJoin`` to the agent's room with publish/subscribe/data grants, and the
attribute ``lk.publish_on_behalf`` = the agent's identity, so LiveKit's frontends show the
avatar's tracks as the agent's. It posts the token (and the photo, base64) to a
``vlogger livekit-worker`` (:mod:`vlogger.integrations.livekit_worker`), which verifies the token
with the same key and secret and joins the room, then routes the agent's speech to the avatar
(``DataStreamAudioOutput``; the avatar answers ``lk.playback_started``/``lk.playback_finished``).
If the worker refuses or cannot join, ``start`` raises :class:`AvatarWorkerError` and the agent's
audio output is left as it was.

Metrics: LiveKit's base class reports ``AvatarMetrics`` (the avatar's join time, playback latency)
as ``metrics_collected`` on the avatar session and the agent session, with provider ``vlogger``.

Tested here (``tests/test_livekit_worker.py``): the token (identity, kind, grants, attribute,
expiry, decoded with ``TokenVerifier``) and the request to a real worker endpoint on 127.0.0.1.
Not tested here (no LiveKit server runs on these machines): the agent's audio reaching the avatar
in a room; ``examples/livekit_room_check.py`` checks it against a real server.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from livekit import api, rtc
from livekit.agents.job import get_job_context
from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF
from livekit.agents.voice.avatar import AvatarSession as _BaseAvatarSession
from livekit.agents.voice.avatar import DataStreamAudioOutput

if TYPE_CHECKING:
    from livekit.agents.voice import AgentSession

__all__ = ["DEFAULT_WORKER_URL", "AvatarSession", "AvatarWorkerError", "avatar_token"]

#: Where the plugin looks for the worker when neither ``worker_url`` nor ``VLOGGER_WORKER_URL`` says.
DEFAULT_WORKER_URL = "http://127.0.0.1:8090"
_MAX_PHOTO_BYTES = 8 * 2**20
_TRY_NEXT = frozenset({"worker_busy", "worker_stopping", "unreachable"})
"""Refusals after which the next worker is asked."""


class AvatarWorkerError(RuntimeError):
    """The worker refused the avatar or could not be reached: ``status`` (HTTP, 0 when no answer
    came) and ``code`` (the worker's error code, e.g. ``worker_busy``, ``join_failed``)."""

    def __init__(self, message: str, status: int = 0, code: str = "unreachable") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def avatar_token(
    *,
    api_key: str,
    api_secret: str,
    room: str,
    identity: str,
    agent_identity: str,
    name: str = "",
    ttl_s: float = 300.0,
) -> str:
    """The avatar's LiveKit access token: kind ``agent``, ``roomJoin`` to ``room`` with publish,
    subscribe and data grants, ``lk.publish_on_behalf`` = ``agent_identity``, valid ``ttl_s``."""
    token = (
        api.AccessToken(api_key, api_secret)
        .with_kind("agent")
        .with_identity(identity)
        .with_name(name or identity)
        .with_grants(
            api.VideoGrants(
                room_join=True, room=room, can_publish=True, can_subscribe=True, can_publish_data=True
            )
        )
        .with_attributes({ATTRIBUTE_PUBLISH_ON_BEHALF: agent_identity})
        .with_ttl(datetime.timedelta(seconds=ttl_s))
    )
    return token.to_jwt()


class AvatarSession(_BaseAvatarSession):
    """A vlogger avatar in a LiveKit agent's room, served by a ``vlogger livekit-worker``.

    ``worker_url``: the worker's HTTP endpoint, or several (a list, or comma-separated in
    ``VLOGGER_WORKER_URL``, the default; else ``DEFAULT_WORKER_URL``): they are asked in turn, and a
    worker that is full, stopping or unreachable passes the avatar to the next one (any other
    refusal, e.g. a bad token, is raised at once). ``photo``: the avatar's photo (encoded bytes or a
    path on the agent's machine, at most 8 MiB; ``None``: the worker's default).
    ``avatar_identity``: the avatar's participant identity (default ``vlogger-avatar-<room>``).
    ``api_key``/``api_secret``: to sign its token (default ``LIVEKIT_API_KEY``/``LIVEKIT_API_SECRET``,
    as the worker's).
    ``sample_rate``: the rate the agent's speech is sent at (``None``: the TTS's own; the avatar
    takes 8 to 48 kHz). ``token_ttl_s``: how long the token is valid for the worker to join.
    ``request_timeout_s``: how long the worker may take to build the avatar and join.
    """

    def __init__(
        self,
        *,
        worker_url: str | Sequence[str] | None = None,
        photo: bytes | str | Path | None = None,
        avatar_identity: str | None = None,
        avatar_name: str = "vlogger avatar",
        api_key: str | None = None,
        api_secret: str | None = None,
        sample_rate: int | None = None,
        token_ttl_s: float = 300.0,
        request_timeout_s: float = 120.0,
        http_session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__()
        given = worker_url or os.environ.get("VLOGGER_WORKER_URL") or DEFAULT_WORKER_URL
        urls = given.split(",") if isinstance(given, str) else list(given)
        self.worker_urls = [u.strip().rstrip("/") for u in urls if u.strip()]
        """The workers asked, in turn."""
        if not self.worker_urls:
            raise ValueError("worker_url names no worker")
        for u in self.worker_urls:
            if not u.startswith(("http://", "https://")):
                raise ValueError(f"worker_url {u!r} must start with http:// or https://")
        self.worker_url = self.worker_urls[0]
        """The worker that took the avatar (before ``start``: the first one asked)."""
        self._api_key = api_key or os.environ.get("LIVEKIT_API_KEY", "")
        self._api_secret = api_secret or os.environ.get("LIVEKIT_API_SECRET", "")
        if not self._api_key or not self._api_secret:
            raise ValueError(
                "the LiveKit API key and secret are needed: pass api_key/api_secret or set "
                "LIVEKIT_API_KEY and LIVEKIT_API_SECRET"
            )
        if isinstance(photo, bytes) and len(photo) > _MAX_PHOTO_BYTES:
            raise ValueError(f"the photo has {len(photo)} bytes; the worker takes at most {_MAX_PHOTO_BYTES}")
        self._photo = photo
        self._requested_identity = avatar_identity
        self._identity = avatar_identity or "vlogger-avatar"
        self._name = avatar_name
        self._sample_rate = sample_rate
        self._ttl_s = float(token_ttl_s)
        self._timeout_s = float(request_timeout_s)
        self._http = http_session
        self.worker_session: dict[str, Any] | None = None
        """The worker's answer once started: ``session_id``, ``room``, ``identity``, ``video``, ..."""

    @property
    def avatar_identity(self) -> str:
        return self._identity

    @property
    def provider(self) -> str:
        return "vlogger"

    def _photo_base64(self) -> str | None:
        photo = self._photo
        if photo is None:
            return None
        if not isinstance(photo, bytes):
            path = Path(photo)
            size = path.stat().st_size
            if size > _MAX_PHOTO_BYTES:
                raise ValueError(f"{path} has {size} bytes; the worker takes at most {_MAX_PHOTO_BYTES}")
            photo = path.read_bytes()
        return base64.b64encode(photo).decode("ascii")

    async def request_avatar(self, room_name: str, agent_identity: str) -> dict[str, Any]:
        """Ask the workers in turn to join ``room_name`` as this avatar for ``agent_identity``;
        the answer of the one that did (see :mod:`~vlogger.integrations.livekit_worker`), or
        :class:`AvatarWorkerError` (the last worker's when all were full or unreachable)."""
        error: AvatarWorkerError | None = None
        for url in self.worker_urls:
            try:
                answer = await self._request_one(url, room_name, agent_identity)
            except AvatarWorkerError as e:
                if e.code not in _TRY_NEXT:
                    raise
                error = e
                continue
            self.worker_url = url
            return answer
        assert error is not None
        raise error

    async def _request_one(self, worker_url: str, room_name: str, agent_identity: str) -> dict[str, Any]:
        token = avatar_token(
            api_key=self._api_key,
            api_secret=self._api_secret,
            room=room_name,
            identity=self._identity,
            agent_identity=agent_identity,
            name=self._name,
            ttl_s=self._ttl_s,
        )
        body: dict[str, Any] = {"token": token}
        photo = await asyncio.to_thread(self._photo_base64)
        if photo is not None:
            body["photo"] = photo
        url = f"{worker_url}/v1/sessions"
        session = self._http or aiohttp.ClientSession()
        try:
            async with session.post(
                url, json=body, timeout=aiohttp.ClientTimeout(total=self._timeout_s)
            ) as r:
                text = await r.text()
                try:
                    answer = await r.json(content_type=None)
                except ValueError:
                    answer = None
                if r.status != 201 or not isinstance(answer, dict):
                    code = answer.get("error", "unknown") if isinstance(answer, dict) else "unknown"
                    message = answer.get("message", text) if isinstance(answer, dict) else text[:200]
                    raise AvatarWorkerError(
                        f"the avatar worker at {url} answered {r.status}: {message}", r.status, code
                    )
                return answer
        except (aiohttp.ClientError, TimeoutError) as e:
            raise AvatarWorkerError(
                f"the avatar worker at {url} could not be reached ({str(e) or 'timed out'})"
            ) from e
        finally:
            if self._http is None:
                await session.close()

    async def start(self, agent_session: AgentSession, room: rtc.Room) -> None:
        """Bring the avatar into ``room`` (connected, or inside an agent job) and route the agent's
        speech to it. Raises :class:`AvatarWorkerError` (the agent's audio is left as it was)."""
        if self.worker_session is not None:
            raise RuntimeError("AvatarSession.start() may be called once; make a new AvatarSession")
        job = get_job_context(required=False)
        if job is not None:
            agent_identity = job.local_participant_identity
        elif room.isconnected():
            agent_identity = room.local_participant.identity
        else:
            raise RuntimeError(
                "AvatarSession.start() needs a connected room or an agent job: connect the room first"
            )
        room_name = room.name or (job.job.room.name if job is not None else "")
        if not room_name:
            raise RuntimeError("the room has no name yet: connect it before AvatarSession.start()")
        self._identity = self._requested_identity or f"vlogger-avatar-{room_name}"
        await super().start(agent_session, room)
        try:
            self.worker_session = await self.request_avatar(room_name, agent_identity)
        except BaseException:
            await self.aclose()
            raise
        agent_session.output.replace_audio_tail(
            DataStreamAudioOutput(
                room,
                destination_identity=self._identity,
                sample_rate=self._sample_rate,
                wait_remote_track=rtc.TrackKind.KIND_VIDEO,
                wait_playback_start=True,
            )
        )

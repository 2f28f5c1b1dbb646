"""The LiveKit avatar worker: a small HTTP endpoint that puts a vlogger avatar into agents' rooms.

An agent (through :class:`vlogger.integrations.livekit_session.AvatarSession`) asks the worker to
join its room; the worker joins as a participant of its own, receives the agent's speech over
LiveKit's DataStream (``DataStreamAudioReceiver``: topic ``lk.audio_stream``, RPC
``lk.clear_buffer``; it answers ``lk.playback_started`` / ``lk.playback_finished``) and publishes
the avatar's video and audio through :class:`~vlogger.integrations.livekit_runner.VloggerAvatarRunner`
(LiveKit's ``AvatarRunner``) over a :class:`~vlogger.integrations.livekit.VloggerVideoGenerator`.
LiveKit's explicit agent dispatch is not used: the worker is an HTTP service like the cloud avatar
plugins' APIs, started with ``vlogger livekit-worker``.

``POST /v1/sessions`` with a JSON object:

- ``token`` (required): the LiveKit access token the avatar joins with. It is also the request's
  credential: the worker verifies it with its own API key and secret (``TokenVerifier``), so only a
  holder of the LiveKit project's secret can start a session; it must grant ``roomJoin`` to a room
  and name the agent whose speech the avatar plays in the attribute ``lk.publish_on_behalf``.
  The worker joins only its configured ``url``, never one from a request.
- ``photo`` (optional): the avatar's photo, base64 of its JPEG/PNG bytes, at most
  ``max_photo_bytes`` decoded (default: the worker's ``--image``, else the shipped portrait).
  Paths are not accepted: a caller cannot make the worker read its files.

Answers ``201`` with ``session_id``, ``room``, ``identity``, ``agent_identity`` and the video's
size and rate once the avatar has joined, or ``{"error": code, "message": ...}``: ``400``
(``bad_json``, ``bad_request``, ``bad_photo``), ``401`` (``bad_token``, ``token_expired``),
``403`` (``token_cannot_join``), ``409`` (``session_exists``, ``agent_in_use``), ``413``
(``body_too_large``, ``photo_too_large``), ``422`` (a photo without a usable face:
``bad_image``), ``502`` (``join_failed``: the LiveKit server could not be reached or refused the
token; the worker stays up), ``503`` (``worker_busy`` at ``max_sessions``, ``worker_stopping``).
``GET /v1/health`` answers the session count.

A session ends when its room disconnects, when the agent leaves, when no agent shows up within
``agent_wait_s``, or when the worker stops (SIGINT/SIGTERM: every room is left cleanly).

Tested here (``tests/test_livekit_worker.py``): the endpoint on 127.0.0.1 (the errors above but
``worker_stopping`` and ``avatar_failed``, a full worker, a join against a closed port and the next
request served), a session's end and cleanup (on a room that is not connected), the command
started and stopped by SIGTERM. Not tested here, since no LiveKit server can run on these
machines: joining a real room, receiving the DataStream and publishing;
``examples/livekit_room_check.py`` checks that path against a real server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import signal
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from livekit import api, rtc
from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF
from livekit.agents.voice.avatar import DataStreamAudioReceiver

from vlogger.engines.errors import InputError
from vlogger.integrations.livekit import VloggerVideoGenerator
from vlogger.integrations.livekit_runner import VloggerAvatarRunner
from vlogger.runtime.config import VloggerConfig
from vlogger.runtime.live_stream import start_site

__all__ = ["AvatarWorker", "GeneratorFactory", "WorkerConfig", "WorkerError", "livekit_ws_url"]

_LOG = logging.getLogger(__name__)

GeneratorFactory = Callable[[bytes | None, int], Awaitable[VloggerVideoGenerator]]
"""Builds a session's generator from the request's photo (``None``: the default) and a seed."""


@dataclass
class WorkerConfig:
    """What ``vlogger livekit-worker`` is started with."""

    url: str
    """The LiveKit server every session joins (``ws://``/``wss://``; ``http(s)://`` is mapped to
    ``ws(s)://``). Never taken from a request."""
    api_key: str
    """The LiveKit project's API key: session tokens must be issued by it."""
    api_secret: str
    """The LiveKit project's API secret: session tokens must be signed with it."""
    host: str = "127.0.0.1"
    """Interface the HTTP endpoint listens on (loopback by default)."""
    port: int = 8090
    """TCP port of the HTTP endpoint (0: any free port)."""
    max_sessions: int = 1
    """Sessions at once; one more is refused with ``worker_busy`` (503)."""
    max_body_bytes: int = 12 * 2**20
    """Largest request body accepted (a base64 photo is 4/3 of its bytes)."""
    max_photo_bytes: int = 8 * 2**20
    """Largest photo accepted, decoded."""
    connect_timeout_s: float = 15.0
    """How long one attempt to join the room may take (LiveKit tries up to 4 times; the whole join
    at most 4 times this) before the request fails with ``join_failed``."""
    agent_wait_s: float = 30.0
    """How long a joined session waits for its agent before it ends."""


class WorkerError(Exception):
    """A request the worker refuses: an HTTP status, a stable code and a message naming why."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    def response(self) -> web.Response:
        return web.json_response({"error": self.code, "message": str(self)}, status=self.status)


def livekit_ws_url(url: str) -> str:
    """``url`` as the WebSocket URL ``rtc.Room.connect`` takes; ``ValueError`` naming a bad one."""
    for http, ws in (("https://", "wss://"), ("http://", "ws://")):
        if url.startswith(http):
            url = ws + url[len(http) :]
    if not url.startswith(("ws://", "wss://")) or len(url.split("://", 1)[1]) == 0:
        raise ValueError(f"the LiveKit URL {url!r} must start with ws://, wss://, http:// or https://")
    return url


@dataclass
class _Session:
    id: str
    room_name: str
    identity: str
    agent_identity: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class AvatarWorker:
    """The worker's HTTP endpoint and its sessions (see the module docs). ``vlogger``: the avatar's
    configuration (size, fps, renderer, seed, default photo in ``server.default_image``).
    ``make_generator``: how a session's generator is built (default
    :meth:`VloggerVideoGenerator.create`; tests pass their own)."""

    def __init__(
        self,
        config: WorkerConfig,
        vlogger: VloggerConfig | None = None,
        *,
        make_generator: GeneratorFactory | None = None,
    ) -> None:
        if config.max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.config = config
        self.ws_url = livekit_ws_url(config.url)
        self.vlogger = vlogger or VloggerConfig()
        self._make_generator = make_generator or self._default_generator
        self._verifier = api.TokenVerifier(config.api_key, config.api_secret)
        self._sessions: dict[str, _Session] = {}
        self._models: Any = None
        self._started = 0
        self._stopping = False
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        """The port listened on, once started."""

    async def _default_generator(self, photo: bytes | None, seed: int) -> VloggerVideoGenerator:
        if self._models is None:  # the motion network, loaded once and shared by every session
            self._models = await asyncio.to_thread(self.vlogger.load_motion_models)
        return await VloggerVideoGenerator.create(self.vlogger, photo, seed=seed, models=self._models)

    @property
    def sessions(self) -> int:
        """Sessions joining or joined."""
        return len(self._sessions)

    @property
    def url(self) -> str:
        """The endpoint's base URL (once started)."""
        return f"http://{self.config.host}:{self.port}"

    def make_app(self) -> web.Application:
        """The aiohttp application (bounded bodies; ``POST /v1/sessions``, ``GET /v1/health``)."""
        app = web.Application(client_max_size=self.config.max_body_bytes)
        app.router.add_post("/v1/sessions", self._handle_create)
        app.router.add_get("/v1/health", self._handle_health)
        return app

    async def start(self) -> None:
        """Listen on ``host:port``; ``OSError`` if it cannot."""
        self._runner, self.port = await start_site(self.make_app(), self.config.host, self.config.port)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop taking sessions, leave every room, close the endpoint."""
        self._stopping = True
        tasks = [s.task for s in self._sessions.values() if s.task is not None]
        for s in self._sessions.values():
            s.stop.set()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def serve_until_signal(self) -> None:
        """Run until SIGINT or SIGTERM, then :meth:`stop`."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.stop()

    # -- HTTP ------------------------------------------------------------------------------------

    async def _handle_health(self, _request: web.Request) -> web.Response:
        status = "stopping" if self._stopping else "ok"
        return web.json_response(
            {"status": status, "sessions": self.sessions, "max_sessions": self.config.max_sessions}
        )

    async def _handle_create(self, request: web.Request) -> web.Response:
        try:
            return await self._create(request)
        except WorkerError as e:
            return e.response()

    async def _read_json(self, request: web.Request) -> dict[str, Any]:
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise WorkerError(413, "body_too_large", f"the request body exceeds {limit} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise WorkerError(413, "body_too_large", f"the request body exceeds {limit} bytes") from None
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise WorkerError(400, "bad_json", f"the request body is not JSON ({e})") from None
        if not isinstance(data, dict):
            raise WorkerError(400, "bad_request", "the request body must be a JSON object")
        unknown = sorted(set(data) - {"token", "photo"})
        if unknown:
            raise WorkerError(
                400, "bad_request", f"unknown field(s): {', '.join(unknown)} (known: token, photo)"
            )
        if not isinstance(data.get("token"), str) or not data["token"]:
            raise WorkerError(400, "bad_request", "missing field: token (the avatar's LiveKit access token)")
        if data.get("photo") is not None and not isinstance(data["photo"], str):
            raise WorkerError(400, "bad_photo", "photo must be a base64 string of the image's bytes")
        return data

    def _photo(self, data: dict[str, Any]) -> bytes | None:
        text = data.get("photo")
        if text is None:
            return None
        limit = self.config.max_photo_bytes
        if len(text) > (limit + 2) // 3 * 4 + 4:
            raise WorkerError(413, "photo_too_large", f"the photo exceeds {limit} bytes")
        try:
            photo = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as e:
            raise WorkerError(400, "bad_photo", f"photo is not valid base64 ({e})") from None
        if not photo:
            raise WorkerError(400, "bad_photo", "photo is empty")
        if len(photo) > limit:
            raise WorkerError(413, "photo_too_large", f"the photo exceeds {limit} bytes")
        return photo

    def _claims(self, token: str) -> api.access_token.Claims:
        try:
            claims = self._verifier.verify(token)
        except jwt.ExpiredSignatureError:
            raise WorkerError(401, "token_expired", "the LiveKit token has expired") from None
        except jwt.ImmatureSignatureError:
            raise WorkerError(401, "bad_token", "the LiveKit token is not valid yet (nbf)") from None
        except jwt.InvalidIssuerError:
            raise WorkerError(
                401, "bad_token", "the LiveKit token was issued for another API key than this worker's"
            ) from None
        except jwt.InvalidSignatureError:
            raise WorkerError(
                401, "bad_token", "the LiveKit token's signature does not match this worker's API secret"
            ) from None
        except jwt.InvalidTokenError as e:
            raise WorkerError(401, "bad_token", f"not a valid LiveKit token ({e})") from None
        video = claims.video
        if video is None or not video.room_join or not video.room or not claims.identity:
            raise WorkerError(
                403, "token_cannot_join", "the token grants no roomJoin to a room for an identity"
            )
        if not (claims.attributes or {}).get(ATTRIBUTE_PUBLISH_ON_BEHALF):
            raise WorkerError(
                403,
                "token_cannot_join",
                f"the token has no {ATTRIBUTE_PUBLISH_ON_BEHALF} attribute naming the agent "
                "the avatar speaks for",
            )
        return claims

    async def _create(self, request: web.Request) -> web.Response:
        if self._stopping:
            raise WorkerError(503, "worker_stopping", "the worker is shutting down")
        data = await self._read_json(request)
        photo = self._photo(data)
        claims = self._claims(data["token"])
        assert claims.video is not None
        room_name, identity = claims.video.room, claims.identity
        agent = (claims.attributes or {})[ATTRIBUTE_PUBLISH_ON_BEHALF]
        for s in self._sessions.values():
            if (s.room_name, s.identity) == (room_name, identity):
                raise WorkerError(409, "session_exists", f"{identity!r} is already in room {room_name!r}")
            if s.agent_identity == agent:
                # LiveKit's DataStreamAudioReceiver keeps its clear_buffer handlers per caller
                # identity for the whole process: two sessions for one agent identity would mix up
                raise WorkerError(409, "agent_in_use", f"a session already plays agent {agent!r}")
        if len(self._sessions) >= self.config.max_sessions:
            raise WorkerError(
                503, "worker_busy", f"the worker is at its limit of {self.config.max_sessions} session(s)"
            )
        session = _Session(uuid.uuid4().hex[:12], room_name, identity, agent)
        self._sessions[session.id] = session  # the slot is taken from here on
        try:
            gen, room = await self._join(session, photo, data["token"])
            if self._stopping:
                await _quietly(room.disconnect())
                await _quietly(gen.aclose())
                raise WorkerError(503, "worker_stopping", "the worker is shutting down")
        except BaseException:
            self._sessions.pop(session.id, None)
            raise
        session.task = asyncio.create_task(self._run(session, room, gen))
        _LOG.info(
            "avatar %s joined room %s for agent %s (session %s)", identity, room_name, agent, session.id
        )
        return web.json_response(
            {
                "session_id": session.id,
                "room": room_name,
                "identity": identity,
                "agent_identity": agent,
                "video": {"width": gen.width, "height": gen.height, "fps": gen.fps},
                "audio_sample_rate": gen.audio_sample_rate,
            },
            status=201,
        )

    async def _join(
        self, session: _Session, photo: bytes | None, token: str
    ) -> tuple[VloggerVideoGenerator, rtc.Room]:
        seed = self.vlogger.seed + self._started
        self._started += 1
        try:
            gen = await self._make_generator(photo, seed)
        except InputError as e:
            raise WorkerError(422 if photo is not None else 500, e.code, f"the avatar's photo: {e}") from None
        except Exception as e:
            _LOG.exception("vlogger avatar worker: building the avatar failed")
            raise WorkerError(500, "avatar_failed", f"the avatar could not be built ({e})") from None
        room = rtc.Room()
        options = rtc.RoomOptions(auto_subscribe=False, connect_timeout=self.config.connect_timeout_s)
        try:
            await asyncio.wait_for(
                room.connect(self.ws_url, token, options), self.config.connect_timeout_s * 4
            )
        except (rtc.ConnectError, TimeoutError, OSError) as e:
            await _quietly(room.disconnect())
            await _quietly(gen.aclose())
            reason = str(e) or "timed out"
            _LOG.error(
                "vlogger avatar worker: joining room %s at %s failed: %s",
                session.room_name,
                self.ws_url,
                reason,
            )
            raise WorkerError(
                502, "join_failed", f"could not join room {session.room_name!r} at {self.ws_url}: {reason}"
            ) from None
        except BaseException:
            await _quietly(room.disconnect())
            await _quietly(gen.aclose())
            raise
        return gen, room

    # -- a session -------------------------------------------------------------------------------

    async def _run(self, session: _Session, room: rtc.Room, gen: VloggerVideoGenerator) -> None:
        receiver = DataStreamAudioReceiver(room, sender_identity=session.agent_identity)
        runner = VloggerAvatarRunner(room, audio_recv=receiver, video_gen=gen, options=gen.avatar_options())
        reason = "ended"

        def on_disconnected(*_args: Any) -> None:
            session.stop.set()

        def on_participant_left(participant: rtc.RemoteParticipant) -> None:
            if participant.identity == session.agent_identity:
                session.stop.set()

        room.on("disconnected", on_disconnected)
        room.on("participant_disconnected", on_participant_left)
        stop = asyncio.create_task(session.stop.wait())
        try:
            # the receiver waits for the agent to be in the room
            start = asyncio.create_task(runner.start())
            await asyncio.wait(
                {start, stop}, timeout=self.config.agent_wait_s, return_when=asyncio.FIRST_COMPLETED
            )
            if not start.done():
                start.cancel()
                await asyncio.gather(start, return_exceptions=True)
                wait_s = self.config.agent_wait_s
                reason = (
                    "the worker stopped or the room went away"
                    if stop.done()
                    else f"agent {session.agent_identity!r} did not come within {wait_s:g} s"
                )
                return
            start.result()
            if session.agent_identity not in room.remote_participants:
                reason = "the agent left"
                return
            done = asyncio.create_task(runner.wait_for_complete())
            await asyncio.wait({done, stop}, return_when=asyncio.FIRST_COMPLETED)
            done.cancel()
            reason = "the worker stopped" if self._stopping else "the room or the agent went away"
        except Exception as e:
            reason = f"failed: {e}"
            _LOG.exception("vlogger avatar worker: session %s failed", session.id)
        finally:
            stop.cancel()
            room.off("disconnected", on_disconnected)
            room.off("participant_disconnected", on_participant_left)
            await _quietly(runner.aclose())
            await _quietly(gen.aclose())
            await _quietly(room.disconnect())
            self._sessions.pop(session.id, None)
            _LOG.info("avatar session %s in room %s ended: %s", session.id, session.room_name, reason)


async def _quietly(aw: Awaitable[Any]) -> None:
    with contextlib.suppress(Exception):
        await aw

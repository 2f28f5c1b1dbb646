"""One browser (or agent) connection: its WebSocket, peer connection, pipeline and event stream."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from vlogger.engines.asr.base import ASR
from vlogger.engines.asr.vad import SpeechProbability
from vlogger.runtime.brains import Brain
from vlogger.runtime.conversation import Conversation
from vlogger.runtime.engine_factory import EngineFactory
from vlogger.runtime.metrics import ServerMetrics, TimedEngines
from vlogger.runtime.pipeline import AudioRefused, AudioSegment, Pipeline, Utterance
from vlogger.runtime.protocol import (
    AudioEnd,
    AudioStart,
    AvatarSwitch,
    ClientMessage,
    Interrupt,
    Offer,
    ProtocolError,
    Say,
    error_event,
    event,
    parse_message,
)
from vlogger.runtime.server_config import ServerConfig
from vlogger.runtime.tracks import AvatarVideoTrack, SpeechAudioTrack
from vlogger.runtime.webrtc import StatsSampler, answer_offer, drain, ice_servers, public_ice

__all__ = ["AGENT_EVENTS", "Session", "ice_servers"]  # ice_servers: re-exported

#: Session events an attached agent receives (besides the replies to its own messages).
AGENT_EVENTS = frozenset({"user", "transcript", "utterance", "avatar", "connection"})

_LOG = logging.getLogger(__name__)
#: Text messages longer than this are parsed in a worker thread (an 8 MB one takes ~50 ms).
_PARSE_ON_LOOP_CHARS = 64 * 1024


class Session:
    """Owns everything of one ``/ws`` connection; :meth:`run` returns when it is closed and freed."""

    def __init__(
        self,
        ws: ServerConnection,
        engines: EngineFactory,
        default_avatar: Any,
        config: ServerConfig,
        version: str,
        index: int = 0,
        brain: Brain | None = None,
        headless: bool = False,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.headless = headless
        """Created by an agent over ``/agent`` (its socket is ``ws``; no built-in brain)."""
        self.ws = ws
        self.engines = engines
        self.config = config
        self.version = version
        self.loop = asyncio.get_running_loop()
        self._default_avatar = default_avatar
        self.index = index
        """The server's ``index``-th session (from 0): its motion engine's seed follows it."""
        self._brain = None if headless else brain
        self.metrics = metrics if metrics is not None else ServerMetrics()
        """The server's metrics (its stage histograms, this session's gauges)."""
        self.pipeline: Pipeline
        """The session's engines and threads (set by :meth:`build`)."""
        self.conversation: Conversation
        """Listening, barge-in and the brain (set by :meth:`build`)."""
        self.agents: set[Any] = set()
        """Attached agents (:class:`~vlogger.runtime.agent.AgentLink`), each fed ``AGENT_EVENTS``."""
        self._segment_owner: Any = None
        self.pc: RTCPeerConnection | None = None
        self.video: AvatarVideoTrack | None = None
        self.audio: SpeechAudioTrack | None = None
        self._events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=config.event_queue_size)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._segment: tuple[Utterance, AudioSegment] | None = None
        self._ids = itertools.count(1)
        self._avatar_lock = asyncio.Lock()
        self._closing = False
        self.closed = asyncio.Event()

    async def build(self) -> None:
        """Make the session's engines off the event loop (its renderer process, motion engine,
        voice: no model is loaded here, the server shares loaded ones), then its conversation."""
        stages = self.metrics.stages
        self.pipeline = await asyncio.to_thread(
            Pipeline,
            TimedEngines(self.engines, stages),  # times its voice and motion engine
            self._default_avatar,
            self.config,
            self.emit,
            self.index,
            stages,
        )
        self.conversation = Conversation(self.pipeline, self.emit, self._brain, self.config.listen)

    # ---- events ----------------------------------------------------------------------------
    def emit(self, ev: dict[str, Any]) -> None:
        """Queue an event for the client; safe from any thread."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self._put(ev)
        elif not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._put, ev)

    def _put(self, ev: dict[str, Any]) -> None:
        if self._closing:
            return
        if self.agents and ev.get("type") in AGENT_EVENTS:
            for link in list(self.agents):
                link.put(ev)
        try:
            self._events.put_nowait(ev)
        except asyncio.QueueFull:
            _LOG.warning("session %s: client does not read its events; closing", self.id)
            self._closing = True  # once: later events (and messages) are dropped, not re-aborted
            self._spawn(self._abort("slow_client"))

    async def _let_sender_catch_up(self, sender: asyncio.Task[Any]) -> None:
        """Before reading the next message, let the event sender drain a queue that a burst of
        messages (each answered by an event) filled past half, so a client that reads keeps up;
        one that does not read is closed by its keepalive or the full queue."""
        high = self._events.maxsize // 2
        if self._events.qsize() < high:
            return
        deadline = time.monotonic() + self.config.keepalive_s + self.config.keepalive_timeout_s
        while self._events.qsize() > high // 2 and not sender.done() and not self._closing:
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.005)

    async def _sender(self) -> None:
        while True:
            ev = await self._events.get()
            if ev is None:
                return
            await self.ws.send(json.dumps(ev))

    async def _abort(self, reason: str) -> None:
        self._closing = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(1008, reason), 1.0)
        self.ws.transport.abort()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- main loop -------------------------------------------------------------------------
    async def run(self) -> None:
        w, h = self.pipeline.size
        self.emit(
            event(
                "session",
                id=self.id,
                version=self.version,
                fps=self.pipeline.fps,
                width=w,
                height=h,
                ice_servers=public_ice(self.config.ice_servers),
                max_message_bytes=self.config.max_message_bytes,
                max_say_chars=self.config.max_say_chars,
                max_queued_utterances=self.config.max_queued_utterances,
            )
        )
        sender = self._spawn(self._sender())
        self._spawn(self._stats_loop())
        self.pipeline.start()
        try:
            async for message in self.ws:
                if sender.done() or self._closing:
                    break
                await self._let_sender_catch_up(sender)
                try:
                    if isinstance(message, bytes):
                        self._on_binary(message)
                    else:
                        await self._on_text(message)
                except ProtocolError as exc:
                    self.emit(exc.to_event())
                except Exception as exc:  # never let one message kill the session
                    _LOG.exception("session %s: message failed", self.id)
                    self.emit(error_event("internal", f"{type(exc).__name__}: {exc}"))
        except ConnectionClosed:
            pass
        finally:
            await self.close()

    async def close(self) -> None:
        """Free the peer connection, threads and tasks (within ``close_timeout_s``)."""
        if self.closed.is_set():
            return
        self._closing = True
        t0 = time.monotonic()
        if self._segment is not None:
            self._segment[1].close()
        self.conversation.interrupt()
        for link in list(self.agents):
            link.session_closed(self.id)
        self.agents.clear()
        for task in list(self._tasks):
            task.cancel()

        def free() -> None:
            self.conversation.close(self.config.close_timeout_s * 0.25)
            self.pipeline.close(self.config.close_timeout_s * 0.5)

        steps = [asyncio.ensure_future(asyncio.to_thread(free))]
        if self.pc is not None:
            steps.append(asyncio.ensure_future(self.pc.close()))
        # wait, not wait_for: a thread cannot be cancelled, and a step that outlives the timeout
        # (a render process still starting) finishes on its own; its outcome is read, not lost
        _, late = await asyncio.wait(steps, timeout=self.config.close_timeout_s)
        for step in steps:
            step.add_done_callback(_quiet)
        if late:
            _LOG.warning("session %s: freeing took longer than %.1f s", self.id, self.config.close_timeout_s)
        if self.video is not None:
            self.video.stop()
        if self.audio is not None:
            self.audio.stop()
        with contextlib.suppress(Exception):  # "going away" (server shutdown, failed peer connection)
            await asyncio.wait_for(self.ws.close(1001, "session closed"), 0.5)
        with contextlib.suppress(Exception):
            self.ws.transport.abort()
        _LOG.info("session %s closed in %.0f ms", self.id, (time.monotonic() - t0) * 1000)
        self.closed.set()

    # ---- messages --------------------------------------------------------------------------
    def _on_binary(self, data: bytes, owner: Any = None) -> None:
        if self._segment is None:
            raise ProtocolError("bad_audio", "binary frame outside an audio segment (send audio.start first)")
        if self._segment_owner is not owner:
            raise ProtocolError(
                "bad_audio", "the open audio segment belongs to another client of this session"
            )
        utt, seg = self._segment
        if seg.closed:  # cut by an interrupt: the rest of the segment is dropped quietly
            return
        try:
            seg.append(data)
        except AudioRefused as exc:
            if exc.closes:
                seg.close()
                self._segment = None
            raise ProtocolError(exc.code, str(exc), utt.id) from exc

    async def _on_text(self, raw: str) -> None:
        args = (raw, self.config.max_say_chars, self.config.max_sdp_bytes)
        if len(raw) > _PARSE_ON_LOOP_CHARS:  # a photo or a junk megabyte: JSON and base64 off the loop
            await self._dispatch(await asyncio.to_thread(parse_message, *args))
        else:
            await self._dispatch(parse_message(*args))

    # ---- attached agents ---------------------------------------------------------------------
    def attach(self, link: Any) -> None:
        """An agent joins: it gets ``AGENT_EVENTS`` and the built-in brain falls silent."""
        self.agents.add(link)
        self.conversation.agents = len(self.agents)
        self.emit(event("agent", state="attached", agents=len(self.agents)))

    def detach(self, link: Any) -> None:
        """An agent left (or vanished): its open audio segment is closed and plays out."""
        if link not in self.agents:
            return
        self.agents.discard(link)
        self.conversation.agents = len(self.agents)
        if self._segment is not None and self._segment_owner is link:
            self._segment[1].close()
            self._segment = None
        if not self._closing:
            self.emit(event("agent", state="detached", agents=len(self.agents)))

    async def agent_message(self, message: str | bytes, link: Any) -> None:
        """A message of an attached agent; refusals go back to that agent only."""
        try:
            if isinstance(message, bytes):
                self._on_binary(message, link)
                return
            msg = parse_message(message, self.config.max_say_chars, self.config.max_sdp_bytes)
            if isinstance(msg, Offer):
                raise ProtocolError(
                    "bad_state", "an attached agent cannot negotiate media (the page owns it)"
                )
            await self._dispatch(msg, link)
        except ProtocolError as exc:
            link.put(exc.to_event())
        except Exception as exc:
            _LOG.exception("session %s: agent message failed", self.id)
            link.put(error_event("internal", f"{type(exc).__name__}: {exc}"))

    async def _dispatch(self, msg: ClientMessage, owner: Any = None) -> None:
        if isinstance(msg, Offer):
            await self._on_offer(msg)
        elif isinstance(msg, Say):
            utt = Utterance(id=msg.id or f"u{next(self._ids)}", text=msg.text)
            self.pipeline.enqueue(utt)
            self.emit(event("utterance", id=utt.id, state="queued"))
        elif isinstance(msg, Interrupt):
            self.conversation.interrupt()  # an open audio segment is closed, not forgotten
        elif isinstance(msg, AudioStart):
            if self._segment is not None and not self._segment[1].closed:
                raise ProtocolError("bad_state", "an audio segment is already open (send audio.end)", msg.id)
            seg = AudioSegment(msg.sample_rate, self.config.max_audio_segment_s, self.pipeline.audio_budget)
            utt = Utterance(id=msg.id or f"a{next(self._ids)}", audio=seg)
            self.pipeline.enqueue(utt)
            self._segment = (utt, seg)
            self._segment_owner = owner
            self.emit(event("utterance", id=utt.id, state="queued"))
        elif isinstance(msg, AudioEnd):
            if self._segment is None:
                raise ProtocolError("bad_state", "audio.end without an open audio segment", msg.id)
            self._segment[1].close()
            self._segment = None
        elif isinstance(msg, AvatarSwitch):
            self._spawn(self._switch_avatar(msg.image))

    async def _switch_avatar(self, image: bytes) -> None:
        from vlogger.engines.errors import InputError

        async with self._avatar_lock:
            try:
                avatar, renderer = await asyncio.to_thread(self._load_avatar, image)
            except InputError as exc:
                self.emit(error_event("bad_image", str(exc)))
                return
            except Exception as exc:
                _LOG.exception("avatar load failed")
                self.emit(error_event("bad_image", f"could not use the photo ({type(exc).__name__}: {exc})"))
                return
            self.pipeline.switch_avatar(avatar, renderer)
            h, w = avatar.image.shape[:2]
            faces = int(avatar.fit.faces)
            note = f"the photo holds {faces} faces: the largest one is the avatar" if faces > 1 else None
            self.emit(event("avatar", width=int(w), height=int(h), faces=faces, note=note))

    def _load_avatar(self, image: bytes) -> tuple[Any, Any]:
        avatar = self.engines.load_avatar(image)
        return avatar, self.engines.make_renderer(avatar)  # built (or raised) by the factory

    async def _on_offer(self, msg: Offer) -> None:
        await answer_offer(self, msg)

    # ---- the microphone ------------------------------------------------------------------------
    async def _hear(self, track: MediaStreamTrack) -> None:
        """Feed the microphone track to the listener (its engines load meanwhile; audio that
        arrives before they are ready is dropped). A factory that cannot listen (``make_vad`` or
        ``make_asr`` gives ``None``) leaves the track drained unheard."""
        ready = asyncio.ensure_future(self._ears())
        self._tasks.add(ready)
        try:
            while True:
                frame = await track.recv()
                if self.conversation.listener is not None:
                    self.conversation.listener.feed_frame(frame)
                elif ready.done():
                    if ready.exception() is not None:
                        self.emit(error_event("internal", f"cannot listen: {ready.exception()}"))
                        await drain(track)
                        return
                    vad, asr = ready.result()
                    if vad is None or asr is None:
                        await drain(track)
                        return
                    self.conversation.start_listening(vad, asr)
        except (MediaStreamError, asyncio.CancelledError):
            pass
        finally:
            ready.cancel()

    async def _ears(self) -> tuple[SpeechProbability | None, ASR | None]:
        """The microphone's VAD and recogniser, made side by side in worker threads."""
        make_vad, make_asr = self.engines.make_vad, self.engines.make_asr
        vad, asr = await asyncio.gather(asyncio.to_thread(make_vad), asyncio.to_thread(make_asr))
        return vad, asr

    # ---- stats -----------------------------------------------------------------------------
    async def _stats_loop(self) -> None:
        sampler = StatsSampler()
        while True:
            await asyncio.sleep(self.config.stats_period_s)
            stats = sampler.sample(self.pipeline, self.video, self.audio)
            self.metrics.session_stats(self.id, stats)
            self.emit(stats)


def _quiet(step: asyncio.Future[Any]) -> None:
    """Read a finished step's outcome (so asyncio does not log it as never retrieved)."""
    if not step.cancelled() and step.exception() is not None:
        _LOG.warning("freeing a session: %s", step.exception())

"""A browser app on pipecat: ``SmallWebRTCTransport``, this package's engines and the avatar.

:class:`PipecatAvatarApp` is what ``examples/pipecat_avatar.py`` runs: an aiohttp server (page at
``/``, SmallWebRTC signalling at ``POST``/``PATCH /api/offer``) that builds, per browser connection,

    transport.input() -> VADProcessor(VloggerVADAnalyzer) -> VloggerSTTService -> brain
        -> VloggerTTSService -> VloggerVideoService -> transport.output() [-> assistant context]

with the transport's video out at 30 fps (``video_out_is_live=False``, see
``vlogger.integrations.pipecat``) and the avatar photo's size. Brains: :class:`EchoBrain` (says back
each final transcript, like ``vlogger serve --brain echo``; barge-in interrupts it) or pipecat's
``OpenAILLMService`` on a user-given OpenAI-compatible URL (imported only when chosen). Everything
is loaded once at :meth:`PipecatAvatarApp.start` (a bad photo fails there, by name) from packaged
files: nothing is downloaded. Connections get no ICE servers (host candidates only: no STUN
traffic); on a loopback host 127.0.0.1 is offered as well (``enable_loopback_ice``).

Tested on loopback with an aiortc peer in ``tests/test_pipecat_example.py``; the openai brain is
tested there against a fake chat-completions server on 127.0.0.1, not against a real model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import web
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    TranscriptionFrame,
    TTSSpeakFrame,
    VADUserStartedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.workers.runner import WorkerRunner

from vlogger.engines.asr.base import ASR_SAMPLE_RATE
from vlogger.engines.audio import resample
from vlogger.engines.errors import InputError
from vlogger.engines.stream import AvatarStream, StreamConfig
from vlogger.integrations.pipecat import StreamFactory, VloggerVideoService
from vlogger.integrations.pipecat_page import PAGE
from vlogger.integrations.pipecat_services import VloggerSTTService, VloggerTTSService, VloggerVADAnalyzer
from vlogger.runtime.live_stream import start_site

__all__ = ["BRAINS", "AppConfig", "EchoBrain", "PipecatAvatarApp", "openai_brain"]

_LOG = logging.getLogger(__name__)

#: Brains the app can run.
BRAINS = ("echo", "openai")

#: System prompt of the openai brain.
SYSTEM_PROMPT = (
    "You are the voice of a friendly talking avatar. Answer in one to three short spoken "
    "sentences, without lists or markdown."
)


@dataclass
class AppConfig:
    """What the app serves and how."""

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = 8080
    """TCP port of the page and the signalling endpoint (0: any free port)."""
    image: str | None = None
    """The avatar photo; None: the shipped portrait."""
    size: int = 512
    """Video height in pixels (the width follows the photo, rounded to even)."""
    brain: str = "echo"
    """``echo`` (say back what was heard) or ``openai`` (a chat-completions server)."""
    brain_url: str | None = None
    """OpenAI-compatible base URL for ``openai`` (``http://127.0.0.1:8000/v1``)."""
    brain_model: str | None = None
    """Model name for ``openai``."""
    brain_key_env: str = "VLOGGER_BRAIN_KEY"
    """Environment variable holding the ``openai`` brain's key (unset: a placeholder is sent)."""
    max_connections: int = 2
    """Browser connections served at once; more get HTTP 503."""
    audio_out_sample_rate: int = 24000
    """Rate of the audio the pipeline plays (the avatar's voice)."""
    idle_timeout_s: float | None = 300.0
    """A connection with neither user nor avatar speech for this long is closed (None: never)."""

    def check(self) -> None:
        """``InputError`` naming the first bad setting."""
        if not 0 <= self.port <= 65535:
            raise InputError(f"port {self.port} is not a TCP port")
        if not 64 <= self.size <= 2048:
            raise InputError(f"size {self.size} is outside 64..2048 pixels")
        if self.brain not in BRAINS:
            raise InputError(f"brain {self.brain!r} is not one of {', '.join(BRAINS)}")
        if self.brain == "openai" and not (self.brain_url and self.brain_model):
            raise InputError("the openai brain needs --brain-url and --brain-model")
        if self.brain_url and not self.brain_url.startswith(("http://", "https://")):
            raise InputError(f"brain URL {self.brain_url!r} must start with http:// or https://")
        if self.max_connections < 1:
            raise InputError("max_connections must be at least 1")


class EchoBrain(FrameProcessor):
    """Answers each final ``TranscriptionFrame`` by saying it back (a ``TTSSpeakFrame``).

    ``barge_in``: when the user starts speaking while the avatar speaks, interrupt it
    (``broadcast_interruption``), as ``vlogger serve`` does. Every frame passes on.
    """

    def __init__(self, *, barge_in: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._barge_in = barge_in
        self._bot_speaking = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Say transcripts back; interrupt the avatar when the user talks over it."""
        await super().process_frame(frame, direction)
        if isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
        await self.push_frame(frame, direction)
        if direction != FrameDirection.DOWNSTREAM:
            return
        if isinstance(frame, TranscriptionFrame) and frame.text.strip():
            await self.push_frame(TTSSpeakFrame(frame.text.strip()))
        elif isinstance(frame, VADUserStartedSpeakingFrame) and self._barge_in and self._bot_speaking:
            await self.broadcast_interruption()


def openai_brain(url: str, model: str, api_key: str | None = None) -> tuple[list[Any], list[Any]]:
    """pipecat's ``OpenAILLMService`` on ``url`` with a context: (processors before the TTS,
    processors after the output transport). Imported here only, and it talks to ``url`` only."""
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
    from pipecat.services.openai.llm import OpenAILLMService

    base = url.rstrip("/")
    base = base.removesuffix("/chat/completions")
    pair = LLMContextAggregatorPair(LLMContext())
    settings = OpenAILLMService.Settings(model=model, system_instruction=SYSTEM_PROMPT)
    llm = OpenAILLMService(api_key=api_key or "no-key", base_url=base, settings=settings)
    return [pair.user(), llm], [pair.assistant()]


class PipecatAvatarApp:
    """The example's server: page, signalling and one pipecat pipeline per browser connection.

    ``vlogger_config``: engines and avatar settings (a ``VloggerConfig``; None: the defaults).
    Call :meth:`start` (loads every model, then listens) and :meth:`stop`.
    """

    def __init__(self, config: AppConfig, vlogger_config: Any = None) -> None:
        config.check()
        self.config = config
        if vlogger_config is None:
            from vlogger.runtime.config import VloggerConfig

            vlogger_config = VloggerConfig()
        vlogger_config.output.height = config.size
        vlogger_config.server.default_image = config.image
        vlogger_config.server.render_processes = False  # render in the avatar's worker thread
        self.vlogger_config = vlogger_config
        self._engines: Any = None
        self._avatar: Any = None
        self._asr: Any = None
        self._runner: web.AppRunner | None = None
        self._connections: dict[str, SmallWebRTCConnection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._count = 0
        self.port: int | None = None
        """The bound port once started."""

    # -- set-up ----------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Load the avatar (``InputError`` for a bad photo), voice, recogniser, VAD and motion
        models (blocking; :meth:`start` runs it in a thread)."""
        from vlogger.runtime.engine_factory import RealEngines

        if self.config.image is not None and not os.path.isfile(self.config.image):
            raise InputError(f"image not found: {self.config.image}")
        engines = RealEngines(self.vlogger_config)
        avatar = engines.load_avatar(None)
        engines.prepare()
        engines.make_vad()
        # one sentence through the voice and the recogniser: their first call is slow (ONNX and
        # CTranslate2 warm-up), and it would otherwise fall on the first user's first answer
        voice = engines.make_tts()
        pcm = np.concatenate([c.pcm for c in voice.synthesize("Hello there.")])
        asr = engines.make_asr()  # shared; taken here, since later calls wait on its lock
        asr.segments(resample(pcm, voice.sample_rate, ASR_SAMPLE_RATE))
        self._engines, self._avatar, self._asr = engines, avatar, asr

    @property
    def size(self) -> tuple[int, int]:
        """The avatar's (width, height) in pixels (after :meth:`prepare`)."""
        if self._avatar is None:
            raise RuntimeError("the app is not prepared")
        h, w = np.asarray(self._avatar.image).shape[:2]
        return int(w), int(h)

    @property
    def url(self) -> str:
        """The page's address."""
        return f"http://{self.config.host}:{self.port}/"

    @property
    def connections(self) -> int:
        """Browser connections whose pipeline runs now."""
        return len(self._tasks)

    def _stream_factory(self, index: int) -> StreamFactory:
        engines, avatar, fps = self._engines, self._avatar, float(self.vlogger_config.output.fps)

        def build(rate: int) -> AvatarStream[np.ndarray]:
            from vlogger.runtime.engine_factory import close_quietly

            renderer = engines.make_renderer(avatar)
            try:
                motion = engines.make_motion(index)
                return AvatarStream(avatar, motion, renderer, StreamConfig(fps=fps, audio_rate=rate))
            except BaseException:
                close_quietly(renderer)
                raise

        return build

    def build_worker(self, connection: SmallWebRTCConnection) -> PipelineWorker:
        """The pipeline of one browser connection, in a ``PipelineWorker`` (not started)."""
        cfg, engines = self.config, self._engines
        if engines is None:
            raise RuntimeError("the app is not prepared")
        width, height = self.size
        transport = SmallWebRTCTransport(
            webrtc_connection=connection,
            params=TransportParams(
                audio_in_enabled=True,
                audio_out_enabled=True,
                video_out_enabled=True,
                video_out_is_live=False,
                video_out_width=width,
                video_out_height=height,
                video_out_framerate=30,
            ),
        )
        if cfg.brain == "openai":
            assert cfg.brain_url and cfg.brain_model
            before, after = openai_brain(cfg.brain_url, cfg.brain_model, os.environ.get(cfg.brain_key_env))
        else:
            before, after = [EchoBrain()], []
        index, self._count = self._count, self._count + 1
        pipeline = Pipeline(
            [
                transport.input(),
                VADProcessor(vad_analyzer=VloggerVADAnalyzer(vad=engines.make_vad())),
                VloggerSTTService(asr=self._asr),
                *before,
                VloggerTTSService(tts=engines.make_tts()),
                VloggerVideoService(config=self.vlogger_config, stream_factory=self._stream_factory(index)),
                transport.output(),
                *after,
            ]
        )
        worker = PipelineWorker(
            pipeline,
            params=PipelineParams(
                audio_in_sample_rate=16000,
                audio_out_sample_rate=cfg.audio_out_sample_rate,
                enable_metrics=True,
            ),
            enable_rtvi=False,
            idle_timeout_secs=cfg.idle_timeout_s,
            cancel_runner_on_idle_timeout=False,
        )

        @transport.event_handler("on_client_disconnected")
        async def on_client_disconnected(_transport: Any, _client: Any) -> None:
            await worker.cancel(reason="the browser disconnected")

        return worker

    # -- server ----------------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        """The aiohttp application: ``GET /``, ``POST /api/offer``, ``PATCH /api/offer``."""
        app = web.Application(client_max_size=1 << 20)
        app.router.add_get("/", self._page)
        app.router.add_post("/api/offer", self._offer)
        app.router.add_patch("/api/offer", self._candidates)
        return app

    async def start(self) -> None:
        """Load the models (in a thread), then listen on ``host:port``."""
        from vlogger.runtime.access import is_loopback
        from vlogger.runtime.server import enable_loopback_ice

        await asyncio.to_thread(self.prepare)
        if is_loopback(self.config.host) or self.config.host == "localhost":
            enable_loopback_ice()
        self._runner, self.port = await start_site(self.web_app(), self.config.host, self.config.port)

    async def stop(self) -> None:
        """Close every connection and its pipeline, then the server."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
        for conn in list(self._connections.values()):
            with contextlib.suppress(Exception):
                await conn.disconnect()
        self._connections.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._engines is not None:
            self._engines.close()

    async def _page(self, _request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def _offer(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            sdp, kind = str(body["sdp"]), str(body.get("type", "offer"))
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
            return web.json_response({"error": f"bad offer: {e}"}, status=400)
        pc_id = body.get("pc_id") if isinstance(body, dict) else None
        conn: SmallWebRTCConnection | None = None
        try:
            existing = self._connections.get(str(pc_id)) if pc_id else None
            if existing is not None:
                await existing.renegotiate(sdp=sdp, type=kind, restart_pc=bool(body.get("restart_pc")))
                return web.json_response(existing.get_answer())
            if len(self._tasks) >= self.config.max_connections:
                return web.json_response(
                    {"error": f"busy: {self.config.max_connections} connections already"}, status=503
                )
            conn = SmallWebRTCConnection(ice_servers=[])  # host candidates only: no STUN, no TURN
            await conn.initialize(sdp=sdp, type=kind)
            worker = self.build_worker(conn)
        except Exception as e:
            _LOG.warning("pipecat avatar: refused an offer: %s: %s", type(e).__name__, e)
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.pc.close()
            return web.json_response({"error": f"bad offer: {type(e).__name__}: {e}"}, status=400)
        answer = conn.get_answer()
        self._connections[conn.pc_id] = conn
        task = asyncio.create_task(self._run(conn, worker), name=f"pipecat-avatar-{conn.pc_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response(answer)

    async def _run(self, conn: SmallWebRTCConnection, worker: PipelineWorker) -> None:
        try:
            runner = WorkerRunner(handle_sigint=False)
            await runner.add_workers(worker)
            await runner.run()
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await worker.cancel(reason="the server is stopping")
            raise
        except Exception:
            _LOG.exception("pipecat avatar: a connection's pipeline failed")
        finally:
            self._connections.pop(conn.pc_id, None)
            with contextlib.suppress(Exception):
                await conn.disconnect()

    async def _candidates(self, request: web.Request) -> web.Response:
        """Trickled ICE candidates of a connection (``{pc_id, candidates: [{candidate, sdp_mid,
        sdp_mline_index}]}``; an empty candidate ends the list)."""
        from aiortc.sdp import candidate_from_sdp

        try:
            body = await request.json()
            conn = self._connections.get(str(body["pc_id"]))
            if conn is None:
                return web.json_response({"error": "no such connection"}, status=404)
            for c in body.get("candidates", []):
                candidate = None
                if c.get("candidate"):
                    candidate = candidate_from_sdp(str(c["candidate"]).removeprefix("candidate:"))
                    candidate.sdpMid = c.get("sdp_mid")
                    candidate.sdpMLineIndex = c.get("sdp_mline_index")
                await conn.add_ice_candidate(candidate)
        except Exception as e:
            return web.json_response({"error": f"bad candidates: {type(e).__name__}: {e}"}, status=400)
        return web.json_response({"status": "ok"})

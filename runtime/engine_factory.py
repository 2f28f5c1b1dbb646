"""The engines a server builds for its sessions: the :class:`EngineFactory` contract and
:class:`RealEngines` (piper, the configured motion engine, the configured renderer, Silero VAD and
whisper, as ``VloggerConfig`` says), plus :class:`SerializedRenderer`."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from vlogger.engines.asr.base import ASR
from vlogger.engines.asr.vad import SpeechProbability
from vlogger.engines.motion.base import MotionEngine
from vlogger.engines.render.base import Renderer
from vlogger.engines.tts.base import TTS

if TYPE_CHECKING:
    from vlogger.engines.asr.whisper import WhisperASR
    from vlogger.runtime.config import VloggerConfig

__all__ = ["EngineFactory", "RealEngines", "SerializedRenderer", "close_quietly"]

_LOG = logging.getLogger(__name__)


@runtime_checkable
class EngineFactory(Protocol):
    """Builds a session's engines (all synchronous, numpy in and out).

    A server calls :meth:`prepare` once before it listens and :meth:`close` once when it stops;
    sessions call the ``make_*`` methods from worker threads (never on the event loop), so they may
    block and must be thread-safe. Shared models belong to the factory, not to the engines it
    hands out.
    """

    fps: float
    """Frame rate of every motion engine it makes."""

    def prepare(self) -> None:
        """Load what every session shares (voice, motion models, spare render processes) ahead of
        the first session; may do nothing."""
        ...

    def close(self, timeout: float = 5.0) -> None:
        """Free what :meth:`prepare` and the sessions left shared (the server is stopping)."""
        ...

    def make_tts(self) -> TTS:
        """A voice for one session."""
        ...

    def make_motion(self, index: int) -> MotionEngine:
        """A motion engine at ``fps`` for the server's ``index``-th session (from 0): engines of
        different indices idle differently (blinks, gaze, head motion), the same index the same."""
        ...

    def load_avatar(self, source: bytes | str | None) -> Any:
        """An avatar (``.image``, ``.fit``, ``.rig.pose``) from photo bytes or a path; ``None`` =
        the server's default photo. Raises ``InputError`` for a bad photo."""
        ...

    def make_renderer(self, avatar: Any) -> Renderer[Any]:
        """A renderer for ``avatar``, ready to render: one that cannot be built (a model that does
        not load, a render process that fails) raises here (``InputError`` or ``WorkerError``),
        not on its first frame."""
        ...

    def make_vad(self) -> SpeechProbability | None:
        """A streaming voice-activity detector for one microphone (state of its own), or ``None``
        when this factory cannot listen (the session then drains the microphone unheard). The
        session cuts utterances with ``ServerConfig.listen.vad``."""
        ...

    def make_asr(self) -> ASR | None:
        """The recogniser of every session's microphone (loaded on the first call, then shared;
        thread-safe), or ``None`` when this factory cannot listen."""
        ...


class RealEngines:
    """piper TTS, the configured motion engine and renderer, Silero VAD and whisper, all as the one
    :class:`~vlogger.runtime.config.VloggerConfig` says (video height ``output.height``, default
    photo ``server.default_image``, seeds from ``seed``, recogniser ``asr``, VAD
    ``server.listen.vad``).

    The default avatar is fitted once and shared by every session (avatars are read-only).
    """

    def __init__(self, config: VloggerConfig) -> None:
        self.config = config
        self.fps = float(config.output.fps)
        self.size = int(config.output.height)
        """Video height in pixels (``output.height``): every avatar is loaded at it."""
        self._default: Any = None
        self._master: TTS | None = None
        self._voice_lock = threading.Lock()
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._vad_runner: Any = None
        self._asr: WhisperASR | None = None
        self._motion_models: Any = None
        self._motion_loaded = False
        self._pool: Any = None
        if config.server.render_processes:
            from vlogger.runtime.render_worker import WorkerPool

            self._pool = WorkerPool(spare=config.server.spare_render_processes, threads=1)

    def _voice(self) -> TTS:
        """The server's one loaded voice (loaded on first use)."""
        with self._voice_lock:
            if self._master is None:
                from vlogger.engines.tts import PiperTTS

                tts = PiperTTS(self.config.tts)
                tts.warmup()
                self._master = tts
            return self._master

    def prepare(self) -> None:
        """Load the voice and the motion models and start the spare render processes ahead of
        the first session (so opening a session loads no model)."""
        if self._pool is not None:
            self._pool.fill()
        self._voice()
        self._shared_motion_models()

    def _shared_motion_models(self) -> Any:
        """The motion network and Whisper encoder, loaded once for every session."""
        with self._lock:
            if not self._motion_loaded:
                from vlogger.runtime.capacity import usable_cores

                self._motion_models = self.config.load_motion_models(parallel=usable_cores())
                self._motion_loaded = True
            return self._motion_models

    def make_tts(self) -> TTS:
        """A voice for a new session: shares the loaded ONNX session (no load, no extra memory)."""
        return self._voice().share()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the spare render processes."""
        if self._pool is not None:
            self._pool.close(timeout)

    def make_vad(self) -> SpeechProbability:
        """A streaming Silero VAD for one microphone, as ``server.listen.vad`` says (the ONNX
        session is shared)."""
        from vlogger.engines.asr.vad import SileroVAD

        cfg = self.config.server.listen.vad
        with self._lock:
            if self._vad_runner is None:
                self._vad_runner = SileroVAD.load_runner(cfg)
            runner = self._vad_runner
        return SileroVAD(cfg, runner=runner)

    def make_asr(self) -> ASR:
        """The whisper recogniser (``asr``), shared by every session (it serialises calls itself)."""
        from vlogger.engines.asr import WhisperASR

        with self._lock:
            if self._asr is None:
                self._asr = WhisperASR(self.config.asr)
            asr = self._asr
        asr.warmup()  # loads once, under the recogniser's own lock (not the factory's)
        return asr

    def make_motion(self, index: int) -> MotionEngine:
        """The configured motion engine over the shared models, seeded ``seed + index``."""
        return self.config.make_motion(self.config.seed + index, models=self._shared_motion_models())

    def load_avatar(self, source: bytes | str | None) -> Any:
        from vlogger.engines.avatar import load_avatar

        if source is None:
            with self._lock:
                if self._default is None:
                    image = self.config.server.default_image
                    self._default = load_avatar(image, height=self.size, config=self.config.avatar)
                return self._default
        return load_avatar(source, height=self.size, config=self.config.avatar)

    def make_renderer(self, avatar: Any) -> Renderer[Any]:
        """The session's renderer, built: in a worker process of its own (``render_processes``;
        this waits until the process built it), or in the render thread (warp then takes turns
        with other sessions, see SerializedRenderer)."""
        if self._pool is not None:
            from vlogger.runtime.render_worker import ProcessRenderer, RendererSpec

            spec = RendererSpec(
                self.config.renderer, avatar.image, avatar.fit, self.config.warp, self.config.diffusion
            )
            remote = ProcessRenderer(self._pool, spec)
            try:
                remote.wait_ready()
            except BaseException:
                remote.close()
                raise
            return remote
        from vlogger.engines.render.factory import make_renderer

        cfg = self.config
        renderer = make_renderer(cfg.renderer, avatar.image, avatar.fit, cfg.warp, cfg.diffusion)
        if cfg.renderer == "warp":
            return SerializedRenderer(renderer, self._render_lock)
        return renderer


class SerializedRenderer:
    """Runs a renderer under a lock shared by all sessions of one server.

    Used when ``render_processes`` is off. The warp renderer spends a few ms per frame in small
    numpy/OpenCV calls holding the GIL; several sessions rendering in parallel threads then
    thrash the GIL and render fewer frames in total than one thread alone (measured at 256 px:
    187 frames/s with one thread, 165 with two, 121 with four). Taking turns keeps the total at
    the single-thread rate, while TTS, encoding and the network still run in parallel.
    """

    def __init__(self, inner: Any, lock: threading.Lock) -> None:
        self.inner = inner
        self.name = inner.name
        self._lock = lock

    def render(self, posed: Any) -> Any:
        with self._lock:
            return self.inner.render(posed)

    def push(self, posed: Any) -> list[Any]:
        with self._lock:
            return self.inner.push(posed)

    def flush(self) -> list[Any]:
        with self._lock:
            return self.inner.flush()

    def reset(self) -> None:
        self.inner.reset()

    def close(self) -> None:
        close_quietly(self.inner)


def close_quietly(renderer: Renderer[Any]) -> None:
    """Close a renderer; a failure is logged, not raised (freeing must go on)."""
    try:
        renderer.close()
    except Exception:
        _LOG.exception("closing a renderer failed")

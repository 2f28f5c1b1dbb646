"""The engines a server builds for its sessions: the :class:`EngineFactory` contract and
:class:`RealEngines` (piper, the configured motion engine, the configured renderer, Silero VAD and
whisper, as ``VloggerConfig`` says), plus :class:`SerializedRenderer`."""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from vlogger.engines.render.base import Renderer

__all__ = ["EngineFactory", "RealEngines", "SerializedRenderer", "close_quietly"]

_LOG = logging.getLogger(__name__)


class EngineFactory(Protocol):
    """Builds a session's engines (all synchronous, numpy in and out)."""

    fps: float

    def make_tts(self) -> Any:
        """An object with ``synthesize(text, start_pts) -> Iterator[AudioChunk]``."""

    def make_motion(self, seed: int) -> Any:
        """A :class:`~vlogger.engines.motion.base.MotionEngine` at ``fps``."""

    def load_avatar(self, source: bytes | str | None) -> Any:
        """An avatar (``.image``, ``.fit``, ``.rig.pose``); raises ``InputError`` for a bad photo."""

    def make_renderer(self, avatar: Any) -> Any:
        """A :class:`~vlogger.engines.render.base.Renderer` for ``avatar``."""


class RealEngines:
    """piper TTS, the phoneme motion engine and the warp renderer, configured by ``VloggerConfig``.

    The default avatar is fitted once and shared by every session (avatars are read-only).
    """

    def __init__(self, config: Any, size: int | None = None, image: str | None = None) -> None:
        self.config = config
        self.fps = float(config.output.fps)
        self.size = int(size or config.output.height)
        self.image = image
        self._default: Any = None
        self._master: Any = None
        self._voice_lock = threading.Lock()
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._vad_session: Any = None
        self._asr: Any = None
        self._motion_models: Any = None
        self._motion_loaded = False
        self._pool: Any = None
        if config.server.render_processes:
            from vlogger.runtime.render_worker import WorkerPool

            self._pool = WorkerPool(spare=config.server.spare_render_processes, threads=1)

    def _voice(self) -> Any:
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

    def make_tts(self) -> Any:
        """A voice for a new session: shares the loaded ONNX session (no load, no extra memory)."""
        return self._voice().share()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the spare render processes."""
        if self._pool is not None:
            self._pool.close(timeout)

    def make_vad(self) -> Any:
        """A streaming Silero VAD for one microphone (the ONNX session is shared)."""
        from vlogger.engines.asr.vad import SileroVAD, VADConfig

        with self._lock:
            if self._vad_session is None:
                self._vad_session = SileroVAD.load_runner(VADConfig(threads=1))
            runner = self._vad_session
        return SileroVAD(VADConfig(threads=1), runner=runner)

    def make_asr(self) -> Any:
        """The whisper recogniser, shared by every session (it serialises calls itself)."""
        from vlogger.engines.asr import ASRConfig, WhisperASR

        with self._lock:
            if self._asr is None:
                threads = max(1, int(getattr(self.config.tts, "threads", 1)))
                self._asr = WhisperASR(ASRConfig(cpu_threads=threads))
            asr = self._asr
        asr.warmup()
        return asr

    def make_motion(self, seed: int) -> Any:
        return self.config.make_motion(seed, models=self._shared_motion_models())

    def load_avatar(self, source: bytes | str | None) -> Any:
        from vlogger.engines.avatar import load_avatar

        if source is None:
            with self._lock:
                if self._default is None:
                    self._default = load_avatar(self.image, height=self.size, config=self.config.avatar)
                return self._default
        return load_avatar(source, height=self.size, config=self.config.avatar)

    def make_renderer(self, avatar: Any) -> Any:
        """The session's renderer: in a worker process of its own (``render_processes``), or in
        the render thread (warp then takes turns with other sessions, see SerializedRenderer)."""
        if self._pool is not None:
            from vlogger.runtime.render_worker import ProcessRenderer, RendererSpec

            spec = RendererSpec(
                self.config.renderer, avatar.image, avatar.fit, self.config.warp, self.config.diffusion
            )
            return ProcessRenderer(self._pool, spec)
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

"""The root configuration: engine configs composed into one object that is passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vlogger.engines.asr.whisper import ASRConfig
from vlogger.engines.avatar.config import AvatarConfig
from vlogger.engines.motion.align import AlignConfig
from vlogger.engines.motion.factory import DEFAULT_MOTION_ENGINE
from vlogger.engines.motion.network import NetworkConfig
from vlogger.engines.motion.teacher import TeacherConfig
from vlogger.engines.render.diffusion.config import DiffusionConfig
from vlogger.engines.render.factory import RENDERERS
from vlogger.engines.render.warp import WarpConfig
from vlogger.engines.tts import TTSConfig
from vlogger.runtime.server_config import ServerConfig

__all__ = ["RENDERERS", "OutputConfig", "VloggerConfig"]


@dataclass
class OutputConfig:
    """How videos are timed and encoded."""

    fps: float = 25.0
    """Video frame rate (frames per second)."""
    height: int = 512
    """Output height in pixels; the width keeps the photo's aspect, rounded to even."""
    crf: int = 20
    """x264 constant rate factor (lower is better quality, larger files)."""
    preset: str = "veryfast"
    """x264 speed preset."""
    encoder_threads: int = 1
    """Threads the H.264 encoder may use."""
    lead_in: float = 0.2
    """Seconds of idle before the speech starts in an offline render."""
    tail: float = 0.4
    """Seconds of idle after the speech ends in an offline render (the mouth settles)."""


@dataclass
class VloggerConfig:
    """Everything a render or a session needs; built once (the CLI maps flags onto it)."""

    output: OutputConfig = field(default_factory=OutputConfig)
    """Video timing and encoding."""
    avatar: AvatarConfig = field(default_factory=AvatarConfig)
    """Photo loading, fitting and the expression rig."""
    tts: TTSConfig = field(default_factory=TTSConfig)
    """Text to speech (piper)."""
    asr: ASRConfig = field(default_factory=ASRConfig)
    """Speech recognition (whisper): the words of a speech file to align (``render --audio``) and
    of a session's microphone (``serve``). The VAD that cuts the microphone into utterances is
    ``server.listen.vad``."""
    align: AlignConfig = field(default_factory=AlignConfig)
    """Phoneme timings from audio alone (the ``asr`` transcript + pocketsphinx alignment)."""
    motion_engine: str = DEFAULT_MOTION_ENGINE
    """Motion engine: ``"hybrid"`` (the default: the mouth as ``mouth`` says, the teacher's head,
    eyes and body), ``"teacher"`` (phoneme-driven; loudness where no timings reach) or
    ``"network"`` (the learned diffusion transformer's head, brows and body, driven by the audio
    alone, with the learned mouth)."""
    mouth: str = "learned"
    """The ``hybrid`` engine's mouth: ``"learned"`` (the read-out trained on real speakers, on every
    frame) or ``"phonemes"`` (the phoneme-driven mouth where timings reach, the learned one
    elsewhere)."""
    motion: TeacherConfig = field(default_factory=TeacherConfig)
    """The phoneme-driven motion generator."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    """The learned motion network (model, DDIM steps, guidance, noise)."""
    warp: WarpConfig = field(default_factory=WarpConfig)
    """The CPU warp renderer."""
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    """The temporal diffusion renderer (model path, backend, steps, window)."""
    server: ServerConfig = field(default_factory=ServerConfig)
    """The real-time server (``vlogger serve``)."""
    renderer: str = "warp"
    """Renderer engine name (one of ``RENDERERS``)."""
    seed: int = 0
    """Seed of every stochastic process (blinks, gaze, head motion); the server's ``n``-th
    session (from 0) uses ``seed + n``, so each idles differently, reproducibly."""

    def uses_motion_network(self) -> bool:
        """Whether the configured motion engine runs the learned network (and Whisper)."""
        return self.motion_engine in ("hybrid", "network")

    def load_motion_models(self, parallel: int = 1) -> Any:
        """The motion network's shared models (:func:`~vlogger.engines.motion.network.load_motion_models`),
        or ``None`` when the configured engine needs none."""
        if not self.uses_motion_network():
            return None
        from vlogger.engines.motion.network import load_motion_models

        return load_motion_models(self.network, parallel)

    def make_motion(self, seed: int | None = None, models: Any = None) -> Any:
        """A new motion engine as configured (``motion_engine``) at ``output.fps``; ``models`` from
        :meth:`load_motion_models`, shared by every engine made with it."""
        from vlogger.engines.motion.factory import make_motion_engine

        cfg: Any = self.network if self.motion_engine == "network" else self.motion
        if self.motion_engine == "hybrid":
            from vlogger.engines.motion.hybrid import HybridConfig

            cfg = HybridConfig(teacher=self.motion, network=self.network, mouth=self.mouth)
        return make_motion_engine(
            self.motion_engine,
            cfg,
            fps=self.output.fps,
            seed=self.seed if seed is None else seed,
            models=models if self.uses_motion_network() else None,
        )

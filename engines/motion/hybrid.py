"""The learned mouth (or the phoneme-driven one where timings are known) with the phoneme-driven
generator's head, eyes and body: the runtime's default motion engine.

The mouth (``HybridConfig.mouth``): ``"learned"`` (the default) takes it from the motion network
engine's read-out trained on real speakers on every frame; it beats the phoneme-driven mouth on
held-out real speakers even where aligned phoneme timings are known (``benchmarks/lipsync.py``:
r 0.617 vs 0.334 on the rig, 0.562 vs 0.386 rendered), so TTS speech, recorded audio and an agent's
streamed PCM all get it; the network engine then runs without its diffusion network (only the
Whisper features and the read-out). ``"phonemes"`` (the default before the read-out): per frame,
the teacher's mouth in proportion to how much phoneme timings reach the frame
(``MotionFrame.phoneme_share``), the network's for the rest. Blinks, gaze, head and body come from
the teacher's processes either way, so switching between TTS and streamed audio inside one session
moves nothing but the mouth's driver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from vlogger.engines.errors import InputError
from vlogger.engines.motion.config import TeacherConfig
from vlogger.engines.motion.network import MotionModels, NetworkConfig, NetworkMotionEngine
from vlogger.engines.motion.teacher import PhonemeMotionEngine
from vlogger.engines.motion.visemes import MOUTH_NAMES
from vlogger.engines.types import EXPRESSION_NAMES, AudioChunk, MotionFrame

__all__ = ["HybridConfig", "HybridMotionEngine"]

_MOUTH_IX = np.array([EXPRESSION_NAMES.index(n) for n in MOUTH_NAMES])


@dataclass
class HybridConfig:
    """Settings of :class:`HybridMotionEngine`."""

    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    """The phoneme-driven engine's settings; its ``mode`` is forced to ``"phonemes"`` (the network,
    not loudness, fills what phonemes do not reach)."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    """The motion network's settings (only its mouth is used: with the read-out mouth its diffusion
    network does not run)."""
    mouth: str = "learned"
    """``"learned"``: the network's mouth (the read-out trained on real speakers) on every frame,
    phoneme timings or not: it beats the phoneme-driven mouth on held-out real speakers even where
    aligned timings are known (``benchmarks/lipsync.py``). ``"phonemes"``: the teacher's mouth in
    proportion to how much phoneme timings reach a frame, the network's elsewhere (the default
    before the read-out)."""

    def __post_init__(self) -> None:
        if self.mouth not in ("learned", "phonemes"):
            raise InputError(f"HybridConfig.mouth must be 'learned' or 'phonemes', not {self.mouth!r}")


class HybridMotionEngine:
    """A :class:`~vlogger.engines.motion.base.MotionEngine`: teacher mouth where phonemes reach,
    network mouth elsewhere, teacher for everything else.

    ``HybridMotionEngine(config, fps=25.0, seed=0)``: deterministic for a given seed; ``models``
    as for :class:`~vlogger.engines.motion.network.NetworkMotionEngine` (shared, loaded once).
    """

    def __init__(
        self,
        config: HybridConfig | None = None,
        fps: float = 25.0,
        seed: int = 0,
        models: MotionModels | None = None,
    ) -> None:
        self.config = cfg = config if config is not None else HybridConfig()
        self.teacher = PhonemeMotionEngine(replace(cfg.teacher, mode="phonemes"), fps=fps, seed=seed)
        net = replace(cfg.network, diffusion=False) if cfg.network.mouth == "readout" else cfg.network
        self.network = NetworkMotionEngine(net, fps=fps, seed=seed, models=models)
        self.fps = float(fps)

    @property
    def needs_phonemes(self) -> bool:
        """The phoneme-driven mouth reads timings; the learned mouth listens to the audio."""
        return self.config.mouth == "phonemes"

    @property
    def latency_s(self) -> float:
        """How far past a frame's time the input must reach before the frame can be made (the
        teacher's; the network's audio lookahead is shorter)."""
        return self.teacher.latency_s

    def push_audio(self, chunk: AudioChunk) -> None:
        self.teacher.push_audio(chunk)
        self.network.push_audio(chunk)

    def end_of_input(self) -> None:
        self.teacher.end_of_input()
        self.network.end_of_input()

    def clear_buffer(self) -> None:
        self.teacher.clear_buffer()
        self.network.clear_buffer()

    def ready_until(self) -> float:
        return min(self.teacher.ready_until(), self.network.ready_until())

    def frames(self, until_pts: float) -> list[MotionFrame]:
        limit = min(until_pts, self.ready_until())
        if not math.isfinite(limit):
            return []
        taught = self.teacher.frames(limit)
        heard = self.network.frames(limit)
        if len(taught) != len(heard):  # cannot happen with both engines on the same clock
            raise RuntimeError(f"motion engines out of step: {len(taught)} vs {len(heard)} frames")
        out = []
        for t, h in zip(taught, heard, strict=True):
            w = float(np.clip(t.phoneme_share, 0.0, 1.0)) if self.config.mouth == "phonemes" else 0.0
            expr = t.expression.copy()
            expr[_MOUTH_IX] = w * t.expression[_MOUTH_IX] + (1.0 - w) * h.expression[_MOUTH_IX]
            out.append(replace(t, expression=expr, speaking=t.speaking or h.speaking))
        return out

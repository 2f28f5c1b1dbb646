"""Pick a motion engine by name: ``"hybrid"`` (the default: the learned mouth, the teacher's head,
eyes and body), ``"teacher"`` (phoneme-driven) or ``"network"`` (learned, audio only)."""

from __future__ import annotations

from typing import Any

from vlogger.engines.errors import InputError
from vlogger.engines.motion.base import MotionEngine

__all__ = ["DEFAULT_MOTION_ENGINE", "MOTION_ENGINES", "make_motion_engine"]

#: Names :func:`make_motion_engine` knows.
MOTION_ENGINES = ("hybrid", "teacher", "network")

#: The runtime's default: the mouth learned from real speakers (``HybridConfig.mouth="learned"``),
#: the phoneme-driven generator's head, eyes and body. On 27 held-out real speakers
#: (``benchmarks/lipsync.py``) its mouth scores r 0.617 on the rig and 0.562 rendered, the
#: generator's with aligned timings 0.334 and the previous default 0.387 / 0.386. ``network`` has
#: the same mouth with the diffusion network's head and body; ``teacher`` needs no Whisper features.
DEFAULT_MOTION_ENGINE = "hybrid"


def make_motion_engine(
    name: str = DEFAULT_MOTION_ENGINE,
    config: Any = None,
    fps: float = 25.0,
    seed: int = 0,
    models: Any = None,
) -> MotionEngine:
    """A motion engine: ``"teacher"`` takes a ``TeacherConfig``, ``"network"`` a ``NetworkConfig``,
    ``"hybrid"`` a ``HybridConfig`` (``None`` = defaults). ``models``: the network's
    :class:`~vlogger.engines.motion.network.MotionModels`, loaded once and shared (``network`` and
    ``hybrid``; ``None`` = each engine loads its own)."""
    if name == "teacher":
        from vlogger.engines.motion.teacher import PhonemeMotionEngine

        return PhonemeMotionEngine(config, fps=fps, seed=seed)
    if name == "hybrid":
        from vlogger.engines.motion.hybrid import HybridMotionEngine

        return HybridMotionEngine(config, fps=fps, seed=seed, models=models)
    if name == "network":
        from vlogger.engines.motion.network import NetworkMotionEngine

        return NetworkMotionEngine(config, fps=fps, seed=seed, models=models)
    raise InputError(f"unknown motion engine {name!r}: choose one of {', '.join(MOTION_ENGINES)}")

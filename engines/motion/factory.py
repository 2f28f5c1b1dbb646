"""Pick a motion engine by name: ``"hybrid"`` (the default: the teacher's mouth where phoneme timings
are known, the network's where they are not), ``"teacher"`` (phoneme-driven) or ``"network"``
(learned, audio only)."""

from __future__ import annotations

from typing import Any

from vlogger.engines.errors import InputError
from vlogger.engines.motion.base import MotionEngine

__all__ = ["DEFAULT_MOTION_ENGINE", "MOTION_ENGINES", "make_motion_engine"]

#: Names :func:`make_motion_engine` knows.
MOTION_ENGINES = ("hybrid", "teacher", "network")

#: The runtime's default: on the real clips (``benchmarks/motion_network.py``) the network's mouth
#: beats the teacher's loudness fallback on audio without phoneme timings (r 0.41 vs 0.21) and the
#: teacher beats the network where timings are known (0.46 vs 0.40); ``hybrid`` takes each where it
#: is better (0.41 on streamed audio, 0.475 with aligned phonemes). ``teacher`` costs 4 ms less
#: CPU per frame (no network, no Whisper features).
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

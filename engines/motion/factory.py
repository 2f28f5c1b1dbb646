"""Pick a motion engine by name: ``"teacher"`` (phoneme-driven) or ``"network"`` (learned)."""

from __future__ import annotations

from typing import Any

from vlogger.engines.errors import InputError
from vlogger.engines.motion.base import MotionEngine

__all__ = ["DEFAULT_MOTION_ENGINE", "MOTION_ENGINES", "make_motion_engine"]

#: Names :func:`make_motion_engine` knows.
MOTION_ENGINES = ("teacher", "network")

#: The runtime's default. The network becomes the default only where it beats the teacher on the
#: real-clip lip-sync benchmark (``benchmarks/motion_network.py``); see the model card.
DEFAULT_MOTION_ENGINE = "teacher"


def make_motion_engine(
    name: str = DEFAULT_MOTION_ENGINE, config: Any = None, fps: float = 25.0, seed: int = 0
) -> MotionEngine:
    """A motion engine: ``"teacher"`` takes a ``TeacherConfig``, ``"network"`` a ``NetworkConfig``
    (``None`` = defaults)."""
    if name == "teacher":
        from vlogger.engines.motion.teacher import PhonemeMotionEngine

        return PhonemeMotionEngine(config, fps=fps, seed=seed)
    if name == "network":
        from vlogger.engines.motion.network import NetworkMotionEngine

        return NetworkMotionEngine(config, fps=fps, seed=seed)
    raise InputError(f"unknown motion engine {name!r}: choose one of {', '.join(MOTION_ENGINES)}")

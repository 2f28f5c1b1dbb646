"""How many sessions one server holds at 25 fps: the default of ``--max-sessions``.

A model fitted to ``benchmarks/realtime.py`` on a 2-core machine (warp renderer, render processes,
``hybrid`` motion): 4 sessions at 256 px and 2 at 512 px held 25 fps, 5 and 3 did not. A session
costs a fixed part (motion network + Whisper features, TTS, VP8 encoding, RTP) and a part that
grows with its pixels (warp, colour conversion):

    cores per session = FIXED_CORES + PIXEL_CORES * (height / 256) ** 2

which gives 0.5 cores at 256 px and 1.0 at 512 px. A new session past ``cores / that`` is refused
with ``server_busy`` rather than making every session on the box stutter.
"""

from __future__ import annotations

import os

__all__ = ["FIXED_CORES", "PIXEL_CORES", "session_capacity", "usable_cores"]

#: Cores a session costs whatever its size (measured, see the module docstring).
FIXED_CORES = 1.0 / 3.0
#: Cores a 256x256 session's pixels cost on top (scales with the pixel count).
PIXEL_CORES = 1.0 / 6.0


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def session_capacity(height: int, cores: int | None = None) -> int:
    """Sessions of ``height`` px video that ``cores`` cores keep at 25 fps (at least 1)."""
    n = usable_cores() if cores is None else max(1, int(cores))
    per_session = FIXED_CORES + PIXEL_CORES * (max(1, int(height)) / 256.0) ** 2
    return max(1, int(n / per_session + 1e-9))

"""How many sessions one server holds at 25 fps: the default of ``--max-sessions``.

Fitted to ``benchmarks/realtime.py`` on this project's 2-core machine (2026-12-01; warp renderer,
render processes, ``hybrid`` motion): 2 sessions at 256 px held 25 freshly rendered fps and 3 did
not (15 fps); 1 at 512 px did and 2 did not (18.5). (An earlier, quieter day of the same machine
held 4 and 2: the figures follow the machine, so a user who measured more passes
``--max-sessions``.) Two limits, whichever is lower:

* **cores**: a session needs ``FIXED_CORES + PIXEL_CORES * (height / 256) ** 2`` cores of the
  machine to hold 25 fps with headroom (1.0 at 256 px, 2.0 at 512 px; it uses 0.55 and 0.85);
* **the server process**: every session's motion network, Whisper features, TTS, VP8/Opus
  encoding and RTP run in the server process, whose Python threads share one GIL; it stopped
  scaling at about ``MAIN_PROCESS_CORES`` (measured 1.1-1.2 cores at 3-5 sessions), and a session
  costs it ``MAIN_FIXED + MAIN_PIXEL * (height / 256) ** 2`` (0.37 at 256 px, 0.44 at 512 px).

A session past the limit is refused with ``server_busy`` rather than making every session on the
box stutter.
"""

from __future__ import annotations

import os

__all__ = [
    "FIXED_CORES",
    "MAIN_FIXED",
    "MAIN_PIXEL",
    "MAIN_PROCESS_CORES",
    "PIXEL_CORES",
    "session_capacity",
    "usable_cores",
]

#: Machine cores a session needs whatever its size (with the headroom that keeps 25 fps).
FIXED_CORES = 2.0 / 3.0
#: Machine cores a 256x256 session's pixels need on top (scales with the pixel count).
PIXEL_CORES = 1.0 / 3.0
#: What the server process (one GIL) delivers before its sessions fall behind.
MAIN_PROCESS_CORES = 1.15
#: Server-process cores a session costs whatever its size.
MAIN_FIXED = 0.33
#: Server-process cores of a 256x256 session's pixels (colour conversion, VP8) on top.
MAIN_PIXEL = 0.037


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def session_capacity(height: int, cores: int | None = None) -> int:
    """Sessions of ``height`` px video that ``cores`` cores and one server process keep at 25 fps
    (at least 1)."""
    n = usable_cores() if cores is None else max(1, int(cores))
    area = (max(1, int(height)) / 256.0) ** 2
    by_cores = n / (FIXED_CORES + PIXEL_CORES * area)
    by_process = MAIN_PROCESS_CORES / (MAIN_FIXED + MAIN_PIXEL * area)
    return max(1, int(min(by_cores, by_process) + 1e-9))

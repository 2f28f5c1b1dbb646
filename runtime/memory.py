"""Keeping a long-running server's heap from creeping up as sessions come and go (glibc only).

Each session runs native code (VP8/Opus encoders, onnxruntime, CTranslate2, numpy) in threads of
its own. glibc gives threads their own malloc arenas (up to 8 per core) and keeps freed memory in
them, so a server that opened and closed sessions held more and more RSS although no Python or
native object leaked (measured: +3 MB per WebRTC session for the first ten, in steps).
Capping the arenas keeps it flat (``benchmarks/soak.py --churn``: 50 sessions, RSS after the
last within 3.2% of after the first). ``malloc_trim`` after each close gained 0.7 points more but
holds malloc's locks for 10-30 ms, which froze a neighbour's rendering when sessions closed in
bursts: not used. Elsewhere (musl, macOS, Windows) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

__all__ = ["limit_malloc_arenas"]

_LOG = logging.getLogger(__name__)
_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "mallopt") else None
    except OSError:
        return None


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (call before threads start); ``False`` where unsupported."""
    libc = _libc()
    if libc is None:
        return False
    ok = bool(libc.mallopt(_M_ARENA_MAX, max(1, int(arenas))))
    _LOG.debug("malloc arenas capped at %d: %s", arenas, ok)
    return ok

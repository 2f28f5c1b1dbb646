"""Keeping a long-running server's heap from creeping up as sessions come and go (glibc only).

Each session runs native code (VP8/Opus encoders, onnxruntime, CTranslate2, numpy) in threads of
its own. glibc gives threads their own malloc arenas (up to 8 per core) and keeps freed memory in
them, so a server that opened and closed sessions held more and more RSS although no Python or
native object leaked (measured: +3 MB per WebRTC session for the first ten, in steps).
Capping the arenas and trimming the heap after a session closes keeps it flat
(``benchmarks/soak.py --churn``). Elsewhere (musl, macOS, Windows) both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

__all__ = ["limit_malloc_arenas", "trim_heap"]

_LOG = logging.getLogger(__name__)
_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
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


def trim_heap() -> bool:
    """Give freed heap memory back to the system (after a session closed); ``False`` where
    unsupported or nothing was released."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False

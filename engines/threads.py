"""Pin a process's native thread pools (the runtime keeps one core per stream)."""

from __future__ import annotations

__all__ = ["pin_native_threads"]


def pin_native_threads(threads: int = 1) -> None:
    """At most ``threads`` threads in OpenCV and in the BLAS/OpenMP pools numpy uses (for this process,
    until changed). Left alone, numpy's OpenBLAS runs small products on every core and its threads
    spin after each call: the motion network's Whisper features then cost 7.1 ms of CPU per 3.7 ms
    frame on 2 cores instead of 3.8 ms."""
    import cv2

    n = max(1, int(threads))
    cv2.setNumThreads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency; the pools keep their defaults
        return
    threadpool_limits(limits=n)

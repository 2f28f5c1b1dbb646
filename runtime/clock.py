"""The media clock of one session: the single timeline that stamps both audio and video.

Stream time 0 is the moment the first media frame is asked for (the peer connection is up).
Audio sample ``k`` (48 kHz) plays at ``k / 48000`` and video frame ``i`` at ``i / fps`` on this
clock, so sound and lips that share a stream time leave the server together. Before the clock
starts, :meth:`MediaClock.now` is 0: the pipeline prepares the first frames and waits.
"""

from __future__ import annotations

import threading
import time

__all__ = ["MediaClock"]


class MediaClock:
    """Monotonic stream time, shared by the tracks (event loop) and the worker threads."""

    def __init__(self) -> None:
        self._start: float | None = None
        self._lock = threading.Lock()
        self._started = threading.Event()

    def start(self) -> float:
        """Start the clock now if it is not running; return the wall time of stream time 0."""
        with self._lock:
            if self._start is None:
                self._start = time.monotonic()
                self._started.set()
            return self._start

    @property
    def started(self) -> bool:
        return self._start is not None

    def wait_started(self, timeout: float | None = None) -> bool:
        return self._started.wait(timeout)

    def now(self) -> float:
        """Seconds of stream time elapsed (0 before :meth:`start`)."""
        start = self._start
        return 0.0 if start is None else time.monotonic() - start

    def wall(self, stream_time: float) -> float:
        """The ``time.monotonic()`` value at which ``stream_time`` is due (clock must be started)."""
        start = self._start if self._start is not None else self.start()
        return start + stream_time

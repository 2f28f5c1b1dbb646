"""Agent speech as it arrives: ``audio.*`` segments of 16-bit PCM and the session's budget for them.

The event loop appends what the client sends; the session's speech thread takes it in pieces
(:meth:`AudioSegment.chunks`). What a session holds and has not handed on is bounded
(:class:`AudioBudget`), so a client sending faster than real time costs at most that.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator

import numpy as np

from vlogger.engines.types import AudioChunk

__all__ = ["AudioBudget", "AudioRefused", "AudioSegment"]


class AudioRefused(ValueError):
    """PCM an :class:`AudioSegment` does not take; ``code`` is the protocol's error code and
    ``closes`` whether the segment is closed by it (what it holds still plays)."""

    def __init__(self, code: str, message: str, closes: bool) -> None:
        super().__init__(message)
        self.code = code
        self.closes = closes


class AudioBudget:
    """Seconds of agent PCM a session holds that its pipeline has not taken yet (all segments)."""

    def __init__(self, max_seconds: float) -> None:
        self.max_seconds = float(max_seconds)
        self.held = 0.0
        self._lock = threading.Lock()

    def take(self, seconds: float) -> bool:
        """Reserve ``seconds``; ``False`` (nothing reserved) when that would pass the limit."""
        with self._lock:
            if self.held + seconds > self.max_seconds + 1e-9:
                return False
            self.held += seconds
            return True

    def release(self, seconds: float) -> None:
        with self._lock:
            self.held = max(0.0, self.held - seconds)


class AudioSegment:
    """PCM of one ``audio.*`` segment as it arrives (event loop in, speech thread out).

    Held as the 16-bit samples that came (2 bytes each), and only until the speech thread takes
    them; ``budget`` bounds what all of a session's segments hold together.
    """

    def __init__(self, sample_rate: int, max_seconds: float, budget: AudioBudget | None = None) -> None:
        self.sample_rate = sample_rate
        self.max_samples = int(max_seconds * sample_rate)
        self.total = 0
        self.closed = False
        self.budget = budget if budget is not None else AudioBudget(max_seconds)
        self._held = 0  # samples in _parts
        self._parts: collections.deque[np.ndarray] = collections.deque()
        self._cond = threading.Condition()

    def append(self, pcm_s16le: bytes) -> None:
        """Add 16-bit little-endian mono PCM; :class:`AudioRefused` for an odd byte count, a
        segment past its length limit or a session past its buffer."""
        if len(pcm_s16le) % 2:
            raise AudioRefused(
                "bad_audio", "PCM frames must hold whole 16-bit samples (an even number of bytes)", False
            )
        x = np.frombuffer(pcm_s16le, dtype="<i2")
        with self._cond:
            if self.closed:
                return
            if self.total + x.size > self.max_samples:
                raise AudioRefused(
                    "bad_audio",
                    f"audio segment is longer than {self.max_samples / self.sample_rate:g} s",
                    True,
                )
            if not self.budget.take(x.size / self.sample_rate):
                raise AudioRefused(
                    "audio_full",
                    f"the session already holds {self.budget.max_seconds:g} s of agent audio that has "
                    "not played yet: send PCM at most that far ahead of playback",
                    True,
                )
            self.total += x.size
            self._held += x.size
            self._parts.append(x.copy())
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def discard(self) -> None:
        """Close and drop what was not taken (an interruption)."""
        with self._cond:
            self.closed = True
            self._parts.clear()
            self.budget.release(self._held / self.sample_rate)
            self._held = 0
            self._cond.notify_all()

    def chunks(self, prebuffer_s: float, alive: Callable[[], bool]) -> Iterator[AudioChunk]:
        """Chunks on a clock from 0: the first once ``prebuffer_s`` arrived (or the end), then
        whatever is there every 40 ms."""
        pos = 0
        need = max(1, int(prebuffer_s * self.sample_rate))
        min_piece = int(0.04 * self.sample_rate)
        while alive():
            with self._cond:
                avail = self._held
                if not self.closed and avail < need:
                    self._cond.wait(0.02)
                    continue
                if avail == 0 and self.closed:
                    return
                pcm = np.concatenate(list(self._parts)) if avail else np.zeros(0, np.int16)
                self._parts.clear()
                self._held = 0
                self.budget.release(avail / self.sample_rate)
            need = min_piece
            if pcm.size:
                yield AudioChunk(
                    pcm=pcm.astype(np.float32) / 32768.0,
                    sample_rate=self.sample_rate,
                    pts=pos / self.sample_rate,
                )
                pos += pcm.size

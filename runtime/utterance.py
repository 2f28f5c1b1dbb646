"""The utterance model shared by a session's two threads: :class:`Utterance` (a ``say`` or an
``audio.*`` segment from queued to done), the typed messages the speech thread sends the render
thread, re-timing chunks onto the media clock, and the speech thread's helpers."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from vlogger.engines.audio import StreamResampler
from vlogger.engines.types import AudioChunk, PhonemeTiming
from vlogger.runtime.segments import AudioSegment
from vlogger.runtime.tracks import AUDIO_RATE

__all__ = [
    "ClearBuffer",
    "EndOfSegment",
    "PushAudio",
    "SegmentAudio",
    "StreamCommand",
    "Utterance",
    "lower_thread_priority",
    "retime",
]


@dataclass(eq=False)
class Utterance:
    """A ``say`` or an ``audio.*`` segment from queued to done/interrupted."""

    id: str
    text: str | None = None
    audio: AudioSegment | None = None
    received: float = field(default_factory=time.monotonic)
    """``time.monotonic()`` when the request arrived."""
    state: str = "queued"
    start_time: float | None = None
    """Stream time of its first sample once placed."""
    first_frame_ms: float | None = None
    """Milliseconds from the request to the first video frame sent at or after its start."""
    first_audio_ms: float | None = None
    """Milliseconds from the request to its first audio sample sent."""


@dataclass(frozen=True)
class PushAudio:
    """Speech thread -> render thread: a chunk placed on the media clock."""

    chunk: AudioChunk


@dataclass(frozen=True)
class EndOfSegment:
    """Speech thread -> render thread: the utterance's audio is complete."""


@dataclass(frozen=True)
class ClearBuffer:
    """Speech thread -> render thread: interrupted; drop the queued speech at once."""


StreamCommand = PushAudio | EndOfSegment | ClearBuffer


def retime(chunk: AudioChunk, offset: float) -> AudioChunk:
    return AudioChunk(
        pcm=chunk.pcm,
        sample_rate=chunk.sample_rate,
        pts=chunk.pts + offset,
        sample_offset=round((chunk.pts + offset) * chunk.sample_rate),
        phonemes=[
            PhonemeTiming(p.phoneme, p.start + offset, p.end + offset, p.alphabet) for p in chunk.phonemes
        ],
        text=chunk.text,
    )


def lower_thread_priority(nice: int) -> bool:
    """Raise the calling thread's nice value by ``nice`` (Linux: each thread has its own);
    ``False`` where that is not possible. Synthesis runs seconds ahead of playback, so under a
    full CPU it should yield to rendering, which is due every 40 ms."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + int(nice)))
    except OSError:
        return False
    return True


class SegmentAudio:
    """One run of contiguous speech (one rate, no jump in the offset) resampled as a stream to 48 kHz
    (playback) and 16 kHz (echo reference): no clicks between chunks. ``push`` / ``flush`` return
    (start48, pcm48, t16, pcm16); ``flush`` returns the filter's held-back tail (< 1 ms)."""

    def __init__(self, chunk: AudioChunk) -> None:
        self.rate, self.start = int(chunk.sample_rate), float(chunk.pts)
        self._start48 = round(self.start * AUDIO_RATE)
        self._in = self._n48 = self._n16 = 0
        self._to48 = StreamResampler(self.rate, AUDIO_RATE)
        self._to16 = StreamResampler(self.rate, 16000)

    def follows(self, chunk: AudioChunk) -> bool:
        """Whether ``chunk`` continues this run (same rate, starting where the run ends)."""
        end = self.start + self._in / self.rate
        return int(chunk.sample_rate) == self.rate and abs(chunk.pts - end) * self.rate < 0.5

    def push(self, chunk: AudioChunk) -> tuple[int, np.ndarray, float, np.ndarray]:
        self._in += chunk.pcm.size
        return self._out(self._to48.process(chunk.pcm), self._to16.process(chunk.pcm))

    def flush(self) -> tuple[int, np.ndarray, float, np.ndarray]:
        return self._out(self._to48.flush(), self._to16.flush())

    def _out(self, pcm48: np.ndarray, pcm16: np.ndarray) -> tuple[int, np.ndarray, float, np.ndarray]:
        at = (self._start48 + self._n48, pcm48, self.start + self._n16 / 16000, pcm16)
        self._n48 += pcm48.size
        self._n16 += pcm16.size
        return at

"""Paced aiortc tracks fed by the pipeline, and the buffers between them.

* :class:`AudioTimeline`: 48 kHz speech placed at sample positions of the media clock, read in
  20 ms blocks (silence where nothing is placed), with start/end marks per utterance.
* :class:`FrameQueue`: rendered frames keyed by frame index, filled by the render thread.
* :class:`AvatarVideoTrack` / :class:`SpeechAudioTrack`: ``recv`` waits for the frame's due time
  on the shared :class:`~vlogger.runtime.clock.MediaClock` and stamps it with its own pts
  (video: 90 kHz time base, audio: 48 kHz), so one clock times both.
"""

from __future__ import annotations

import asyncio
import fractions
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from vlogger.runtime.clock import MediaClock

__all__ = [
    "AUDIO_BLOCK",
    "AUDIO_RATE",
    "AudioTimeline",
    "AvatarVideoTrack",
    "FrameQueue",
    "SpeechAudioTrack",
    "TrackCounters",
]

#: WebRTC audio: 48 kHz, 20 ms packets.
AUDIO_RATE = 48_000
AUDIO_BLOCK = 960
_VIDEO_CLOCK = 90_000
_VIDEO_TIME_BASE = fractions.Fraction(1, _VIDEO_CLOCK)
_AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)


class AudioTimeline:
    """Speech samples at absolute 48 kHz positions; thread-safe (writers: TTS thread, reader:
    the audio track on the event loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._segments: list[tuple[int, np.ndarray]] = []
        self._marks: list[tuple[int, Hashable, str]] = []
        self._read_pos = 0
        self._end = 0

    @property
    def read_pos(self) -> int:
        """First sample not yet read by the track."""
        return self._read_pos

    def end_sample(self) -> int:
        """One past the last sample placed so far (or the read position when that is later)."""
        with self._lock:
            return max(self._end, self._read_pos)

    def buffered_seconds(self) -> float:
        with self._lock:
            return max(0, self._end - self._read_pos) / AUDIO_RATE

    def schedule(self, start: int, pcm: np.ndarray) -> None:
        """Place mono float32 ``pcm`` (48 kHz) so its first sample plays at sample ``start``."""
        pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
        with self._lock:
            if start < self._read_pos:  # too late for its head: drop what is already past
                pcm = pcm[self._read_pos - start :]
                start = self._read_pos
            if pcm.size:
                self._segments.append((start, pcm))
                self._end = max(self._end, start + pcm.size)

    def mark(self, sample: int, key: Hashable, what: str) -> None:
        """Report ``(key, what)`` from :meth:`read` once the block holding ``sample`` is read
        (for an end mark pass the index of the last sample)."""
        with self._lock:
            self._marks.append((max(sample, self._read_pos), key, what))

    def flush(self) -> None:
        """Drop everything not yet read (interruption)."""
        with self._lock:
            self._segments.clear()
            self._marks.clear()
            self._end = self._read_pos

    def read(self, pos: int, n: int) -> tuple[np.ndarray, list[tuple[Hashable, str]]]:
        """Samples ``[pos, pos+n)`` mixed from what was placed, and the marks they pass."""
        out = np.zeros(n, dtype=np.float32)
        end = pos + n
        with self._lock:
            keep: list[tuple[int, np.ndarray]] = []
            for start, pcm in self._segments:
                stop = start + pcm.size
                if stop <= pos:
                    continue
                if start < end:
                    a, b = max(start, pos), min(stop, end)
                    out[a - pos : b - pos] += pcm[a - start : b - start]
                keep.append((start, pcm))
            self._segments = keep
            passed = [(k, w) for s, k, w in self._marks if s < end]
            self._marks = [m for m in self._marks if m[0] >= end]
            self._read_pos = max(self._read_pos, end)
        return out, passed


class FrameQueue:
    """Rendered frames by index (render thread in, video track out); holds at most ``capacity``."""

    def __init__(self, capacity: int = 50) -> None:
        self._lock = threading.Lock()
        self._frames: dict[int, av.VideoFrame] = {}
        self._capacity = capacity

    def put(self, index: int, frame: av.VideoFrame) -> None:
        with self._lock:
            self._frames[index] = frame
            while len(self._frames) > self._capacity:
                del self._frames[min(self._frames)]

    def take(self, index: int) -> tuple[int, av.VideoFrame] | None:
        """The frame ``index`` (or, when the renderer skipped it, the next later one that is
        queued); frames before it are dropped. ``None`` when nothing at or after it is ready."""
        with self._lock:
            for i in [i for i in self._frames if i < index]:
                del self._frames[i]
            if not self._frames:
                return None
            first = min(self._frames)
            return first, self._frames.pop(first)

    def flush(self) -> None:
        with self._lock:
            self._frames.clear()

    def __len__(self) -> int:
        return len(self._frames)


@dataclass
class TrackCounters:
    """What a track has sent (read by the stats loop)."""

    sent: int = 0
    """Frames (video) or 20 ms blocks (audio) sent."""
    fresh: int = 0
    """Video frames sent that were newly rendered (not a repeat of the last one)."""
    repeats: int = 0
    """Video frames that repeated the previous picture because the renderer was late."""
    skipped: int = 0
    """Frame slots or audio blocks skipped to catch up with the clock."""


async def _sleep_until(wall: float) -> None:
    delay = wall - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


class AvatarVideoTrack(MediaStreamTrack):
    """Video frames from a :class:`FrameQueue`, paced at ``fps`` on the media clock."""

    kind = "video"

    def __init__(
        self,
        clock: MediaClock,
        frames: FrameQueue,
        fps: float,
        on_sent: Callable[[int], None] | None = None,
        wait_for_frame_s: float = 0.03,
        size: tuple[int, int] = (256, 256),
        placeholder: av.VideoFrame | None = None,
    ) -> None:
        super().__init__()
        self.size = size
        """(width, height) of the black frames sent before the first rendered one."""
        self.placeholder = placeholder
        """Sent (instead of black) until the first rendered frame: e.g. the still photo."""
        self._clock = clock
        self._frames = frames
        self._fps = float(fps)
        self._on_sent = on_sent
        self._wait = wait_for_frame_s
        self._next: int | None = None
        self._last: av.VideoFrame | None = None
        self.counters = TrackCounters()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        self._clock.start()
        now_index = int(self._clock.now() * self._fps)
        if self._next is None:
            n = now_index
        else:
            n = self._next
            if n < now_index - 2:  # fell behind (loop stall): jump to the present
                self.counters.skipped += now_index - n
                n = now_index
        await _sleep_until(self._clock.wall(n / self._fps))
        got = self._frames.take(n)
        picture: av.VideoFrame | None
        deadline = time.monotonic() + self._wait
        while got is None and time.monotonic() < deadline:
            await asyncio.sleep(0.004)
            got = self._frames.take(n)
        if got is not None:
            index, picture = got
            if index > n + 2:  # only far-future frames: hold the picture, keep the slot
                self._frames.put(index, picture)
                picture, index = self._last, n
            else:
                if index > n:
                    self.counters.skipped += index - n
                n = index
            fresh = picture is not self._last
        else:
            picture, fresh = self._last, False
        if picture is None and self.placeholder is not None:  # nothing rendered yet
            picture = self.placeholder
        if picture is None:  # nothing rendered yet: a black frame of the session's size
            picture = av.VideoFrame(width=self.size[0], height=self.size[1], format="yuv420p")
            for k, p in enumerate(picture.planes):
                p.update(bytes([0 if k == 0 else 128]) * p.buffer_size)
        self._last = picture
        self._next = n + 1
        self.counters.sent += 1
        if fresh:
            self.counters.fresh += 1
        else:
            self.counters.repeats += 1
        out = picture  # the sender encodes it before asking again, so reuse is safe
        out.pts = round(n * _VIDEO_CLOCK / self._fps)
        out.time_base = _VIDEO_TIME_BASE
        if self._on_sent is not None:
            self._on_sent(n)
        return out


class SpeechAudioTrack(MediaStreamTrack):
    """20 ms blocks of 48 kHz mono s16 from an :class:`AudioTimeline` (silence between speech)."""

    kind = "audio"

    def __init__(
        self,
        clock: MediaClock,
        timeline: AudioTimeline,
        on_marks: Callable[[list[tuple[Hashable, str]]], None] | None = None,
    ) -> None:
        super().__init__()
        self._clock = clock
        self._timeline = timeline
        self._on_marks = on_marks
        self._next: int | None = None
        self.counters = TrackCounters()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        self._clock.start()
        now_block = int(self._clock.now() * AUDIO_RATE / AUDIO_BLOCK)
        if self._next is None:
            k = now_block
        else:
            k = self._next
            if k < now_block - 5:
                self.counters.skipped += now_block - k
                k = now_block
        await _sleep_until(self._clock.wall(k * AUDIO_BLOCK / AUDIO_RATE))
        pcm, marks = self._timeline.read(k * AUDIO_BLOCK, AUDIO_BLOCK)
        self._next = k + 1
        self.counters.sent += 1
        s16 = (np.clip(pcm, -1.0, 1.0) * 32767.0).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(s16.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = k * AUDIO_BLOCK
        frame.time_base = _AUDIO_TIME_BASE
        if marks and self._on_marks is not None:
            self._on_marks(marks)
        return frame

"""``AvatarStream``: timed audio in, timed frames out, for one avatar.

The one loop every front end shares (``vlogger render``, the server's sessions, the framework
adapters): audio chunks on the stream clock go to the motion engine, each motion frame is posed by
the avatar's rig and drawn by the renderer, and every frame comes out with its pts and the audio
that plays during it. Nothing here is async and nothing waits: the caller decides when to ask for
frames (a media clock, a file writer, a framework's pacing).

Shape of livekit's ``VideoGenerator``: :meth:`push_audio` (timed PCM, phoneme timings when known),
:meth:`end_of_segment`, :meth:`clear_buffer` (interruption: queued audio and frames dropped at once;
returns the playback position reached), and :meth:`frames` ``(until_pts)``. When nothing is said
the motion engine idles (blinks, gaze, breathing), so frames never stop.

Back-pressure: the stream holds at most ``StreamConfig.max_buffered_s`` seconds of audio ahead of
the frames already handed out; :meth:`push_audio` raises :class:`BufferFull` instead of growing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from vlogger.engines.audio import StreamResampler
from vlogger.engines.errors import InputError
from vlogger.engines.motion.base import MotionEngine, checked_pcm
from vlogger.engines.render.base import Renderer
from vlogger.engines.types import AudioChunk, MotionFrame

__all__ = ["AvatarStream", "BufferFull", "PosingAvatar", "StreamConfig", "StreamFrame"]

P = TypeVar("P")


class BufferFull(InputError):
    """More audio was pushed than the stream holds (``StreamConfig.max_buffered_s`` ahead of the
    frames taken): wait for frames to be taken, then push again."""

    code = "buffer_full"


class PosingAvatar(Protocol):
    """What the stream needs of an avatar: its rig (``rig.pose(MotionFrame) -> PosedFrame``)."""

    @property
    def rig(self) -> Any: ...


@dataclass(frozen=True)
class StreamConfig:
    """How an :class:`AvatarStream` buffers and times its output."""

    fps: float = 25.0
    """Frames per second of the stream clock (frame ``i`` at ``i / fps``)."""
    audio_rate: int | None = 48000
    """Rate of the audio handed out with each frame; None: frames carry no audio (the caller plays
    the audio itself, as the server's sessions do)."""
    max_buffered_s: float = 30.0
    """Audio held ahead of the frames already taken, in seconds; more is refused (BufferFull)."""
    causal: bool = True
    """Draw each frame as it comes (``Renderer.render``: live streams); False: let a windowed
    renderer hold frames back for better windows (``push`` / ``flush``: files)."""


@dataclass
class StreamFrame(Generic[P]):
    """One frame of the stream: the picture, when it shows, and the audio that plays during it."""

    index: int
    """Frame number on the stream clock."""
    pts: float
    """Presentation time in seconds (``index / fps``)."""
    picture: P
    """What the renderer drew (RGB uint8 array for the engines' renderers)."""
    motion: MotionFrame
    """The motion frame it was drawn from."""
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    """Float32 mono samples at ``StreamConfig.audio_rate`` for [pts, pts + 1/fps) (silence where
    nothing was said; empty when the stream keeps no audio)."""


class _Samples:
    """Mono float32 samples by absolute sample index, silence where nothing was written.

    Per-frame cost is the frame's samples: the storage grows by doubling and is compacted only when
    more than half of it lies before the read position (no copy of the whole buffer per chunk or
    per frame).
    """

    def __init__(self) -> None:
        self._buf = np.zeros(4096, np.float32)
        self._head = 0
        """Position in ``_buf`` of sample index ``_base``."""
        self._base = 0
        self._size = 0
        """Samples held from ``_base`` on."""

    def _reserve(self, size: int) -> None:
        """Room for ``size`` samples from ``_base`` on; everything past the held samples is zero."""
        if self._head + size <= self._buf.size:
            return
        held = self._buf[self._head : self._head + self._size].copy()
        cap = self._buf.size if size <= self._buf.size // 2 else max(size, 2 * self._buf.size)
        buf = self._buf if cap == self._buf.size else np.zeros(cap, np.float32)
        buf[:] = 0.0
        buf[: held.size] = held
        self._buf, self._head = buf, 0

    def write(self, start: int, pcm: np.ndarray) -> None:
        if start < self._base:  # before what was already handed out: keep only the rest
            pcm = pcm[self._base - start :]
            start = self._base
        if pcm.size == 0:
            return
        end = start + pcm.size - self._base
        self._reserve(end)
        at = self._head + start - self._base
        self._buf[at : at + pcm.size] = pcm
        self._size = max(self._size, end)

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.zeros(max(0, stop - start), np.float32)
        lo, hi = max(start, self._base), min(stop, self._base + self._size)
        if hi > lo:
            a = self._head + lo - self._base
            out[lo - start : hi - start] = self._buf[a : a + hi - lo]
        return out

    def drop_before(self, index: int) -> None:
        if index > self._base:  # past the held samples the storage is zero, so moving on is enough
            step = index - self._base
            self._head += step
            self._size = max(0, self._size - step)
            self._base = index

    def drop_from(self, index: int) -> None:
        keep = max(0, index - self._base)
        if keep < self._size:
            self._buf[self._head + keep : self._head + self._size] = 0.0
            self._size = keep


class AvatarStream(Generic[P]):
    """One avatar, one motion engine, one renderer: timed audio in, timed frames out.

    Synchronous and single-threaded: call it from one thread (the server's render thread, the
    render job's loop, an adapter's worker). ``renderer`` may be any :class:`Renderer` (the warp
    renderer, the windowed diffusion renderer, the server's per-session render process proxy).
    """

    def __init__(
        self,
        avatar: PosingAvatar,
        motion: MotionEngine,
        renderer: Renderer[P],
        config: StreamConfig | None = None,
    ) -> None:
        self.config = config or StreamConfig()
        self.fps = float(self.config.fps)
        if abs(float(motion.fps) - self.fps) > 1e-9:
            raise ValueError(f"the motion engine runs at {motion.fps} fps, the stream at {self.fps}")
        self.avatar = avatar
        self.motion = motion
        self.renderer = renderer
        self._audio = _Samples()
        self._resampler: StreamResampler | None = None
        self._resampler_rate = 0
        self._resampled_at = 0
        """Sample index (at ``audio_rate``) where the resampler's next output goes."""
        self._audio_end = 0.0
        """Stream time where the pushed audio ends."""
        self._taken = 0.0
        """Stream time up to which frames were handed out (the playback position)."""
        self._pending: deque[MotionFrame] = deque()
        """Motion frames given to a windowed renderer whose pictures have not come out yet."""

    # -- input -----------------------------------------------------------------------------------

    def buffered_s(self) -> float:
        """Seconds of pushed audio ahead of the frames handed out."""
        return max(0.0, self._audio_end - self._taken)

    def push_audio(self, chunk: AudioChunk) -> None:
        """Queue timed speech (``chunk.pts`` on the stream clock; gaps are silence).

        Raises :class:`BufferFull` (nothing queued) when the stream would hold more than
        ``max_buffered_s`` ahead of the frames taken, InputError for a malformed chunk.
        """
        pcm = checked_pcm(chunk)
        end = chunk.pts + pcm.size / float(chunk.sample_rate)
        if end - self._taken > self.config.max_buffered_s + 1e-9:
            raise BufferFull(
                f"the avatar stream already holds {self.buffered_s():.1f} s of audio (at most "
                f"{self.config.max_buffered_s:g} s ahead of playback): wait, then send the rest"
            )
        self.motion.push_audio(chunk)
        self._audio_end = max(self._audio_end, end)
        rate = self.config.audio_rate
        if rate is None:
            return
        if self._resampler is None or self._resampler_rate != chunk.sample_rate:
            self._flush_resampler()
            self._resampler = StreamResampler(chunk.sample_rate, rate)
            self._resampler_rate = chunk.sample_rate
            self._resampled_at = round(chunk.pts * rate)
        out = self._resampler.process(pcm)
        self._audio.write(self._resampled_at, out)
        self._resampled_at += out.size

    def end_of_segment(self) -> None:
        """The current piece of speech is complete: its last frames need no more lookahead."""
        self.motion.end_of_input()
        self._flush_resampler()

    def _flush_resampler(self) -> None:
        if self._resampler is not None:
            tail = self._resampler.flush()
            self._audio.write(self._resampled_at, tail)
            self._resampler = None

    def clear_buffer(self) -> float:
        """Interrupt: drop queued audio and frames not yet handed out, now. Returns the playback
        position reached (stream seconds up to which frames were taken)."""
        self.motion.clear_buffer()
        self._resampler = None
        rate = self.config.audio_rate
        if rate is not None:
            self._audio.drop_from(round(self._taken * rate))
        self._audio_end = self._taken
        if self._pending:  # a windowed renderer's frames in flight belong to the cut speech
            self._pending.clear()
            self.renderer.reset()
        return self._taken

    def switch(self, avatar: PosingAvatar, renderer: Renderer[P]) -> Renderer[P]:
        """Draw with ``avatar`` and ``renderer`` from the next frame on; returns the old renderer
        (the caller closes it, possibly elsewhere)."""
        old = self.renderer
        self.avatar, self.renderer = avatar, renderer
        self._pending.clear()
        return old

    # -- output ----------------------------------------------------------------------------------

    def ready_until(self) -> float:
        """Stream time up to which frames can be made now without waiting for audio."""
        return self.motion.ready_until()

    def frames(self, until_pts: float, latest_only: bool = False) -> list[StreamFrame[P]]:
        """The next frames with pts < ``until_pts``, in order. ``latest_only``: draw only the last
        of them (a caller running late); the motion engine still steps through all of them."""
        motion = self.motion.frames(until_pts)
        if not motion:
            return []
        if latest_only:
            motion = motion[-1:]
        out: list[StreamFrame[P]] = []
        for mf in motion:
            posed = self.avatar.rig.pose(mf)
            self._pending.append(mf)
            drawn = [self.renderer.render(posed)] if self.config.causal else self.renderer.push(posed)
            out.extend(self._emit(drawn))
        return out

    def flush(self) -> list[StreamFrame[P]]:
        """The frames a windowed renderer still holds (end of a render job)."""
        return [] if self.config.causal else self._emit(self.renderer.flush())

    def _emit(self, pictures: list[P]) -> list[StreamFrame[P]]:
        out = []
        dt = 1.0 / self.fps
        rate = self.config.audio_rate
        for picture in pictures:
            mf = self._pending.popleft()
            frame = StreamFrame(mf.index, mf.pts, picture, mf)
            if rate is not None:
                a, b = round(mf.pts * rate), round((mf.pts + dt) * rate)
                frame.audio = self._audio.read(a, b)
                self._audio.drop_before(b)
            self._taken = max(self._taken, mf.pts + dt)
            out.append(frame)
        return out

    def close(self) -> None:
        """Close the renderer (the motion engine and avatar hold no external resources)."""
        self.renderer.close()

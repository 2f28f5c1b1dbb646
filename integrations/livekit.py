"""A vlogger avatar as a LiveKit Agents ``VideoGenerator`` (``livekit-agents`` 1.8).

:class:`VloggerVideoGenerator` drives one :class:`~vlogger.engines.stream.AvatarStream` for
LiveKit's ``AvatarRunner``: the runner pushes the agent's speech (``rtc.AudioFrame``, any rate from
8 to 48 kHz, mono or stereo, then ``AudioSegmentEnd``) with :meth:`~VloggerVideoGenerator.push_audio`
and forwards what the generator yields (``rtc.VideoFrame``, ``rtc.AudioFrame`` and
``AudioSegmentEnd``) to its ``rtc.AVSynchronizer``, whose bounded queues pace the generator at the
video frame rate; the generator itself never sleeps while it has frames to give.

Timing, as the runner expects it (``livekit/agents/voice/avatar/_runner.py``):

- every video frame comes with the audio that plays during it (``StreamFrame.audio`` at
  ``audio_sample_rate``, mono int16), but only while pushed speech covers the frame: idle frames
  carry no audio, so the runner's playback position (the sum of the audio frames it forwarded)
  is the speech played, and ``notify_playback_started`` fires with the speech, not the idling;
- ``AudioSegmentEnd`` follows the last frame of a segment (at once for a segment without audio);
- :meth:`~VloggerVideoGenerator.clear_buffer` (an interruption) drops the queued speech at once:
  nothing drawn before it leaves the generator afterwards (the next frame is drawn after the
  clear; the motion engine's mouth closes over its next frame or two). The runner reports
  ``playback_finished`` with its position and ``interrupted=True``; the generator has nothing to
  answer (:class:`~vlogger.integrations.livekit_runner.VloggerAvatarRunner` also empties the
  runner's own queues and reports the position heard).

The motion engine and the renderer run in one worker thread of the generator's own (the stream is
single-threaded), never on the event loop. Memory stays bounded: the generator draws one frame
ahead of its consumer, and :meth:`~VloggerVideoGenerator.push_audio` waits while more than
``max_buffered_s`` of speech is queued ahead of the frames taken. Errors are logged, never raised
into the framework.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import cv2
import numpy as np
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd, AvatarOptions, VideoGenerator

from vlogger.engines.errors import BadAudio, InputError
from vlogger.engines.stream import AvatarStream, StreamFrame
from vlogger.engines.types import AudioChunk

if TYPE_CHECKING:
    from vlogger.runtime.config import VloggerConfig

__all__ = [
    "MAX_INPUT_RATE",
    "MIN_INPUT_RATE",
    "VloggerVideoGenerator",
    "audio_frame_to_mono",
    "build_avatar_stream",
]

_LOG = logging.getLogger(__name__)

#: Input sample rates :meth:`VloggerVideoGenerator.push_audio` accepts (Hz).
MIN_INPUT_RATE = 8000
MAX_INPUT_RATE = 48000

VideoFormat = Literal["i420", "rgba"]
Item: TypeAlias = "rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd"

_MAX_FAILED_STEPS = 50
"""Consecutive failed frames after which the generator stops (a renderer that cannot draw)."""


def audio_frame_to_mono(frame: rtc.AudioFrame) -> np.ndarray:
    """An ``rtc.AudioFrame`` (int16, interleaved) as mono float32 in [-1, 1] (channels averaged)."""
    channels = max(1, int(frame.num_channels))
    n = int(frame.samples_per_channel)
    data = np.frombuffer(frame.data, dtype=np.int16)[: n * channels]
    x = data.astype(np.float32) / 32768.0
    return x.reshape(n, channels).mean(axis=1) if channels > 1 else x


def build_avatar_stream(
    config: VloggerConfig | None = None,
    photo: bytes | str | Path | None = None,
    *,
    audio_sample_rate: int = 48000,
    seed: int | None = None,
    max_buffered_s: float = 30.0,
    models: Any = None,
    threads: int | None = 1,
) -> AvatarStream[Any]:
    """An avatar stream for a live session, as ``config`` says: the photo (``None``: the
    configured default, else the shipped portrait) at ``output.height``, the configured motion
    engine at ``output.fps`` and renderer, drawing each frame as it comes (causal), with the frames'
    audio at ``audio_sample_rate``. ``models``: the motion network's models from
    ``config.load_motion_models()``, loaded once and shared by every stream made with them (None:
    loaded here). ``threads``: pins this process's OpenCV and BLAS thread pools to that many
    threads (``vlogger.engines.threads.pin_native_threads``, as ``vlogger serve`` does: left alone,
    numpy's pool spins on every core and a session costs 2-3x the CPU); ``None`` leaves them as
    they are. Blocking (loads models, fits the photo): call it from a worker thread. Raises
    ``InputError`` for a bad photo or an unknown renderer (built by
    :func:`vlogger.runtime.live_stream.build_live_stream`)."""
    from vlogger.runtime.live_stream import build_live_stream

    if threads is not None:
        from vlogger.engines.threads import pin_native_threads

        pin_native_threads(threads)
    return build_live_stream(
        config, photo, audio_rate=audio_sample_rate, seed=seed, models=models, max_buffered_s=max_buffered_s
    )


@dataclass
class _Push:
    pcm: np.ndarray
    rate: int


class _End:
    pass


class _Clear:
    pass


@dataclass
class _Out:
    """One item for the framework, tagged with the interruption count it was made under."""

    item: Item
    generation: int
    frame: StreamFrame[Any] | None = None


class VloggerVideoGenerator(VideoGenerator):
    """LiveKit's ``VideoGenerator`` over a vlogger :class:`AvatarStream` (see the module docs).

    ``stream`` must be causal and keep its frames' audio (``StreamConfig.audio_rate``); build one
    with :func:`build_avatar_stream`, or the whole generator with :meth:`create`. ``video_format``:
    ``"i420"`` (the default: what WebRTC encodes, converted in the worker thread) or ``"rgba"``.
    ``on_frame``: called on the event loop with each :class:`StreamFrame` as its video frame is
    yielded (pts, motion; for metrics and tests). ``stall_s``: how long a frame waits for more
    speech when the pushed audio runs out mid-segment before the engine finalises without it.
    """

    def __init__(
        self,
        stream: AvatarStream[Any],
        *,
        video_format: VideoFormat = "i420",
        on_frame: Callable[[StreamFrame[Any]], None] | None = None,
        stall_s: float | None = None,
    ) -> None:
        rate = stream.config.audio_rate
        if rate is None:
            raise ValueError("the avatar stream must keep its frames' audio (StreamConfig.audio_rate)")
        if not stream.config.causal:
            raise ValueError("a live avatar stream draws each frame as it comes (StreamConfig.causal)")
        if video_format not in ("i420", "rgba"):
            raise ValueError(f"video_format must be 'i420' or 'rgba', not {video_format!r}")
        self.stream = stream
        self.fps = stream.fps
        self.audio_sample_rate = int(rate)
        self.video_format: VideoFormat = video_format
        self.on_frame = on_frame
        self.stall_s = 1.0 / self.fps if stall_s is None else float(stall_s)
        image = getattr(stream.avatar, "image", None)
        self.width = int(image.shape[1]) if image is not None else 0
        self.height = int(image.shape[0]) if image is not None else 0
        # what the max pushed-ahead audio may reach before push_audio waits (below BufferFull)
        self._limit_s = 0.9 * stream.config.max_buffered_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlogger-livekit")
        # shared between the event loop and the worker, under _cond
        self._cond = threading.Condition()
        self._inbox: deque[_Push | _End | _Clear] = deque()
        self._inbox_s = 0.0
        self._buffered_s = 0.0
        self._generation = 0
        self._closed = False
        # the event loop's
        self._space: asyncio.Event | None = None
        self._pending: asyncio.Future[list[_Out]] | None = None
        self._ready: deque[_Out] = deque()
        """What the last step made, not yet yielded (one frame's worth)."""
        # the worker's
        self._next_index = 0
        self._audio_end = 0.0
        self._seg_audio = False
        self._seg_ended = False
        self._last_video: rtc.VideoFrame | None = None
        self._failed = 0

    @classmethod
    async def create(
        cls,
        config: VloggerConfig | None = None,
        photo: bytes | str | Path | None = None,
        *,
        audio_sample_rate: int = 48000,
        seed: int | None = None,
        video_format: VideoFormat = "i420",
        models: Any = None,
        threads: int | None = 1,
    ) -> VloggerVideoGenerator:
        """Build the stream (:func:`build_avatar_stream`: ``models`` shared when given, ``threads``
        pins the process's native pools) in a worker thread, then the generator."""
        stream = await asyncio.to_thread(
            build_avatar_stream,
            config,
            photo,
            audio_sample_rate=audio_sample_rate,
            seed=seed,
            models=models,
            threads=threads,
        )
        return cls(stream, video_format=video_format)

    def avatar_options(self, audio_channels: int = 1) -> AvatarOptions:
        """``AvatarOptions`` for an ``AvatarRunner`` publishing this generator's output."""
        return AvatarOptions(
            video_width=self.width,
            video_height=self.height,
            video_fps=self.fps,
            audio_sample_rate=self.audio_sample_rate,
            audio_channels=audio_channels,
        )

    # -- input (event loop) ----------------------------------------------------------------------

    def _ahead_s(self) -> float:
        with self._cond:
            return self._buffered_s + self._inbox_s

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        """Queue the agent's speech, or end the segment (``AudioSegmentEnd``). Waits (never
        raises) while more than ``max_buffered_s`` of speech is ahead of the frames taken; a frame
        pushed before an interruption and still waiting is dropped. Bad frames are logged."""
        try:
            if isinstance(frame, AudioSegmentEnd):
                self._enqueue(_End())
                return
            rate = int(frame.sample_rate)
            if not MIN_INPUT_RATE <= rate <= MAX_INPUT_RATE:
                raise BadAudio(
                    f"audio at {rate} Hz: the avatar takes {MIN_INPUT_RATE} to {MAX_INPUT_RATE} Hz"
                )
            pcm = audio_frame_to_mono(frame)
            if pcm.size == 0:
                return
            seconds = pcm.size / rate
            generation = self._generation
            if self._space is None:
                self._space = asyncio.Event()
            while (
                not self._closed
                and generation == self._generation
                and self._ahead_s() > 0.0
                and self._ahead_s() + seconds > self._limit_s
            ):
                self._space.clear()
                await self._space.wait()
            if self._closed or generation != self._generation:
                return  # interrupted while waiting: this frame belongs to the cut speech
            self._enqueue(_Push(pcm, rate), seconds)
        except InputError as e:
            _LOG.error("vlogger avatar: dropped an audio frame (%s): %s", e.code, e)
        except Exception:
            _LOG.exception("vlogger avatar: push_audio failed")

    def clear_buffer(self) -> None:
        """Interruption: the queued speech is dropped at once; what was drawn for it before and
        not yet yielded stays unheard (its audio and segment end are discarded)."""
        with self._cond:
            self._generation += 1
            self._inbox = deque(c for c in self._inbox if isinstance(c, _Clear))
            self._inbox.append(_Clear())
            self._inbox_s = 0.0
            self._buffered_s = 0.0
            self._cond.notify_all()
        if self._space is not None:
            self._space.set()

    def _enqueue(self, cmd: _Push | _End | _Clear, seconds: float = 0.0) -> None:
        with self._cond:
            self._inbox.append(cmd)
            self._inbox_s += seconds
            self._cond.notify_all()

    # -- output ----------------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Item]:
        return self

    async def __anext__(self) -> Item:
        """The next item: a drawn frame's video, then its audio while speech covers it, and
        ``AudioSegmentEnd`` after a segment's last frame. A consumer may stop and iterate again;
        nothing drawn is lost in between."""
        loop = asyncio.get_running_loop()
        if self._space is None:
            self._space = asyncio.Event()
        while not self._closed:
            while self._ready:
                out = self._ready.popleft()
                if out.generation != self._generation:
                    continue  # drawn before an interruption: its speech is never heard nor seen
                if out.frame is not None and self.on_frame is not None:
                    try:
                        self.on_frame(out.frame)
                    except Exception:
                        _LOG.exception("vlogger avatar: on_frame callback failed")
                return out.item
            if self._pending is None or self._pending.cancelled():
                self._pending = loop.run_in_executor(self._executor, self._safe_step)
            # shielded: a cancelled consumer leaves the frame being drawn for the next one
            outs = await asyncio.shield(self._pending)
            self._pending = None
            if self._failed >= _MAX_FAILED_STEPS:
                _LOG.error("vlogger avatar: %d frames in a row failed; the avatar stops", self._failed)
                self._closed = True
                break
            # draw the next frame while the consumer paces this one
            self._pending = loop.run_in_executor(self._executor, self._safe_step)
            self._space.set()
            if not outs:
                await asyncio.sleep(0.25 / self.fps)  # nothing drawable yet: do not spin
            self._ready.extend(outs)
        raise StopAsyncIteration

    # -- the worker thread -----------------------------------------------------------------------

    def _safe_step(self) -> list[_Out]:
        try:
            out = self._step()
            self._failed = 0
            return out
        except Exception as e:
            self._failed += 1
            if self._failed == 1 or self._failed == _MAX_FAILED_STEPS:
                _LOG.error("vlogger avatar: a frame failed (%s: %s)", type(e).__name__, e, exc_info=True)
            # keep the last picture up
            if self._last_video is not None:
                with self._cond:
                    generation = self._generation
                return [_Out(self._last_video, generation)]
            return []

    def _drain(self, out: list[_Out]) -> int:
        """Apply the queued commands; returns the interruption count they leave."""
        with self._cond:
            cmds = list(self._inbox)
            self._inbox.clear()
            self._inbox_s = 0.0
            generation = self._generation
        for cmd in cmds:
            if isinstance(cmd, _Clear):
                self.stream.clear_buffer()
                self._audio_end = self._next_index / self.fps
                self._seg_audio = self._seg_ended = False
            elif isinstance(cmd, _End):
                self.stream.end_of_segment()
                self._seg_ended = True
                self._segment_end(out, generation)
            else:
                pts = max(self._audio_end, self._next_index / self.fps)
                try:
                    self.stream.push_audio(AudioChunk(pcm=cmd.pcm, sample_rate=cmd.rate, pts=pts))
                except InputError as e:
                    _LOG.error("vlogger avatar: dropped audio (%s): %s", e.code, e)
                    continue
                self._audio_end = pts + cmd.pcm.size / cmd.rate
                self._seg_audio = True
        with self._cond:
            self._buffered_s = self.stream.buffered_s()
        return generation

    def _segment_end(self, out: list[_Out], generation: int) -> None:
        """Emit ``AudioSegmentEnd`` once an ended segment's frames are all out."""
        if self._seg_ended and (not self._seg_audio or self._next_index / self.fps >= self._audio_end - 1e-9):
            out.append(_Out(AudioSegmentEnd(), generation))
            self._seg_audio = self._seg_ended = False

    def _step(self) -> list[_Out]:
        """Apply the commands, then draw the next frame (blocking: the worker thread only)."""
        out: list[_Out] = []
        generation = self._drain(out)
        dt = 1.0 / self.fps
        until = (self._next_index + 1) * dt
        if self.stream.ready_until() < until - 1e-9:
            # the motion engine waits for lookahead: give the speech a moment, then finalise
            with self._cond:
                if not self._inbox:
                    self._cond.wait(self.stall_s)
            generation = self._drain(out)
            if self.stream.ready_until() < until - 1e-9:
                self.stream.end_of_segment()
        frames = self.stream.frames(until)
        for f in frames:
            video = self._video_frame(f.picture)
            self._last_video = video
            out.append(_Out(video, generation, f))
            if f.pts < self._audio_end - 1e-9:
                out.append(_Out(self._audio_frame(f.audio), generation))
            self._next_index = f.index + 1
        with self._cond:
            self._buffered_s = self.stream.buffered_s()
        self._segment_end(out, generation)
        return out

    def _video_frame(self, picture: Any) -> rtc.VideoFrame:
        rgb = np.ascontiguousarray(np.asarray(picture, dtype=np.uint8)[..., :3])
        if self.video_format == "i420":
            i420, w, h = _rgb_to_i420(rgb)
            return rtc.VideoFrame(w, h, rtc.VideoBufferType.I420, i420.tobytes())
        h, w = rgb.shape[:2]
        rgba = np.empty((h, w, 4), np.uint8)
        rgba[..., :3] = rgb
        rgba[..., 3] = 255
        return rtc.VideoFrame(w, h, rtc.VideoBufferType.RGBA, rgba.tobytes())

    def _audio_frame(self, audio: np.ndarray) -> rtc.AudioFrame:
        pcm = np.clip(np.round(np.asarray(audio, np.float32) * 32767.0), -32768, 32767).astype(np.int16)
        return rtc.AudioFrame(pcm.tobytes(), self.audio_sample_rate, 1, int(pcm.size))

    # -- end -------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop: the iteration ends, waiting pushes return, the worker and the renderer close."""
        self._closed = True
        with self._cond:
            self._cond.notify_all()
        if self._space is not None:
            self._space.set()
        await asyncio.to_thread(self._executor.shutdown, True)
        try:
            await asyncio.to_thread(self.stream.close)
        except Exception:
            _LOG.exception("vlogger avatar: closing the renderer failed")


def _rgb_to_i420(rgb: np.ndarray) -> tuple[np.ndarray, int, int]:
    """RGB uint8 (H, W, 3) to planar I420 (BT.601 limited range): the Y plane, then U and V at
    half resolution (each the chroma of a 2x2 block's mean colour), as one uint8 array, with its
    width and height (odd sizes padded to even). Y by OpenCV (within 1 level of the formula), the
    chroma in numpy on the quarter-size image: about 1 ms at 512x512 instead of 10."""
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        h, w = rgb.shape[:2]
    rgb = np.ascontiguousarray(rgb)
    y = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)[:h]
    q = cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA).astype(np.float32)
    qr, qg, qb = q[..., 0], q[..., 1], q[..., 2]
    u = 128.0 - 0.148 * qr - 0.291 * qg + 0.439 * qb
    v = 128.0 + 0.439 * qr - 0.368 * qg - 0.071 * qb
    chroma = [np.clip(np.round(p), 0, 255).astype(np.uint8).ravel() for p in (u, v)]
    return np.concatenate([y.ravel(), *chroma]), w, h

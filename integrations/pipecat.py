"""pipecat adapter: :class:`VloggerVideoService`, a talking avatar as a pipecat ``FrameProcessor``.

Put it between the TTS service and ``transport.output()``. It swallows ``TTSAudioRawFrame``\\ s
(any rate, mono or stereo) and plays them through one :class:`~vlogger.engines.stream.AvatarStream`
(the photo or the default portrait, ``VloggerConfig``'s motion engine and renderer). Downstream it
pushes, on the stream clock at ``VloggerConfig.output.fps`` (25), one ``OutputImageRawFrame``
(RGB, the avatar's size) per frame followed by the ``TTSAudioRawFrame`` that plays during that
frame (only while something is said), so the transport plays sound and picture together; when
nothing is said the avatar idles and only images flow. ``TTSStoppedFrame`` ends the piece of speech
and is pushed after its last frame. ``InterruptionFrame`` clears the stream at once: frames queued
here are dropped and nothing rendered before it is pushed after it. Every other frame passes
through. With pipeline metrics on (``PipelineParams(enable_metrics=True)``) the service reports
pipecat's TTFB: from the first TTS audio of a piece of speech to its first image pushed. Engine
work runs in one worker thread per service, never on the event loop; queues are bounded
(``max_buffered_s`` of audio, ``lead_s`` of frames); TTS audio outside 8-48 kHz is dropped with a
logged ``bad_audio`` error; a failure is logged and reported as an ``ErrorFrame`` and the service
then passes TTS audio through untouched.

Transport settings (pipecat 1.14): images carry ``sync_with_audio=True``, so the output transport
shows each after the audio before it was written. Such images only reach the screen with
``video_out_is_live=False`` (the default; in live mode the transport draws only its video queue).
The transport then redraws the latest image at ``video_out_framerate``; keep that at 30 for
``SmallWebRTCTransport``, whose track stamps every frame 1/30 s after the previous one (aiortc's
``VIDEO_PTIME``): 25 fps content is sampled at 30 fps with correct timestamps, whereas 25 there
would stamp 40 ms of video as 33 ms.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor, FrameProcessorSetup

from vlogger.engines.errors import BadAudio, InputError
from vlogger.engines.stream import AvatarStream, BufferFull, StreamFrame
from vlogger.engines.types import AudioChunk

__all__ = ["MAX_INPUT_RATE", "MIN_INPUT_RATE", "StreamFactory", "VloggerVideoService", "pcm_from_frame"]

_LOG = logging.getLogger(__name__)

#: TTS audio rates the service takes (Hz); frames at other rates are dropped with a logged error.
MIN_INPUT_RATE = 8000
MAX_INPUT_RATE = 48000

StreamFactory = Callable[[int], AvatarStream[np.ndarray]]
"""Builds the service's avatar stream for an output audio rate (called in the worker thread)."""


def pcm_from_frame(frame: TTSAudioRawFrame) -> np.ndarray:
    """The frame's 16-bit PCM as mono float32 in [-1, 1] (channels averaged; a trailing partial
    sample is ignored)."""
    channels = max(1, int(frame.num_channels))
    data = np.frombuffer(frame.audio, dtype="<i2", count=len(frame.audio) // (2 * channels) * channels)
    pcm = data.astype(np.float32) / 32768.0
    if channels > 1:
        pcm = pcm.reshape(-1, channels).mean(axis=1)
    return pcm


def _int16_bytes(pcm: np.ndarray) -> bytes:
    return (np.clip(pcm, -1.0, 32767 / 32768) * 32768.0).round().astype("<i2").tobytes()


@dataclass
class _Audio:
    epoch: int
    pcm: np.ndarray
    rate: int
    context_id: str | None

    @property
    def seconds(self) -> float:
        return self.pcm.size / float(self.rate)


@dataclass
class _Stop:
    epoch: int
    frame: TTSStoppedFrame


@dataclass
class _Out:
    """What the worker hands the event loop: one frame's picture and speech, or a frame to pass on."""

    epoch: int
    image: OutputImageRawFrame | None = None
    audio: TTSAudioRawFrame | None = None
    passed: Frame | None = None
    error: str | None = None


@dataclass
class _Worker:
    """State the worker thread keeps (only it touches these)."""

    epoch: int = 0
    next_pts: float = 0.0
    audio_end: float = 0.0
    held: collections.deque[_Audio | _Stop] = field(default_factory=collections.deque)
    speech: collections.deque[tuple[float, float, str | None]] = field(default_factory=collections.deque)
    stops: collections.deque[tuple[float, TTSStoppedFrame]] = field(default_factory=collections.deque)


class VloggerVideoService(FrameProcessor):
    """A talking avatar for pipecat pipelines: TTS audio in, avatar images and timed audio out.

    ``image``: the avatar's photo (path, encoded bytes or RGB array); None: the shipped portrait.
    ``config``: a ``VloggerConfig`` (motion engine, renderer, avatar fitting, ``output.fps`` and
    ``output.height``); None: the defaults. ``height``: the avatar's height in pixels (default
    ``config.output.height``). ``audio_out_sample_rate``: rate of the audio pushed downstream
    (default: the pipeline's output rate). ``lead_s``: how far ahead of its due time a frame is
    rendered and pushed (keeps the transport's audio fed; at least one frame). ``max_buffered_s``:
    speech held ahead of playback; beyond it the service waits before taking more TTS audio.
    ``stream_factory``: build the ``AvatarStream`` yourself (other engines, tests). ``threads``:
    when the service builds its stream, it pins this process's OpenCV and BLAS thread pools to that
    many threads (``vlogger.engines.threads.pin_native_threads``, as ``vlogger serve`` does: left
    alone, numpy's pool spins on every core and the avatar costs 2-3x the CPU); ``None`` leaves
    them as they are.
    """

    def __init__(
        self,
        *,
        image: str | Path | bytes | np.ndarray | None = None,
        config: Any = None,
        height: int | None = None,
        audio_out_sample_rate: int | None = None,
        lead_s: float = 0.08,
        max_buffered_s: float = 30.0,
        stream_factory: StreamFactory | None = None,
        threads: int | None = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if config is None:
            from vlogger.runtime.config import VloggerConfig

            config = VloggerConfig()
        self._config = config
        self._image = image
        self._height = height
        self._fps = float(config.output.fps)
        self._dt = 1.0 / self._fps
        self._lead_s = max(float(lead_s), self._dt)
        self._max_buffered_s = float(max_buffered_s)
        self._factory = stream_factory
        self._threads = threads
        self._rate = audio_out_sample_rate
        self._epoch = 0
        self._commands: queue.Queue[_Audio | _Stop] = queue.Queue()
        self._queued_s = 0.0
        self._backlog_s = 0.0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._out: asyncio.Queue[_Out | None] | None = None
        self._emitter: asyncio.Task[None] | None = None
        self._failed = False
        self._size: tuple[int, int] | None = None
        self._in_speech = False
        """A piece of speech is being taken (between its first TTS audio and its stop)."""
        self._ttfb_open = False
        """TTFB started for the current piece of speech and not yet stopped by its first image."""

    # -- pipecat ---------------------------------------------------------------------------------

    async def setup(self, setup: FrameProcessorSetup) -> None:  # type: ignore[override, unused-ignore]
        """Take the pipeline's output audio rate unless one was given."""
        await super().setup(setup)
        if self._rate is None:
            self._rate = int(setup.audio_out_sample_rate)

    def can_generate_metrics(self) -> bool:
        """Yes: TTFB, from a piece of speech's first TTS audio to its first image."""
        return True

    @property
    def size(self) -> tuple[int, int] | None:
        """The avatar's (width, height) once its stream is built, else None."""
        return self._size

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Swallow TTS audio, play it through the avatar; pass everything else on."""
        await super().process_frame(frame, direction)
        if direction != FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)
        elif isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            self._start()
        elif isinstance(frame, InterruptionFrame):
            self._interrupt()
            self._in_speech = False
            if self._ttfb_open:
                self._ttfb_open = False
                await self.cancel_ttfb_metrics()
            await self.push_frame(frame, direction)
        elif isinstance(frame, TTSAudioRawFrame) and not self._failed and self._thread is not None:
            await self._take_audio(frame)
        elif isinstance(frame, TTSStoppedFrame) and not self._failed and self._thread is not None:
            self._in_speech = False
            self._commands.put(_Stop(self._epoch, frame))
            self._wake.set()
        elif isinstance(frame, EndFrame):
            await self._finish(drain=True)
            await self.push_frame(frame, direction)
        elif isinstance(frame, CancelFrame):
            await self._finish(drain=False)
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        """Stop the worker thread and the emitter (idempotent)."""
        await self._finish(drain=False)
        await super().cleanup()

    # -- event loop side -------------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        limit = max(2, math.ceil(self._lead_s * self._fps) + 2)
        self._out = asyncio.Queue(maxsize=limit)
        self._emitter = self.create_task(self._emit(), name=f"{self}::emit")
        self._thread = threading.Thread(target=self._run, name=f"vlogger-pipecat-{self.id}", daemon=True)
        self._thread.start()

    def _interrupt(self) -> None:
        self._epoch += 1  # frames tagged with an older epoch are dropped from here on
        with self._lock:
            self._queued_s = 0.0
        if self._out is not None:
            while not self._out.empty():
                self._out.get_nowait()
        self._wake.set()

    async def _take_audio(self, frame: TTSAudioRawFrame) -> None:
        try:
            pcm = pcm_from_frame(frame)
        except (ValueError, TypeError) as e:
            _LOG.error("vlogger pipecat adapter: unreadable TTS audio frame %s: %s", frame, e)
            return
        if pcm.size == 0:
            return
        if not MIN_INPUT_RATE <= frame.sample_rate <= MAX_INPUT_RATE:
            _LOG.error(
                "vlogger pipecat adapter: dropped TTS audio at %s Hz (%s): the avatar takes %d to %d Hz",
                frame.sample_rate,
                BadAudio.code,
                MIN_INPUT_RATE,
                MAX_INPUT_RATE,
            )
            return
        if not self._in_speech:
            self._in_speech = True
            self._ttfb_open = True
            await self.start_ttfb_metrics()
        item = _Audio(self._epoch, pcm, int(frame.sample_rate), frame.context_id)
        # back-pressure: wait (an interruption cancels this wait) while the stream is full
        while not self._failed and self._queued_s + self._backlog_s > self._max_buffered_s:
            await asyncio.sleep(self._dt)
        with self._lock:
            self._queued_s += item.seconds
        self._commands.put(item)
        self._wake.set()

    async def _emit(self) -> None:
        assert self._out is not None
        while True:
            item = await self._out.get()
            if item is None:
                return
            if item.error is not None:
                await self.push_error(error_msg=item.error)
                continue
            if item.epoch != self._epoch:
                continue  # rendered before an interruption
            try:
                if item.image is not None:
                    await self.push_frame(item.image)
                    if self._ttfb_open and item.image.metadata["vlogger"]["speech"]:
                        self._ttfb_open = False
                        await self.stop_ttfb_metrics()
                if item.audio is not None:
                    await self.push_frame(item.audio)
                if item.passed is not None:
                    await self.push_frame(item.passed)
            except Exception:
                _LOG.exception("vlogger pipecat adapter: pushing a frame failed")

    async def _finish(self, drain: bool) -> None:
        thread = self._thread
        if thread is None:
            return
        if drain and not self._failed:
            self._draining.set()
            self._wake.set()
            with self._lock:
                wait = self._queued_s + self._backlog_s + 2.0 + self._lead_s
            await asyncio.to_thread(thread.join, wait)
        self._stop.set()
        self._wake.set()
        await asyncio.to_thread(thread.join, 5.0)
        if thread.is_alive():
            _LOG.error("vlogger pipecat adapter: the avatar worker did not stop within 5 s")
        self._thread = None
        if self._emitter is not None and self._out is not None:
            if drain and not self._failed:
                await self._out.put(None)
                try:
                    await asyncio.wait_for(asyncio.shield(self._emitter), 2.0)
                except TimeoutError:
                    pass
            await self.cancel_task(self._emitter)
            self._emitter = None

    # -- worker thread ---------------------------------------------------------------------------

    def _build(self) -> AvatarStream[np.ndarray]:
        rate = int(self._rate or 24000)
        if self._factory is not None:
            return self._factory(rate)
        from vlogger.engines.threads import pin_native_threads
        from vlogger.runtime.live_stream import build_live_stream

        if self._threads is not None:
            pin_native_threads(self._threads)
        return build_live_stream(
            self._config,
            self._image,
            audio_rate=rate,
            height=self._height,
            max_buffered_s=self._max_buffered_s,
        )

    def _post(self, item: _Out) -> bool:
        """Hand ``item`` to the event loop, waiting for room; False when stopping or interrupted."""
        loop, out = self._loop, self._out
        assert loop is not None and out is not None
        while not self._stop.is_set():
            if item.epoch != self._epoch and item.error is None:
                return False
            fut = asyncio.run_coroutine_threadsafe(out.put(item), loop)
            try:
                fut.result(timeout=0.2)
                return True
            except TimeoutError:
                if not fut.cancel() and fut.done() and not fut.cancelled() and fut.exception() is None:
                    return True  # it went in just as the wait ended
            except Exception:  # the loop is closing
                return False
        return False

    def _fail(self, what: str, error: BaseException) -> None:
        _LOG.error("vlogger pipecat adapter: %s: %s", what, error, exc_info=error)
        self._failed = True
        self._post(_Out(self._epoch, error=f"vlogger avatar: {what}: {error}"))

    def _run(self) -> None:
        try:
            stream = self._build()
        except Exception as e:
            self._fail("building the avatar stream failed", e)
            return
        try:
            self._loop_frames(stream)
        except Exception as e:
            self._fail("the avatar stream failed", e)
        finally:
            try:
                stream.close()
            except Exception:
                _LOG.exception("vlogger pipecat adapter: closing the avatar stream failed")

    def _loop_frames(self, stream: AvatarStream[np.ndarray]) -> None:
        w = _Worker()
        dt = self._dt
        t0 = time.monotonic()
        while not self._stop.is_set():
            if w.epoch != self._epoch:
                w.epoch = self._epoch
                stream.clear_buffer()
                w.held.clear()
                w.speech.clear()
                w.stops.clear()
                w.audio_end = w.next_pts
            self._take_commands(w)
            self._feed(stream, w)
            self._backlog_s = max(0.0, w.audio_end - w.next_pts)
            speaking = w.audio_end > w.next_pts + 1e-9 or bool(w.held)
            if self._draining.is_set() and not speaking and not w.stops:
                return
            now = time.monotonic() - t0
            if w.next_pts >= now + self._lead_s:
                self._wake.wait(min(dt / 2, w.next_pts - now - self._lead_s))
                self._wake.clear()
                continue
            until = w.next_pts + dt
            late = w.next_pts + dt < now  # behind the wall clock: skip idle frames, never speech
            if late and not speaking:
                until = max(until, (math.floor(now / dt) + 1) * dt)
            if stream.ready_until() < until - 1e-9:
                if w.next_pts > now and w.held:
                    self._wake.wait(0.005)
                    self._wake.clear()
                    continue
                stream.end_of_segment()  # input stalled and the frame is due: finalise what we have
            frames = stream.frames(until, latest_only=late and not speaking)
            if not frames:
                self._wake.wait(0.005)
                self._wake.clear()
                continue
            for f in frames:
                self._send(w, f)
            w.next_pts = frames[-1].pts + dt

    def _take_commands(self, w: _Worker) -> None:
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            if isinstance(cmd, _Audio):
                with self._lock:
                    self._queued_s = max(0.0, self._queued_s - cmd.seconds)
            if cmd.epoch != w.epoch:
                continue
            w.held.append(cmd)

    def _feed(self, stream: AvatarStream[np.ndarray], w: _Worker) -> None:
        while w.held:
            cmd = w.held[0]
            if isinstance(cmd, _Stop):
                stream.end_of_segment()
                w.stops.append((max(w.audio_end, w.next_pts), cmd.frame))
                w.held.popleft()
                continue
            # a new piece of speech starts on the next frame (a frame boundary), a continuation
            # right after the audio before it
            start = max(w.audio_end, w.next_pts)
            chunk = AudioChunk(pcm=cmd.pcm, sample_rate=cmd.rate, pts=start)
            try:
                stream.push_audio(chunk)
            except BufferFull:
                return  # taken again once frames have been handed out
            except InputError as e:
                _LOG.error("vlogger pipecat adapter: dropped TTS audio (%s): %s", e.code, e)
                w.held.popleft()
                continue
            w.held.popleft()
            w.audio_end = chunk.end
            if w.speech and abs(w.speech[-1][1] - start) < 1e-9:
                w.speech[-1] = (w.speech[-1][0], chunk.end, cmd.context_id)
            else:
                w.speech.append((start, chunk.end, cmd.context_id))

    def _send(self, w: _Worker, f: StreamFrame[np.ndarray]) -> None:
        dt = self._dt
        while w.speech and w.speech[0][1] <= f.pts + 1e-9:
            w.speech.popleft()
        said = next((s for s in w.speech if s[0] < f.pts + dt - 1e-9 and s[1] > f.pts + 1e-9), None)
        picture = np.ascontiguousarray(f.picture, dtype=np.uint8)
        height, width = picture.shape[:2]
        self._size = (width, height)
        image = OutputImageRawFrame(image=picture.tobytes(), size=(width, height), format="RGB")
        image.sync_with_audio = True
        image.metadata["vlogger"] = {"index": f.index, "pts": f.pts, "speech": said is not None}
        audio = None
        if said is not None and f.audio.size:
            audio = TTSAudioRawFrame(
                audio=_int16_bytes(f.audio), sample_rate=int(self._rate or 24000), num_channels=1
            )
            audio.context_id = said[2]
            audio.metadata["vlogger"] = {"index": f.index, "pts": f.pts}
        if not self._post(_Out(w.epoch, image=image, audio=audio)):
            return
        while w.stops and w.stops[0][0] <= f.pts + dt + 1e-9:
            _, stop = w.stops.popleft()
            self._post(_Out(w.epoch, passed=stop))

"""One session's media pipeline: utterances -> TTS (or agent PCM) -> motion -> render -> tracks.

Two worker threads per session, so inference never runs on the event loop:

* the **speech thread** takes utterances in order, synthesises them sentence by sentence (or
  reads an ``audio.*`` segment as it arrives), places each chunk on the media clock right after
  what the render thread has already committed to, resamples it to 48 kHz into the
  :class:`~vlogger.runtime.tracks.AudioTimeline` and hands the same chunk (re-timed) to the render
  thread; it runs at most ``synthesis_ahead_s`` ahead of playback.
* the **render thread** owns the session's :class:`~vlogger.engines.stream.AvatarStream` (motion
  engine -> rig -> renderer): it keeps ``render_ahead_s`` of frames ready in the
  :class:`~vlogger.runtime.tracks.FrameQueue`, idling (the motion engine runs on silence) whenever
  nothing is said. The speech thread talks to it only through typed messages
  (:class:`PushAudio`, :class:`EndOfSegment`, :class:`ClearBuffer`): the interruption acts on the
  next frame, and queued audio is flushed.

Engines come from an :class:`~vlogger.runtime.engine_factory.EngineFactory` (``RealEngines`` as
configured; tests pass fakes).
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import av
import numpy as np

from vlogger.engines.audio import StreamResampler
from vlogger.engines.errors import InputError
from vlogger.engines.stream import AvatarStream, StreamConfig
from vlogger.engines.tts.base import TTS
from vlogger.engines.types import AudioChunk
from vlogger.runtime.clock import MediaClock
from vlogger.runtime.engine_factory import EngineFactory, close_quietly
from vlogger.runtime.listen import PlayedAudio
from vlogger.runtime.metrics import StageMetrics
from vlogger.runtime.protocol import ProtocolError, event
from vlogger.runtime.render_worker import yuv420p_frame
from vlogger.runtime.segments import AudioBudget, AudioRefused, AudioSegment
from vlogger.runtime.server_config import ServerConfig
from vlogger.runtime.tracks import AUDIO_RATE, AudioTimeline, FrameQueue
from vlogger.runtime.utterance import (
    ClearBuffer,
    EndOfSegment,
    PushAudio,
    SegmentAudio,
    StreamCommand,
    Utterance,
    lower_thread_priority,
    retime,
)

__all__ = [
    "AudioBudget",
    "AudioRefused",
    "AudioSegment",
    "ClearBuffer",
    "EndOfSegment",
    "Pipeline",
    "PushAudio",
    "Utterance",
]

_LOG = logging.getLogger(__name__)


class Pipeline:
    """The engines and worker threads of one session.

    ``emit`` receives server events (dicts) from any thread; the session forwards them to the
    socket. Call :meth:`start` once, :meth:`close` at the end.
    """

    def __init__(
        self,
        engines: EngineFactory,
        avatar: Any,
        config: ServerConfig,
        emit: Callable[[dict[str, Any]], None],
        index: int = 0,
        stages: StageMetrics | None = None,
    ) -> None:
        self.engines = engines
        self.config = config
        self.fps = float(engines.fps)
        self.clock = MediaClock()
        self.timeline = AudioTimeline()
        self.frames = FrameQueue(capacity=max(8, int(self.fps * 2)))
        self.played = PlayedAudio()
        """What the avatar said, at 16 kHz on the media clock (the microphone's echo reference)."""
        self._emit = emit
        self._avatar = avatar
        renderer = engines.make_renderer(avatar)
        try:
            # the audio plays from the AudioTimeline; the stream only animates (frames carry none)
            self._stream: AvatarStream[Any] = AvatarStream(
                avatar,
                engines.make_motion(index),
                renderer,
                StreamConfig(fps=self.fps, audio_rate=None, max_buffered_s=math.inf, causal=True),
            )
        except BaseException:  # a session that cannot start must not leave its render process
            close_quietly(renderer)
            raise
        self._tts: TTS | None = None
        self.ready = threading.Event()
        """Set once the voice is loaded (a ``say`` before it just waits)."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: collections.deque[Utterance] = collections.deque()
        self._active: list[Utterance] = []
        self._inbox: list[StreamCommand] = []
        self._gen = 0
        self._horizon = 0.0
        self._new_avatar: tuple[Any, Any] | None = None
        self._stop = threading.Event()
        self._watch_first_frame: list[tuple[int, Utterance]] = []
        self._render_ms: collections.deque[float] = collections.deque(maxlen=50)
        self.last_first_frame_ms: float | None = None
        """Request to first frame of the latest utterance that reached the screen (ms)."""
        self.stages = stages if stages is not None else StageMetrics()
        """Stage histograms (``/metrics``): the server's, or unregistered ones."""
        self._threads: list[threading.Thread] = []
        self.error: BaseException | None = None
        self.audio_budget = AudioBudget(config.max_buffered_audio_s)
        """Agent PCM this session holds before the speech thread takes it (all segments)."""

    # ---- lifecycle --------------------------------------------------------------------------
    @property
    def size(self) -> tuple[int, int]:
        h, w = self._avatar.image.shape[:2]
        return int(w), int(h)

    def still_frame(self) -> av.VideoFrame:
        """The avatar's photo as a video frame (shown until the first frame is rendered)."""
        return yuv420p_frame(self._avatar.image[:, :, :3])

    def start(self) -> None:
        for name, target in (("speech", self._speech_loop), ("render", self._render_loop)):
            t = threading.Thread(target=self._guard(target), name=f"vlogger-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # a crashed worker must not take the server with it
                if self._stop.is_set():  # closing freed its renderer under it: expected, quiet
                    _LOG.debug("pipeline thread ended while closing: %s", exc)
                    return
                _LOG.exception("pipeline thread failed")
                self.error = exc
                self._emit(event("error", code="internal", message=f"pipeline failed: {exc}"))

        return run

    def close(self, timeout: float = 2.0) -> None:
        """Stop both threads (they finish their current step) and drop all buffers."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.frames.flush()
        self.timeline.flush()
        with self._lock:
            renderers = [self._stream.renderer] + ([self._new_avatar[1]] if self._new_avatar else [])
            self._new_avatar = None
        for r in renderers:
            close_quietly(r)

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    # ---- requests (event loop) ------------------------------------------------------------
    def unfinished(self) -> int:
        with self._lock:
            return len(self._pending) + len(self._active)

    def enqueue(self, utt: Utterance) -> None:
        """Queue an utterance; :class:`ProtocolError` ``queue_full`` past the limit."""
        with self._wake:
            if len(self._pending) + len(self._active) >= self.config.max_queued_utterances:
                raise ProtocolError(
                    "queue_full",
                    f"{self.config.max_queued_utterances} utterances are already waiting or playing",
                    utt.id,
                )
            self._pending.append(utt)
            self._wake.notify_all()

    def interrupt(self) -> list[Utterance]:
        """Stop the current and queued speech now; returns the utterances that were cut."""
        with self._wake:
            self._gen += 1
            cut = [u for u in self._active if u.state in ("queued", "started")] + list(self._pending)
            self._pending.clear()
            self._active.clear()
            self._watch_first_frame.clear()
            self.timeline.flush()
            self.played.truncate(self.timeline.read_pos / AUDIO_RATE)
            self._inbox.append(ClearBuffer())
            for u in cut:
                u.state = "interrupted"
                if u.audio is not None:
                    u.audio.discard()
            self._wake.notify_all()
        return cut

    def switch_avatar(self, avatar: Any, renderer: Any) -> None:
        """Show ``avatar`` from the next rendered frame on (build the renderer off the loop)."""
        with self._lock:
            if not self._stop.is_set():
                self._new_avatar, renderer = (avatar, renderer), None
        if renderer is not None:  # the session closed meanwhile
            close_quietly(renderer)

    # ---- track callbacks (event loop) -------------------------------------------------------
    def on_audio_marks(self, marks: list[tuple[Hashable, str]]) -> None:
        now = time.monotonic()
        for key, what in marks:
            assert isinstance(key, Utterance)
            utt = key
            with self._lock:
                if utt.state in ("done", "interrupted"):
                    continue
                if what == "started":
                    utt.state = "started"
                    utt.first_audio_ms = (now - utt.received) * 1000.0
                elif what == "done":
                    utt.state = "done"
                    if utt in self._active:
                        self._active.remove(utt)
                    self._wake.notify_all()
            self._emit(event("utterance", id=utt.id, state=what))

    def on_video_sent(self, index: int) -> None:
        if not self._watch_first_frame:
            return
        now = time.monotonic()
        with self._lock:
            keep = []
            for first, utt in self._watch_first_frame:
                if index >= first:
                    utt.first_frame_ms = (now - utt.received) * 1000.0
                    self.stages.say_to_first_frame.observe(utt.first_frame_ms / 1000.0)  # metrics
                    self.last_first_frame_ms = utt.first_frame_ms
                else:
                    keep.append((first, utt))
            self._watch_first_frame = keep

    def render_ms(self) -> float:
        return float(np.mean(self._render_ms)) if self._render_ms else 0.0

    # ---- speech thread --------------------------------------------------------------------
    def _alive(self, gen: int) -> Callable[[], bool]:
        return lambda: not self._stop.is_set() and self._gen == gen

    def _speech_loop(self) -> None:
        lower_thread_priority(self.config.synthesis_nice)
        self._tts = self.engines.make_tts()  # load the voice before the first say needs it
        StreamResampler(16000, AUDIO_RATE)  # and the resampler (scipy.signal imports slowly)
        self.ready.set()
        while not self._stop.is_set():
            with self._wake:
                while not self._pending and not self._stop.is_set():
                    self._wake.wait(0.5)
                if self._stop.is_set():
                    return
                utt = self._pending.popleft()
                self._active.append(utt)
                gen = self._gen
            try:
                self._speak(utt, gen)
            except Exception as exc:
                code = "internal"
                if isinstance(exc, InputError):
                    code = exc.code if exc.code != "bad_input" else "bad_text" if utt.text else "bad_audio"
                _LOG.warning("utterance %s failed: %s", utt.id, exc)
                with self._wake:
                    if utt in self._active:
                        self._active.remove(utt)
                    alive = utt.state not in ("done", "interrupted")
                    utt.state = "interrupted"
                if alive:
                    self._emit(event("error", code=code, message=str(exc), id=utt.id))
                    self._emit(event("utterance", id=utt.id, state="interrupted"))

    def _speak(self, utt: Utterance, gen: int) -> None:
        alive = self._alive(gen)
        if utt.text is not None:
            assert self._tts is not None  # made before the first utterance is taken
            chunks: Iterator[AudioChunk] = self._tts.synthesize(utt.text, 0.0)
        else:
            assert utt.audio is not None
            chunks = utt.audio.chunks(self.config.audio_prebuffer_s, alive)
        offset: float | None = None
        last_sample = -1
        seg: SegmentAudio | None = None
        for chunk in chunks:
            if not alive():
                return
            with self._wake:
                if self._gen != gen or self._stop.is_set():
                    return
                earliest = (
                    max(
                        self.timeline.end_sample(),
                        math.ceil(self._horizon * AUDIO_RATE),
                        math.ceil((self.clock.now() + 1.0 / self.fps) * AUDIO_RATE),
                    )
                    / AUDIO_RATE
                )
                if offset is None or chunk.pts + offset < earliest - 1e-6:
                    # speech starts on a frame boundary: the first frame shows its first sound
                    offset = math.ceil(earliest * self.fps - 1e-6) / self.fps - chunk.pts
                timed = retime(chunk, offset)
                if seg is None or not seg.follows(timed):  # new rate or offset jump: new run
                    if seg is not None:
                        last_sample = self._place(seg.flush(), last_sample)
                    seg = SegmentAudio(timed)
                if utt.start_time is None:
                    utt.start_time = timed.pts
                    self.timeline.mark(round(timed.pts * AUDIO_RATE), utt, "started")
                    self._watch_first_frame.append((math.ceil(timed.pts * self.fps - 1e-6), utt))
                last_sample = self._place(seg.push(timed), last_sample)
                self._inbox.append(PushAudio(timed))
            self._wait_ahead(alive)
        with self._wake:
            if self._gen != gen or self._stop.is_set():
                return
            if seg is not None:
                last_sample = self._place(seg.flush(), last_sample)
            self._inbox.append(EndOfSegment())
            if last_sample < 0:  # nothing to say after all
                utt.state = "done"
                if utt in self._active:
                    self._active.remove(utt)
                self._emit(event("utterance", id=utt.id, state="started"))
                self._emit(event("utterance", id=utt.id, state="done"))
            else:
                self.timeline.mark(last_sample, utt, "done")

    def _place(self, out: tuple[int, np.ndarray, float, np.ndarray], last_sample: int) -> int:
        """Schedule a run's resampled audio (48 kHz playback, 16 kHz echo reference)."""
        start48, pcm48, t16, pcm16 = out
        if pcm48.size:
            self.timeline.schedule(start48, pcm48)
            last_sample = max(last_sample, start48 + pcm48.size - 1)
        if pcm16.size:
            self.played.add(t16, pcm16)
        return last_sample

    def _wait_ahead(self, alive: Callable[[], bool]) -> None:
        while alive():
            ahead = self.timeline.end_sample() / AUDIO_RATE - self.clock.now()
            if ahead <= self.config.synthesis_ahead_s:
                return
            time.sleep(min(0.05, ahead - self.config.synthesis_ahead_s))

    # ---- render thread --------------------------------------------------------------------
    def _render_loop(self) -> None:
        dt = 1.0 / self.fps
        ahead = max(dt, self.config.render_ahead_s)
        next_index = 0
        while not self._stop.is_set():
            now = self.clock.now()
            if next_index * dt >= now + ahead:
                if not self.clock.started:
                    self.clock.wait_started(0.05)
                else:
                    time.sleep(min(0.02, max(0.001, next_index * dt - now - ahead)))
                continue
            target = next_index
            if self.clock.started and next_index * dt <= now:
                # late (CPU starved): skip to the frame that will be due when this one is drawn;
                # the frames in between are still made by the motion engine, for continuity
                cost = 1.5 * (self.render_ms() / 1000.0 if self._render_ms else dt)
                target = max(next_index, int((now + cost) / dt) + 1)
            until = (target + 1) * dt
            stream = self._stream
            with self._lock:
                for cmd in self._inbox:
                    if isinstance(cmd, PushAudio):
                        stream.push_audio(cmd.chunk)
                    elif isinstance(cmd, EndOfSegment):
                        stream.end_of_segment()
                    else:
                        stream.clear_buffer()
                self._inbox.clear()
                ready = stream.ready_until()
                if ready < until - 1e-9:
                    if ready < now + dt:  # input stalled (slow agent audio): finalise what we have
                        stream.end_of_segment()
                    else:
                        ready = -1.0
                if ready >= 0:
                    self._horizon = until
                old = None
                if self._new_avatar is not None:
                    self._avatar = self._new_avatar[0]
                    old = stream.switch(*self._new_avatar)
                    self._new_avatar = None
            if old is not None:
                close_quietly(old)
            if ready < 0:
                time.sleep(0.005)
                continue
            t0 = time.perf_counter()
            drawn = stream.frames(until, latest_only=True)
            if not drawn:
                time.sleep(0.002)
                continue
            out = drawn[-1]
            pic = out.picture  # a render process sends yuv420p already
            frame = pic if isinstance(pic, av.VideoFrame) else yuv420p_frame(pic)
            self._render_ms.append((time.perf_counter() - t0) * 1000.0)
            self.stages.render_frame.observe(self._render_ms[-1] / 1000.0)  # metrics
            self.frames.put(out.index, frame)
            next_index = out.index + 1

"""One session's media pipeline: utterances -> TTS (or agent PCM) -> motion -> render -> tracks.

Two worker threads per session, so inference never runs on the event loop:

* the **speech thread** takes utterances in order, synthesises them sentence by sentence (or
  reads an ``audio.*`` segment as it arrives), places each chunk on the media clock right after
  what the render thread has already committed to, resamples it to 48 kHz into the
  :class:`~vlogger.runtime.tracks.AudioTimeline` and hands the same chunk (re-timed) to the render
  thread; it runs at most ``synthesis_ahead_s`` ahead of playback.
* the **render thread** owns the motion engine, the avatar and the renderer: it keeps
  ``render_ahead_s`` of frames ready in the :class:`~vlogger.runtime.tracks.FrameQueue`, idling
  (the motion engine runs on silence) whenever nothing is said.

Engines come from an :class:`EngineFactory` (:class:`RealEngines` for piper + the phoneme motion
engine + the warp renderer; tests pass fakes).
"""

from __future__ import annotations

import collections
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import av
import numpy as np

from vlogger.engines.types import AudioChunk, PhonemeTiming
from vlogger.runtime.clock import MediaClock
from vlogger.runtime.listen import PlayedAudio
from vlogger.runtime.protocol import ProtocolError, event
from vlogger.runtime.render_worker import yuv420p_frame
from vlogger.runtime.segments import AudioBudget, AudioRefused, AudioSegment
from vlogger.runtime.server_config import ServerConfig
from vlogger.runtime.tracks import AUDIO_RATE, AudioTimeline, FrameQueue

__all__ = [
    "AudioBudget",
    "AudioRefused",
    "AudioSegment",
    "EngineFactory",
    "Pipeline",
    "RealEngines",
    "SerializedRenderer",
    "Utterance",
]

_LOG = logging.getLogger(__name__)


class EngineFactory(Protocol):
    """Builds a session's engines (all synchronous, numpy in and out)."""

    fps: float

    def make_tts(self) -> Any:
        """An object with ``synthesize(text, start_pts) -> Iterator[AudioChunk]``."""

    def make_motion(self, seed: int) -> Any:
        """A :class:`~vlogger.engines.motion.base.MotionEngine` at ``fps``."""

    def load_avatar(self, source: bytes | str | None) -> Any:
        """An avatar (``.image``, ``.fit``, ``.rig.pose``); raises ``InputError`` for a bad photo."""

    def make_renderer(self, avatar: Any) -> Any:
        """A :class:`~vlogger.engines.render.base.Renderer` for ``avatar``."""


class RealEngines:
    """piper TTS, the phoneme motion engine and the warp renderer, configured by ``VloggerConfig``.

    The default avatar is fitted once and shared by every session (avatars are read-only).
    """

    def __init__(self, config: Any, size: int | None = None, image: str | None = None) -> None:
        self.config = config
        self.fps = float(config.output.fps)
        self.size = int(size or config.output.height)
        self.image = image
        self._default: Any = None
        self._master: Any = None
        self._voice_lock = threading.Lock()
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._vad_session: Any = None
        self._asr: Any = None
        self._motion_models: Any = None
        self._motion_loaded = False
        self._pool: Any = None
        if config.server.render_processes:
            from vlogger.runtime.render_worker import WorkerPool

            self._pool = WorkerPool(spare=config.server.spare_render_processes, threads=1)

    def _voice(self) -> Any:
        """The server's one loaded voice (loaded on first use)."""
        with self._voice_lock:
            if self._master is None:
                from vlogger.engines.tts import PiperTTS

                tts = PiperTTS(self.config.tts)
                tts.warmup()
                self._master = tts
            return self._master

    def prepare(self) -> None:
        """Load the voice and the motion models and start the spare render processes ahead of
        the first session (so opening a session loads no model)."""
        if self._pool is not None:
            self._pool.fill()
        self._voice()
        self._shared_motion_models()

    def _shared_motion_models(self) -> Any:
        """The motion network and Whisper encoder, loaded once for every session."""
        with self._lock:
            if not self._motion_loaded:
                from vlogger.runtime.capacity import usable_cores

                self._motion_models = self.config.load_motion_models(parallel=usable_cores())
                self._motion_loaded = True
            return self._motion_models

    def make_tts(self) -> Any:
        """A voice for a new session: shares the loaded ONNX session (no load, no extra memory)."""
        return self._voice().share()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the spare render processes."""
        if self._pool is not None:
            self._pool.close(timeout)

    def make_vad(self) -> Any:
        """A streaming Silero VAD for one microphone (the ONNX session is shared)."""
        from vlogger.engines.asr.vad import SileroVAD, VADConfig

        with self._lock:
            if self._vad_session is None:
                self._vad_session = SileroVAD.load_session(VADConfig(threads=1))
            session = self._vad_session
        return SileroVAD(VADConfig(threads=1), session=session)

    def make_asr(self) -> Any:
        """The whisper recogniser, shared by every session (it serialises calls itself)."""
        from vlogger.engines.asr import ASRConfig, WhisperASR

        with self._lock:
            if self._asr is None:
                threads = max(1, int(getattr(self.config.tts, "threads", 1)))
                self._asr = WhisperASR(ASRConfig(cpu_threads=threads))
            asr = self._asr
        asr.warmup()
        return asr

    def make_motion(self, seed: int) -> Any:
        return self.config.make_motion(seed, models=self._shared_motion_models())

    def load_avatar(self, source: bytes | str | None) -> Any:
        from vlogger.engines.avatar import load_avatar

        if source is None:
            with self._lock:
                if self._default is None:
                    self._default = load_avatar(self.image, height=self.size, config=self.config.avatar)
                return self._default
        return load_avatar(source, height=self.size, config=self.config.avatar)

    def make_renderer(self, avatar: Any) -> Any:
        """The session's renderer: in a worker process of its own (``render_processes``), or in
        the render thread (warp then takes turns with other sessions, see SerializedRenderer)."""
        if self._pool is not None:
            from vlogger.runtime.render_worker import ProcessRenderer, RendererSpec

            spec = RendererSpec(
                self.config.renderer, avatar.image, avatar.fit, self.config.warp, self.config.diffusion
            )
            return ProcessRenderer(self._pool, spec)
        from vlogger.engines.render.factory import make_renderer

        cfg = self.config
        renderer = make_renderer(cfg.renderer, avatar.image, avatar.fit, cfg.warp, cfg.diffusion)
        if cfg.renderer == "warp":
            return SerializedRenderer(renderer, self._render_lock)
        return renderer


class SerializedRenderer:
    """Runs a renderer under a lock shared by all sessions of one server.

    Used when ``render_processes`` is off. The warp renderer spends a few ms per frame in small
    numpy/OpenCV calls holding the GIL; several sessions rendering in parallel threads then
    thrash the GIL and render fewer frames in total than one thread alone (measured at 256 px:
    187 frames/s with one thread, 165 with two, 121 with four). Taking turns keeps the total at
    the single-thread rate, while TTS, encoding and the network still run in parallel.
    """

    def __init__(self, inner: Any, lock: threading.Lock) -> None:
        self.inner = inner
        self.name = inner.name
        self._lock = lock

    def render(self, posed: Any) -> Any:
        with self._lock:
            return self.inner.render(posed)

    def reset(self) -> None:
        self.inner.reset()

    def close(self) -> None:
        _close(self.inner)


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


def _retime(chunk: AudioChunk, offset: float) -> AudioChunk:
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
        seed: int = 0,
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
        self._renderer = engines.make_renderer(avatar)
        try:
            self._motion = engines.make_motion(seed)
        except BaseException:  # a session that cannot start must not leave its render process
            _close(self._renderer)
            raise
        self._tts: Any = None
        self.ready = threading.Event()
        """Set once the voice is loaded (a ``say`` before it just waits)."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: collections.deque[Utterance] = collections.deque()
        self._active: list[Utterance] = []
        self._inbox: list[tuple[str, Any]] = []
        self._gen = 0
        self._horizon = 0.0
        self._new_avatar: tuple[Any, Any] | None = None
        self._stop = threading.Event()
        self._watch_first_frame: list[tuple[int, Utterance]] = []
        self._render_ms: collections.deque[float] = collections.deque(maxlen=50)
        self.last_first_frame_ms: float | None = None
        """Request to first frame of the latest utterance that reached the screen (ms)."""
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
            renderers = [self._renderer] + ([self._new_avatar[1]] if self._new_avatar else [])
            self._new_avatar = None
        for r in renderers:
            _close(r)

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
            self._inbox.append(("clear", None))
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
            _close(renderer)

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
        _to_48k(np.zeros(64, np.float32), 16000)  # and the resampler (scipy.signal imports slowly)
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
                code = "bad_text" if type(exc).__name__ == "InputError" else "internal"
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
            chunks: Iterator[AudioChunk] = self._tts.synthesize(utt.text, 0.0)
        else:
            assert utt.audio is not None
            chunks = utt.audio.chunks(self.config.audio_prebuffer_s, alive)
        offset: float | None = None
        last_sample = -1
        for chunk in chunks:
            if not alive():
                return
            pcm48 = _to_48k(chunk.pcm, chunk.sample_rate)
            pcm16 = _to_16k(chunk.pcm, chunk.sample_rate)
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
                timed = _retime(chunk, offset)
                start = round(timed.pts * AUDIO_RATE)
                self.timeline.schedule(start, pcm48)
                if utt.start_time is None:
                    utt.start_time = timed.pts
                    self.timeline.mark(start, utt, "started")
                    self._watch_first_frame.append((math.ceil(timed.pts * self.fps - 1e-6), utt))
                last_sample = start + pcm48.size - 1
                self._inbox.append(("audio", timed))
                self.played.add(timed.pts, pcm16)
            self._wait_ahead(alive)
        with self._wake:
            if self._gen != gen or self._stop.is_set():
                return
            self._inbox.append(("end", None))
            if last_sample < 0:  # nothing to say after all
                utt.state = "done"
                if utt in self._active:
                    self._active.remove(utt)
                self._emit(event("utterance", id=utt.id, state="started"))
                self._emit(event("utterance", id=utt.id, state="done"))
            else:
                self.timeline.mark(last_sample, utt, "done")

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
            with self._lock:
                for kind, item in self._inbox:
                    if kind == "audio":
                        self._motion.push_audio(item)
                    elif kind == "end":
                        self._motion.end_of_input()
                    elif kind == "clear":
                        self._motion.clear_buffer()
                self._inbox.clear()
                ready = self._motion.ready_until()
                if ready < until - 1e-9:
                    if ready < now + dt:  # input stalled (slow agent audio): finalise what we have
                        self._motion.end_of_input()
                    else:
                        ready = -1.0
                if ready >= 0:
                    self._horizon = until
                old = None
                if self._new_avatar is not None:
                    old = self._renderer
                    self._avatar, self._renderer = self._new_avatar
                    self._new_avatar = None
                avatar, renderer = self._avatar, self._renderer
            if old is not None:
                _close(old)
            if ready < 0:
                time.sleep(0.005)
                continue
            motion = self._motion.frames(until)
            if not motion:
                time.sleep(0.002)
                continue
            mf = motion[-1]
            t0 = time.perf_counter()
            out = renderer.render(avatar.rig.pose(mf))
            # a render process sends yuv420p already
            frame = out if isinstance(out, av.VideoFrame) else yuv420p_frame(out)
            self._render_ms.append((time.perf_counter() - t0) * 1000.0)
            self.frames.put(mf.index, frame)
            next_index = mf.index + 1


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


def _close(renderer: Any) -> None:
    close = getattr(renderer, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # freeing must go on
            _LOG.exception("closing a renderer failed")


def _to_16k(pcm: np.ndarray, rate: int) -> np.ndarray:
    if rate == 16000:
        return np.asarray(pcm, dtype=np.float32)
    from vlogger.engines.audio import resample

    return resample(pcm, rate, 16000)


def _to_48k(pcm: np.ndarray, rate: int) -> np.ndarray:
    if rate == AUDIO_RATE:
        return np.asarray(pcm, dtype=np.float32)
    from vlogger.engines.audio import resample

    return resample(pcm, rate, AUDIO_RATE)

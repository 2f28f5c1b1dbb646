"""Speech in: the session's microphone -> 16 kHz -> echo check -> streaming VAD -> utterances ->
whisper (off the event loop) -> ``user`` and ``transcript`` events; onsets drive barge-in.

Threads per session: the event loop only resamples each incoming frame (mixed to mono, then
:class:`~vlogger.engines.audio.StreamResampler`, any rate) and queues it; a ``vlogger-listen``
thread runs the echo check and the VAD on 32 ms chunks; a ``vlogger-asr`` thread transcribes
finished utterances (the whisper model is shared by the sessions and serialised by its own lock).

**Echo.** The browser's echo cancellation removes the avatar's voice from a real microphone. As a
backstop (a device or page without it, a loopback test), the server knows exactly what it played
(:class:`PlayedAudio`, on the media clock). Every 32 ms chunk is compared with that reference:
a single-tap canceller finds the delay (normalised cross-correlation over ``echo_max_delay_s``)
and gain of the avatar's voice in the microphone, subtracts it, and a chunk whose energy is
mostly explained by the reference (residual below ``echo_residual_ratio``) counts as silence.
The user talking over the avatar leaves a large residual (their voice does not correlate with
the avatar's), so barge-in still works; only the avatar's own voice is ignored. Raising the VAD
threshold while the avatar speaks was the other option; it was rejected because Silero scores
the avatar's (clean, loud) speech near 1.0, so no threshold separates it from the user.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlogger.engines.asr.base import ASR
from vlogger.engines.asr.vad import (
    VAD_CHUNK,
    VAD_RATE,
    SpeechEnd,
    SpeechProbability,
    SpeechSegmenter,
    SpeechStart,
    VADConfig,
)
from vlogger.engines.audio import StreamResampler, frame_to_mono

__all__ = ["EchoCanceller", "ListenConfig", "Listener", "PlayedAudio", "to_16k_mono"]

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ListenConfig:
    """How a session hears its microphone."""

    vad: VADConfig = field(default_factory=VADConfig)
    """Speech detection: the Silero model (file, backend, threads: what ``RealEngines.make_vad``
    loads) and utterance cutting (threshold, 250 ms minimum speech, end silence)."""
    barge_in: bool = True
    """User speech (past the minimum length) stops the avatar's speech, like ``interrupt``."""
    echo_cancel: bool = True
    """Ignore the avatar's own voice in the microphone (see the module notes)."""
    echo_max_delay_s: float = 0.6
    """Longest delay from playing a sample to hearing it back in the microphone."""
    echo_window_s: float = 0.5
    """Microphone audio used to find the echo's delay and gain."""
    echo_min_correlation: float = 0.5
    """Normalised correlation above which the microphone is taken to carry the avatar's voice."""
    echo_residual_ratio: float = 0.2
    """A chunk whose energy after cancelling is below this fraction of before is echo only."""
    partial_every_s: float | None = None
    """Send ``final: false`` transcripts of a long turn this often (``None`` = finals only)."""
    max_backlog_s: float = 5.0
    """Microphone audio the listener may fall behind by before old audio is dropped."""
    max_pending_utterances: int = 4
    """Utterances waiting for the recogniser; beyond it the oldest is dropped."""


def to_16k_mono(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Mono float32 at 16 kHz from ``(n,)`` or ``(n, channels)`` samples (whole clips; streams
    go through :meth:`Listener.feed`, which keeps the resampler's state between frames)."""
    from vlogger.engines.audio import resample

    return resample(_mono(pcm), int(rate), VAD_RATE)


def _mono(pcm: np.ndarray) -> np.ndarray:
    """``(n,)`` or ``(n, channels)`` samples, float in [-1, 1] or int16, as mono float32."""
    x = np.asarray(pcm)
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    x = np.asarray(x, dtype=np.float32)
    return x.mean(axis=1) if x.ndim == 2 else x.reshape(-1)


class PlayedAudio:
    """What the avatar said, at 16 kHz on the media clock (the echo reference); thread-safe."""

    def __init__(self, keep_s: float = 8.0) -> None:
        self._lock = threading.Lock()
        self._segments: list[tuple[float, np.ndarray]] = []
        self._keep_s = keep_s
        self._cut: float | None = None

    def add(self, start: float, pcm16k: np.ndarray) -> None:
        """Speech placed to start at stream second ``start``."""
        with self._lock:
            self._segments.append((float(start), np.asarray(pcm16k, np.float32)))
            latest = max(s + p.size / VAD_RATE for s, p in self._segments)
            self._segments = [
                (s, p) for s, p in self._segments if s + p.size / VAD_RATE > latest - self._keep_s
            ]

    def truncate(self, at: float) -> None:
        """Nothing after stream second ``at`` will play (an interruption)."""
        with self._lock:
            out = []
            for s, p in self._segments:
                if s >= at:
                    continue
                n = round((at - s) * VAD_RATE)
                out.append((s, p[:n]))
            self._segments = out

    def speaking_between(self, t0: float, t1: float) -> bool:
        with self._lock:
            return any(s < t1 and s + p.size / VAD_RATE > t0 for s, p in self._segments)

    def get(self, t0: float, n: int) -> np.ndarray:
        """``n`` samples from stream second ``t0`` (zeros where nothing played)."""
        out = np.zeros(n, np.float32)
        a0 = round(t0 * VAD_RATE)
        with self._lock:
            for s, p in self._segments:
                b0 = round(s * VAD_RATE)
                lo, hi = max(a0, b0), min(a0 + n, b0 + p.size)
                if lo < hi:
                    out[lo - a0 : hi - a0] += p[lo - b0 : hi - b0]
        return out


class EchoCanceller:
    """Single-tap echo removal against :class:`PlayedAudio` (see the module notes)."""

    def __init__(self, played: PlayedAudio, config: ListenConfig) -> None:
        self.played = played
        self.config = config
        self._mic: collections.deque[np.ndarray] = collections.deque(
            maxlen=max(1, int(np.ceil(config.echo_window_s * VAD_RATE / VAD_CHUNK)))
        )
        self.delay: float | None = None
        """Current estimate of the echo delay (s), ``None`` when no echo is seen."""
        self.gain = 0.0
        self._since_estimate = 1e9
        self.suppressed_chunks = 0

    def process(self, chunk: np.ndarray, t_end: float) -> tuple[np.ndarray, bool]:
        """The chunk (ending at stream second ``t_end``) with the avatar's voice removed, and
        whether it is (almost) only the avatar's voice (then the VAD holds its state)."""
        cfg = self.config
        self._mic.append(chunk)
        dur = chunk.size / VAD_RATE
        if not self.played.speaking_between(t_end - dur - cfg.echo_max_delay_s - 0.1, t_end + 0.1):
            self.delay = None
            return chunk, False
        self._since_estimate += dur
        if self.delay is None or self._since_estimate >= 0.25:
            self._estimate(t_end)
        if self.delay is None:
            return chunk, False
        ref = self.played.get(t_end - dur - self.delay, chunk.size) * self.gain
        residual = chunk - ref
        e_mic = float(np.dot(chunk, chunk))
        e_res = float(np.dot(residual, residual))
        if e_res >= e_mic:  # the reference does not explain this chunk: leave it alone
            return chunk, False
        if e_res < cfg.echo_residual_ratio * e_mic:
            self.suppressed_chunks += 1
            return residual, True
        return residual, False

    def _estimate(self, t_end: float) -> None:
        cfg = self.config
        self._since_estimate = 0.0
        m = np.concatenate(self._mic)
        n = m.size
        lo, hi = -0.1, cfg.echo_max_delay_s  # delays searched (negative: arrival stamped late)
        ref = self.played.get(t_end - n / VAD_RATE - hi, n + int((hi - lo) * VAD_RATE))
        em = float(np.dot(m, m))
        if em < 1e-9 or not np.any(ref):
            return
        size = 1 << int(np.ceil(np.log2(ref.size + n)))
        xc = np.fft.irfft(np.fft.rfft(ref, size) * np.conj(np.fft.rfft(m, size)), size)
        lags = ref.size - n + 1
        dots = xc[:lags]  # dots[k] = <m, ref[k:k+n]>
        c2 = np.concatenate([[0.0], np.cumsum(ref.astype(np.float64) ** 2)])
        er = c2[n : n + lags] - c2[:lags]
        corr = dots / np.sqrt(np.maximum(er, 1e-12) * em)
        corr[er < 1e-3 * er.max()] = 0.0  # (almost) nothing played there: FFT noise, not echo
        k = int(np.argmax(corr))
        if corr[k] < cfg.echo_min_correlation:
            return  # keep the last path: double-talk lowers the correlation, not the echo
        # ref index k starts at stream time (t_end - n/rate - hi) + k/rate; m starts at t_end - n/rate
        self.delay = hi - k / VAD_RATE
        self.gain = float(dots[k] / max(er[k], 1e-12))


Emit = Callable[[dict[str, Any]], None]


class Listener:
    """One session's ears. ``on_event`` gets ``user``/``transcript`` events (from worker threads);
    ``on_onset`` is called at each confirmed speech onset (barge-in)."""

    def __init__(
        self,
        vad: SpeechProbability,
        asr: ASR,
        config: ListenConfig,
        clock_now: Callable[[], float],
        on_event: Emit,
        on_onset: Callable[[SpeechStart], None] | None = None,
        played: PlayedAudio | None = None,
    ) -> None:
        self.config = config
        self.asr = asr
        self.clock_now = clock_now
        self.on_event = on_event
        self.on_onset = on_onset
        self.played = played
        self.echo = EchoCanceller(played, config) if played is not None and config.echo_cancel else None
        self.segmenter = SpeechSegmenter(vad, config.vad)
        self._in: queue.Queue[np.ndarray | None] = queue.Queue()
        self._in_samples = 0
        self._asr_q: collections.deque[SpeechEnd | tuple[float, np.ndarray]] = collections.deque()
        self._asr_cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._resampler: StreamResampler | None = None
        self._anchor: float | None = None
        self._fed = 0  # 16 kHz samples queued since the anchor
        self.dropped_s = 0.0
        """Microphone audio dropped because the listener fell behind."""
        self.frames = 0
        self.asr_ms: list[float] = []
        self._last_partial = 0.0

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        for name, fn in (("listen", self._listen_loop), ("asr", self._asr_loop)):
            t = threading.Thread(target=self._guard(fn), name=f"vlogger-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                _LOG.exception("listener thread failed")
                self.on_event({"type": "error", "code": "internal", "message": f"listening failed: {exc}"})

        return run

    def close(self, timeout: float = 1.0) -> None:
        self._stop.set()
        self._in.put(None)
        with self._asr_cond:
            self._asr_cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    # ---- input (event loop) ----------------------------------------------------------------
    def feed_frame(self, frame: Any) -> None:
        """A decoded microphone ``av.AudioFrame`` (any rate, layout, sample format)."""
        self._feed_mono(frame_to_mono(frame), int(frame.sample_rate))

    def feed(self, pcm: np.ndarray, rate: int) -> None:
        """Microphone samples as numpy: ``(n,)`` mono or ``(n, channels)``, float in [-1, 1] or int16."""
        x = np.asarray(pcm)
        if (x.ndim == 2 and x.shape[1] not in (1, 2)) or x.ndim not in (1, 2):
            raise ValueError(f"microphone audio must be (n,) or (n, 1|2), got shape {x.shape}")
        self._feed_mono(_mono(x), int(rate))

    def _feed_mono(self, mono: np.ndarray, rate: int) -> None:
        """Resample one frame to 16 kHz (the resampler's state carries over between frames; a new
        rate flushes the old one's tail first) and queue it."""
        parts = []
        if self._resampler is not None and self._resampler.rate_in != rate:
            parts.append(self._resampler.flush())
            self._resampler = None
        if self._resampler is None:
            self._resampler = StreamResampler(rate, VAD_RATE)
        parts.append(self._resampler.process(mono))
        self.frames += 1
        out = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if out.size:
            self._queue(out, mono.size / rate)

    def _queue(self, pcm: np.ndarray, in_dur: float) -> None:
        now = self.clock_now()
        # stream time of the audio: samples counted from an anchor at the first frame, re-anchored
        # when arrival drifts (a stalled or bursty track) by more than 0.3 s
        if self._anchor is None or abs(self._anchor + self._fed / VAD_RATE - now) > 0.3:
            self._anchor = now - in_dur
            self._fed = 0
            self._in.put(np.array([self._anchor], np.float64))  # marker: re-anchor the segmenter
        self._fed += pcm.size
        backlog = self._in_samples / VAD_RATE
        if backlog > self.config.max_backlog_s:
            self.dropped_s += pcm.size / VAD_RATE
            return
        self._in_samples += pcm.size
        self._in.put(pcm)

    # ---- worker threads --------------------------------------------------------------------
    def _listen_loop(self) -> None:
        seg = self.segmenter
        pending = np.zeros(0, np.float32)
        while not self._stop.is_set():
            item = self._in.get()
            if item is None:
                return
            if item.dtype == np.float64:  # re-anchor: a gap in the stream
                for ev in seg.flush():
                    self._handle(ev)
                seg.t0 = float(item[0]) - seg._n / VAD_RATE
                pending = np.zeros(0, np.float32)
                continue
            self._in_samples -= item.size
            pending = np.concatenate([pending, item])
            whole = pending.size - pending.size % VAD_CHUNK
            for k in range(0, whole, VAD_CHUNK):
                chunk = pending[k : k + VAD_CHUNK]
                hold = False
                if self.echo is not None:
                    chunk, hold = self.echo.process(chunk, seg.time + VAD_CHUNK / VAD_RATE)
                for ev in seg.push(chunk, hold):
                    self._handle(ev)
                self._maybe_partial()
            pending = pending[whole:]

    def _handle(self, ev: SpeechStart | SpeechEnd) -> None:
        if isinstance(ev, SpeechStart):
            self._last_partial = ev.confirmed
            self.on_event({"type": "user", "state": "speaking", "t": round(ev.start, 3)})
            if self.on_onset is not None:
                self.on_onset(ev)
            return
        self.on_event({"type": "user", "state": "silent", "t": round(ev.end, 3)})
        self._submit(ev)

    def _maybe_partial(self) -> None:
        every = self.config.partial_every_s
        if every is None or not self.segmenter.speaking:
            return
        if self.segmenter.time - self._last_partial < every:
            return
        self._last_partial = self.segmenter.time
        so_far = self.segmenter.utterance_so_far()
        if so_far is not None:
            self._submit(so_far)

    def _submit(self, item: SpeechEnd | tuple[float, np.ndarray]) -> None:
        with self._asr_cond:
            if isinstance(item, tuple):  # a partial: only the newest one matters
                self._asr_q = collections.deque(x for x in self._asr_q if not isinstance(x, tuple))
            self._asr_q.append(item)
            while len(self._asr_q) > self.config.max_pending_utterances:
                dropped = self._asr_q.popleft()
                _LOG.warning("recogniser behind: dropped an utterance")
                if isinstance(dropped, SpeechEnd):
                    self.on_event(
                        {
                            "type": "error",
                            "code": "asr_busy",
                            "message": "speech recognition fell behind; an utterance was dropped",
                        }
                    )
            self._asr_cond.notify_all()

    def _asr_loop(self) -> None:
        while not self._stop.is_set():
            with self._asr_cond:
                while not self._asr_q and not self._stop.is_set():
                    self._asr_cond.wait(0.5)
                if self._stop.is_set():
                    return
                item = self._asr_q.popleft()
            if isinstance(item, SpeechEnd):
                pcm, pcm_start, final = item.pcm, item.pcm_start, True
                t_start, t_end = item.start, item.end
            else:
                pcm_start, pcm = item
                final = False
                t_start, t_end = pcm_start, pcm_start + pcm.size / VAD_RATE
            t0 = time.perf_counter()
            words = self.asr.transcribe(pcm)
            self.asr_ms.append((time.perf_counter() - t0) * 1000.0)
            text = " ".join(w.text for w in words).strip()
            if not text:
                continue
            if words:
                t_start = max(t_start - 0.05, pcm_start + float(words[0].start))
                t_end = min(t_end + 0.05, pcm_start + float(words[-1].end))
            self.on_event(
                {
                    "type": "transcript",
                    "text": text,
                    "final": final,
                    "t_start": round(t_start, 3),
                    "t_end": round(t_end, 3),
                }
            )

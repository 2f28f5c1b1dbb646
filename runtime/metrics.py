"""The server's Prometheus metrics (``GET /metrics``): stage latencies, per-session gauges, sessions.

Each :class:`~vlogger.runtime.server.VloggerServer` owns one :class:`ServerMetrics` with its own
``CollectorRegistry`` (no process-wide registry: several servers may run in one process). Times
are in seconds, as Prometheus names them; the buckets span the milliseconds these stages take.

* :class:`StageMetrics`, the stage histograms, observed where each stage happens: the pipeline
  (render, say -> first frame), the conversation (end of user speech -> transcript, barge-in) and
  the engines a session's pipeline is given (:class:`TimedEngines`: TTS first chunk, motion).
* per-session gauges (label ``session``) fed from each periodic ``stats`` event and removed when
  the session closes;
* the open sessions, and the sessions started and refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from vlogger.engines.motion.base import MotionEngine
from vlogger.engines.tts.base import TTS
from vlogger.engines.types import AudioChunk, MotionFrame
from vlogger.runtime.engine_factory import EngineFactory

__all__ = [
    "CONTENT_TYPE",
    "FRAME_BUCKETS",
    "LATENCY_BUCKETS",
    "ServerMetrics",
    "StageMetrics",
    "TimedEngines",
]

#: ``Content-Type`` of ``/metrics``: the text exposition format 0.0.4, which ``generate_latest`` writes
#: (every name here is a legacy Prometheus name, so no escaping is involved).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Buckets (s) of per-frame work: 1 ms to 1 s, dense around the 40 ms frame budget at 25 fps.
FRAME_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.06, 0.08, 0.12, 0.25, 0.5, 1.0)
#: Buckets (s) of latencies a user notices: 10 ms to 10 s.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

# stats event field -> (gauge name, help, scale to the gauge's unit)
_SESSION_GAUGES: dict[str, tuple[str, str, float]] = {
    "fps": ("vlogger_session_sent_frames_per_second", "Video frames sent per second.", 1.0),
    "fps_rendered": (
        "vlogger_session_rendered_frames_per_second",
        "Freshly rendered video frames sent per second (the rest repeat the previous picture).",
        1.0,
    ),
    "queue_frames": ("vlogger_session_queued_frames", "Rendered frames waiting to be sent.", 1.0),
    "queue_utterances": (
        "vlogger_session_queued_utterances",
        "Utterances queued or playing.",
        1.0,
    ),
    "audio_buffer_ms": (
        "vlogger_session_audio_buffer_seconds",
        "Speech audio placed ahead of playback.",
        0.001,
    ),
}


class StageMetrics:
    """The stage histograms (seconds). ``registry=None``: unregistered (observed, never exposed)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, registry=registry, buckets=buckets)

        self.tts_first_chunk = histogram(
            "vlogger_tts_first_chunk_seconds",
            "From asking the voice to synthesise an utterance to its first audio chunk.",
            LATENCY_BUCKETS,
        )
        self.motion = histogram(
            "vlogger_motion_seconds",
            "One motion-engine frames() call that produced frames (usually one frame).",
            FRAME_BUCKETS,
        )
        self.render_frame = histogram(
            "vlogger_render_frame_seconds",
            "Drawing one video frame on the render thread (motion, rig, renderer, colour conversion).",
            FRAME_BUCKETS,
        )
        self.say_to_first_frame = histogram(
            "vlogger_say_to_first_frame_seconds",
            "From a say (or audio segment) arriving to the first video frame of it being sent.",
            LATENCY_BUCKETS,
        )
        self.speech_end_to_transcript = histogram(
            "vlogger_speech_end_to_transcript_seconds",
            "From the end of the user's last word (media clock) to its final transcript.",
            LATENCY_BUCKETS,
        )
        self.barge_in = histogram(
            "vlogger_barge_in_seconds",
            "From the onset of user speech (media clock) to the avatar's speech being cut.",
            LATENCY_BUCKETS,
        )


class ServerMetrics:
    """All metrics of one server, in its own registry; :meth:`exposition` is the ``/metrics`` body."""

    def __init__(self, open_sessions: Callable[[], int] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.stages = StageMetrics(self.registry)
        self.sessions_open = Gauge("vlogger_sessions_open", "Sessions open now.", registry=self.registry)
        if open_sessions is not None:
            self.sessions_open.set_function(lambda: float(open_sessions()))
        self.sessions_started = Counter(
            "vlogger_sessions_started", "Sessions that started.", registry=self.registry
        )
        self.sessions_refused = Counter(
            "vlogger_sessions_refused",
            "Sessions refused: server_busy (at --max-sessions) or start_failed.",
            ["reason"],
            registry=self.registry,
        )
        for reason in ("server_busy", "start_failed"):
            self.sessions_refused.labels(reason)
        self._session_gauges = {
            field: (Gauge(name, doc, ["session"], registry=self.registry), scale)
            for field, (name, doc, scale) in _SESSION_GAUGES.items()
        }

    def session_stats(self, session_id: str, stats: dict[str, Any]) -> None:
        """Set the session's gauges from its ``stats`` event."""
        for field, (gauge, scale) in self._session_gauges.items():
            value = stats.get(field)
            if value is not None:
                gauge.labels(session_id).set(float(value) * scale)

    def session_closed(self, session_id: str) -> None:
        """Drop the session's gauges."""
        for gauge, _ in self._session_gauges.values():
            try:
                gauge.remove(session_id)
            except KeyError:  # it closed before its first stats event
                pass

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


class TimedEngines:
    """An :class:`EngineFactory` that times the voices and motion engines it hands a pipeline
    (everything else is ``engines``' own)."""

    def __init__(self, engines: EngineFactory, stages: StageMetrics) -> None:
        self.inner = engines
        self.stages = stages
        self.fps = engines.fps

    def prepare(self) -> None:
        self.inner.prepare()

    def close(self, timeout: float = 5.0) -> None:
        self.inner.close(timeout)

    def make_tts(self) -> TTS:
        return _TimedTTS(self.inner.make_tts(), self.stages.tts_first_chunk)

    def make_motion(self, index: int) -> MotionEngine:
        return _TimedMotion(self.inner.make_motion(index), self.stages.motion)

    def load_avatar(self, source: bytes | str | None) -> Any:
        return self.inner.load_avatar(source)

    def make_renderer(self, avatar: Any) -> Any:
        return self.inner.make_renderer(avatar)

    def make_vad(self) -> Any:
        return self.inner.make_vad()

    def make_asr(self) -> Any:
        return self.inner.make_asr()


class _TimedTTS:
    """A voice whose ``synthesize`` observes the time to its first chunk."""

    def __init__(self, inner: TTS, first_chunk: Histogram) -> None:
        self.inner = inner
        self._first_chunk = first_chunk

    @property
    def sample_rate(self) -> int:
        return self.inner.sample_rate

    def warmup(self) -> None:
        self.inner.warmup()

    def share(self) -> TTS:
        return _TimedTTS(self.inner.share(), self._first_chunk)

    def synthesize(self, text: str, start_pts: float = 0.0) -> Iterator[AudioChunk]:
        t0 = time.perf_counter()
        chunks = self.inner.synthesize(text, start_pts)  # BadText raises here, as without timing
        return self._timed(chunks, t0)

    def _timed(self, chunks: Iterator[AudioChunk], t0: float) -> Iterator[AudioChunk]:
        first = True
        for chunk in chunks:
            if first:
                self._first_chunk.observe(time.perf_counter() - t0)
                first = False
            yield chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _TimedMotion:
    """A motion engine whose ``frames`` calls are timed (those that produce frames)."""

    def __init__(self, inner: MotionEngine, seconds: Histogram) -> None:
        self.inner = inner
        self._seconds = seconds
        self.fps = inner.fps

    @property
    def needs_phonemes(self) -> bool:
        return self.inner.needs_phonemes

    def push_audio(self, chunk: AudioChunk) -> None:
        self.inner.push_audio(chunk)

    def end_of_input(self) -> None:
        self.inner.end_of_input()

    def clear_buffer(self) -> None:
        self.inner.clear_buffer()

    def ready_until(self) -> float:
        return self.inner.ready_until()

    def frames(self, until_pts: float) -> list[MotionFrame]:
        t0 = time.perf_counter()
        out = self.inner.frames(until_pts)
        if out:
            self._seconds.observe(time.perf_counter() - t0)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

"""Streaming voice activity detection with the Silero VAD v6 model that ships inside faster-whisper.

:class:`SileroVAD` scores one 32 ms chunk (512 samples at 16 kHz) at a time and carries the
model's recurrent ``h``/``c`` state and its 64-sample context between calls, which gives exactly
the probabilities of faster-whisper's whole-file pass. :class:`SpeechSegmenter` turns the
probabilities into speech edges and utterances: an onset counts only after ``min_speech_s`` of
speech (blips do not), an utterance ends after ``min_silence_s`` of silence (or at
``max_utterance_s``), and it carries ``pad_s`` of audio before its first speech chunk.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vlogger.engines.backends.base import Runner

__all__ = [
    "VAD_CHUNK",
    "VAD_RATE",
    "SileroVAD",
    "SpeechEnd",
    "SpeechProbability",
    "SpeechSegmenter",
    "SpeechStart",
    "VADConfig",
    "silero_model_path",
]

#: The model listens at 16 kHz in chunks of 512 samples (32 ms).
VAD_RATE = 16_000
VAD_CHUNK = 512
_CONTEXT = 64


def silero_model_path() -> Path:
    """The ``silero_vad_v6.onnx`` file of the installed faster-whisper."""
    import faster_whisper

    return Path(faster_whisper.__file__).resolve().parent / "assets" / "silero_vad_v6.onnx"


@dataclass(frozen=True)
class VADConfig:
    """Settings of speech detection and utterance cutting."""

    model_path: str | Path | None = None
    """Silero VAD ONNX file; ``None`` = the one packaged in faster-whisper."""
    threads: int = 1
    """onnxruntime intra-op threads (the model is tiny: about 0.2 ms per chunk on one core)."""
    backend: str = "onnxruntime"
    """Backend runner of the model (``vlogger.engines.backends.ort``): ``"onnxruntime"`` (CPU),
    ``"onnxruntime-cuda"`` or ``"onnxruntime-trt"``."""
    threshold: float = 0.5
    """Speech probability at or above which a chunk is speech."""
    neg_threshold: float = 0.35
    """Probability below which a chunk is silence (between the two, the state holds)."""
    min_speech_s: float = 0.25
    """Speech needed before an onset counts (keeps coughs and clicks from counting)."""
    min_silence_s: float = 0.5
    """Silence that ends an utterance (the end-of-turn wait)."""
    onset_gap_s: float = 0.3
    """Before an onset is confirmed, speech runs separated by pauses up to this long add up
    (a short first word such as "please" before a pause still opens the utterance; a lone blip
    followed by a longer pause is forgotten)."""
    pad_s: float = 0.2
    """Audio kept before the first speech chunk and after the last one in an utterance."""
    max_utterance_s: float = 30.0
    """An utterance longer than this is cut (and a new one starts if speech goes on)."""


class SpeechProbability(Protocol):
    """Scores 512-sample chunks at 16 kHz, in order (state carried between calls)."""

    def __call__(self, chunk: np.ndarray) -> float: ...

    def reset(self) -> None: ...


class SileroVAD:
    """Silero VAD v6 in streaming mode, in a backend runner (``OrtRunner``, threads pinned).

    The runner may be shared between several instances (``runner=``, from :meth:`load_runner`);
    each instance holds its own state, so one instance per audio stream.
    """

    def __init__(
        self, config: VADConfig | None = None, runner: Runner | None = None, *, session: Any = None
    ) -> None:
        self.config = config or VADConfig()
        if runner is None:
            runner = session  # the old keyword, until every caller passes ``runner=``
        self.runner = runner if runner is not None else self.load_runner(self.config)
        self.reset()

    @staticmethod
    def load_runner(config: VADConfig) -> Runner:
        """The model in ``config.backend``'s runner (share it between streams)."""
        from vlogger.engines.backends.ort import OrtConfig, OrtRunner
        from vlogger.engines.errors import InputError

        path = Path(config.model_path) if config.model_path is not None else silero_model_path()
        if not path.is_file():
            raise InputError(f"VAD model not found: {path}")
        return OrtRunner(path, config.backend, OrtConfig(threads=max(1, int(config.threads))))

    load_session = load_runner  # the old name, until every caller uses ``load_runner``

    def reset(self) -> None:
        """Forget the stream (a new one starts)."""
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(_CONTEXT, np.float32)

    def __call__(self, chunk: np.ndarray) -> float:
        """Speech probability of the next 512 samples (mono float32 at 16 kHz)."""
        x = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if x.size != VAD_CHUNK:
            raise ValueError(f"the VAD takes chunks of {VAD_CHUNK} samples, got {x.size}")
        inp = np.concatenate([self._context, x])[None, :]
        out = self.runner.infer({"input": inp, "h": self._h, "c": self._c})
        prob, self._h, self._c = (out[name] for name in self.runner.output_names)
        self._context = x[-_CONTEXT:].copy()
        return float(np.asarray(prob).reshape(-1)[0])


@dataclass(frozen=True)
class SpeechStart:
    """Speech has gone on for ``min_speech_s``: the user is talking."""

    start: float
    """Stream seconds of the first speech chunk."""
    confirmed: float
    """Stream seconds at which the onset was confirmed (end of the deciding chunk)."""


@dataclass(frozen=True)
class SpeechEnd:
    """An utterance is complete (silence, or the length limit)."""

    start: float
    """Stream seconds of its first speech chunk."""
    end: float
    """Stream seconds of the end of its last speech chunk."""
    pcm: np.ndarray
    """16 kHz mono float32, from ``pad_s`` before ``start`` to ``pad_s`` after ``end``."""
    pcm_start: float
    """Stream seconds of ``pcm[0]``."""
    forced: bool = False
    """Cut at ``max_utterance_s`` rather than by silence."""


class SpeechSegmenter:
    """VAD probabilities -> :class:`SpeechStart` / :class:`SpeechEnd` events.

    Feed 16 kHz mono float32 of any length with :meth:`push`; stream time is the sample count
    divided by 16,000 plus ``t0`` (the caller maps it to its clock).
    """

    def __init__(self, vad: SpeechProbability, config: VADConfig | None = None, t0: float = 0.0) -> None:
        self.vad = vad
        self.config = config or VADConfig()
        self.t0 = t0
        self._pending = np.zeros(0, np.float32)
        self._n = 0  # samples scored so far
        keep_s = self.config.pad_s + self.config.min_speech_s + 2.0  # pre-roll + a held onset
        self._history: collections.deque[np.ndarray] = collections.deque(
            maxlen=int(np.ceil(keep_s * VAD_RATE / VAD_CHUNK))
        )
        self._speech: list[np.ndarray] = []
        self._candidate: float | None = None
        self._run = 0.0
        self._gap = 0.0  # pause since the candidate's last speech chunk (before confirmation)
        self._silence = 0.0
        self._last_speech_end = 0.0
        self.speaking = False
        self.last_probability = 0.0

    @property
    def time(self) -> float:
        """Stream seconds of the end of the audio scored so far."""
        return self.t0 + self._n / VAD_RATE

    def utterance_so_far(self) -> tuple[float, np.ndarray] | None:
        """``(pcm_start, pcm)`` of the utterance in progress (for partial transcripts)."""
        if not self.speaking or not self._speech:
            return None
        pcm = np.concatenate(self._speech)
        return self.time - pcm.size / VAD_RATE, pcm

    def push(self, pcm16k: np.ndarray, hold: bool = False) -> list[SpeechStart | SpeechEnd]:
        """Score whole chunks of what arrived; returns the edges they produced, in order.

        ``hold``: the caller cannot tell whether this audio holds the user's speech (it is
        drowned by the avatar's own voice): its chunks neither start, extend nor end speech."""
        x = np.asarray(pcm16k, dtype=np.float32).reshape(-1)
        buf = np.concatenate([self._pending, x]) if self._pending.size else x
        out: list[SpeechStart | SpeechEnd] = []
        whole = buf.size - buf.size % VAD_CHUNK
        for k in range(0, whole, VAD_CHUNK):
            ev = self._step(buf[k : k + VAD_CHUNK], hold)
            if ev is not None:
                out.extend(ev)
        self._pending = buf[whole:].copy()
        return out

    def flush(self) -> list[SpeechStart | SpeechEnd]:
        """End the stream: an utterance in progress is complete."""
        if self.speaking:
            return [self._finish(forced=False)]
        return []

    def _step(self, chunk: np.ndarray, hold: bool = False) -> list[SpeechStart | SpeechEnd] | None:
        cfg = self.config
        dt = VAD_CHUNK / VAD_RATE
        start = self.time
        if hold:
            p = 0.5 * (cfg.threshold + cfg.neg_threshold)  # between the two: the state holds
        else:
            p = self.vad(chunk)
            self.last_probability = p
        self._n += VAD_CHUNK
        end = self.time
        if not self.speaking:
            self._history.append(chunk)
            if p >= cfg.threshold:
                if self._candidate is None:
                    self._candidate = start
                    self._run = 0.0
                self._gap = 0.0
                self._run += dt
                if self._run >= cfg.min_speech_s - 1e-9:
                    self.speaking = True
                    self._silence = 0.0
                    self._last_speech_end = end
                    pad_chunks = int(np.ceil((end - self._candidate + cfg.pad_s) / dt - 1e-9))
                    self._speech = list(self._history)[-pad_chunks:]
                    self._history.clear()
                    return [SpeechStart(start=self._candidate, confirmed=end)]
            elif p < cfg.neg_threshold and self._candidate is not None:
                self._gap += dt
                if self._gap > cfg.onset_gap_s + 1e-9:
                    self._candidate = None  # a blip followed by a real pause: forget it
                    self._run = 0.0
            return None
        self._speech.append(chunk)
        if p >= cfg.threshold:
            self._silence = 0.0
            self._last_speech_end = end
        elif p < cfg.neg_threshold:
            self._silence += dt
        out: list[SpeechStart | SpeechEnd] = []
        if self._silence >= cfg.min_silence_s - 1e-9:
            out.append(self._finish(forced=False))
        elif end - (self._candidate or end) >= cfg.max_utterance_s:
            out.append(self._finish(forced=True))
            self.speaking = True  # speech goes on: a new utterance starts here
            self._candidate = end
            self._speech = []
            self._last_speech_end = end
            out.append(SpeechStart(start=end, confirmed=end))
        return out

    def _finish(self, forced: bool) -> SpeechEnd:
        cfg = self.config
        pcm = np.concatenate(self._speech) if self._speech else np.zeros(0, np.float32)
        pcm_start = self.time - pcm.size / VAD_RATE
        keep = round((self._last_speech_end + cfg.pad_s - pcm_start) * VAD_RATE)
        pcm = pcm[: max(0, keep)]
        start = self._candidate if self._candidate is not None else pcm_start
        ev = SpeechEnd(start=start, end=self._last_speech_end, pcm=pcm, pcm_start=pcm_start, forced=forced)
        self.speaking = False
        self._candidate = None
        self._run = 0.0
        self._silence = 0.0
        self._speech = []
        self._history.clear()
        return ev

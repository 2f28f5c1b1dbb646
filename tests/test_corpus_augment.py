"""Augmentations keep length and alignment and do what they say."""

from __future__ import annotations

import numpy as np
import pytest

from training.motion import augment as A

SR = 16_000


def _speechlike(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Harmonic bursts (syllables) with pauses: a voiced 140 Hz source, 4 Hz on/off."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 140.0 * (1 + 0.05 * np.sin(2 * np.pi * 1.3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 20))
    env = (np.sin(2 * np.pi * 4 * t) > 0).astype(float)
    return (0.2 * x * env + 0.001 * rng.standard_normal(t.size)).astype(np.float32)


def _band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum())


@pytest.mark.parametrize("kind", ["white", "pink", "babble"])
@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_noise_hits_the_requested_snr(kind, snr):
    x = _speechlike()
    rng = np.random.default_rng(1)
    babble = [_speechlike(1.3, s) for s in range(2, 6)]
    y = A.add_noise(x, snr, kind, rng, babble)
    assert y.shape == x.shape
    assert A.snr_db(x, y) == pytest.approx(snr, abs=0.05)


def test_band_limit_removes_energy_above_4k_and_below_300():
    rng = np.random.default_rng(2)
    x = (0.1 * rng.standard_normal(SR)).astype(np.float32)
    y = A.band_limit(x, SR)
    assert y.shape == x.shape
    assert _band_energy(y, 4000, 8000) < 1e-3 * _band_energy(x, 4000, 8000)  # -30 dB
    assert _band_energy(y, 20, 150) < 0.01 * _band_energy(x, 20, 150)
    assert _band_energy(y, 800, 3000) > 0.5 * _band_energy(x, 800, 3000)


def _decay_time(x: np.ndarray, start: int) -> int:
    """Samples after ``start`` until the envelope falls 40 dB below its level at ``start``."""
    env = np.sqrt(np.convolve(x.astype(np.float64) ** 2, np.ones(160) / 160, mode="same"))
    ref = env[start - 200 : start].mean()
    below = np.flatnonzero(env[start:] < ref * 0.01)
    return int(below[0]) if below.size else x.size - start


def test_reverb_lengthens_the_decay_and_keeps_length():
    x = np.zeros(SR, np.float32)
    x[2000:8000] = np.sin(2 * np.pi * 300 * np.arange(6000) / SR).astype(np.float32) * 0.3
    y = A.reverb(x, 0.6, np.random.default_rng(3), SR, wet=0.7)
    assert y.shape == x.shape
    dry, wet = _decay_time(x, 8000), _decay_time(y, 8000)
    assert wet > dry + 0.1 * SR  # the tail rings on for more than 100 ms
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=0.05)


def test_gain_and_clipping():
    x = _speechlike()
    y = A.gain(x, -6.0)
    assert np.max(np.abs(y)) == pytest.approx(np.max(np.abs(x)) * 10 ** (-6 / 20), rel=1e-5)
    z = A.gain(x, 20.0)
    assert np.max(np.abs(z)) == pytest.approx(1.0)
    assert np.mean(np.abs(z) >= 1.0) > 0.05  # hard clipped
    d = A.dc_offset(x, 0.1)
    assert float(np.mean(d - x)) == pytest.approx(0.1, abs=1e-3)


def test_pitch_shift_keeps_length_and_moves_the_pitch():
    t = np.arange(SR) / SR
    x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    for semis in (-3.0, 4.0):
        y = A.pitch_shift(x, semis, SR)
        assert y.shape == x.shape
        f = np.fft.rfftfreq(y.size, 1 / SR)[np.argmax(np.abs(np.fft.rfft(y)))]
        assert f == pytest.approx(220 * 2 ** (semis / 12), rel=0.01)


def test_time_changes_scale_length_exactly():
    x = _speechlike(1.5)
    for factor in (0.85, 1.2):
        y = A.time_stretch(x, factor)
        assert y.shape[0] == round(x.shape[0] * factor)
        z = A.speed(x, factor, SR)
        assert z.shape[0] == round(x.shape[0] * factor)
    # the stretched syllables still sit where the scaled clock says
    y = A.time_stretch(x, 1.2)
    env_x = np.abs(x).reshape(-1, 400).mean(1)
    env_y = np.abs(y[: (y.size // 480) * 480]).reshape(-1, 480).mean(1)
    n = min(env_x.size, env_y.size)
    assert np.corrcoef(env_x[:n], env_y[:n])[0, 1] > 0.8


def test_augmenter_plans_vary_and_keep_length():
    aug = A.Augmenter(A.AugmentConfig(), SR)
    x = _speechlike()
    ops = set()
    for s in range(40):
        rng = np.random.default_rng(s)
        plan = aug.plan(rng)
        ops.update(p["op"] for p in plan)
        y = aug.apply(x, plan, rng, [_speechlike(1.0, 9)])
        assert y.shape == x.shape and np.isfinite(y).all()
    assert {"pitch", "reverb", "noise", "band", "gain"} <= ops

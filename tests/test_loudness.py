"""The one loudness tracker (``engines.loudness``) reads what the three trackers it replaced read.

The replaced code is kept below as oracles: ``frame_energy``'s cumulative sums, the learned motion
engine's per-frame sums of squares, and the phoneme teacher's 10 ms ``EnergyBins``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from vlogger.engines.audio import frame_energy, speech_envelope
from vlogger.engines.loudness import SILENCE_DB, LoudnessTracker, db_level


def _speechlike(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * k * 130 * t) / k for k in range(1, 10))
    env = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2 * (np.sin(2 * np.pi * 0.3 * t) > -0.3)
    return (0.15 * env * (voice + 0.3 * rng.standard_normal(len(t)))).astype(np.float32)


def _signals(rate: int) -> dict[str, np.ndarray]:
    x = _speechlike(2.0, rate)
    return {
        "speech": x,
        "speech_dc": x + 0.05,
        "tone": (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32),
        "silence_then_tone": np.concatenate([np.zeros(rate // 2, np.float32), x[: rate // 3]]),
        "short": x[:123],
    }


# ---- the replaced code ------------------------------------------------------------------------
def _old_frame_energy(pcm: np.ndarray, rate: int, fps: float) -> np.ndarray:
    x = np.asarray(pcm, dtype=np.float64).reshape(-1)
    n = math.ceil(x.shape[0] * fps / rate - 1e-9)
    edges = np.clip(np.round(np.arange(n + 1) * (rate / fps)).astype(np.int64), 0, x.shape[0])
    out = np.full(n, SILENCE_DB)
    csum = np.concatenate([[0.0], np.cumsum(x)])
    csq = np.concatenate([[0.0], np.cumsum(x * x)])
    a, b = edges[:-1], edges[1:]
    count = (b - a).astype(np.float64)
    has = count > 0
    mean = np.where(has, (csum[b] - csum[a]) / np.maximum(count, 1), 0.0)
    var = np.where(has, (csq[b] - csq[a]) / np.maximum(count, 1) - mean * mean, 0.0)
    with np.errstate(divide="ignore"):
        db = 20.0 * np.log10(np.sqrt(np.maximum(var, 0.0)))
    out[has] = np.maximum(db[has], SILENCE_DB)
    return out.astype(np.float32)


def _old_network_db(pieces: list[tuple[int, np.ndarray]], spf: int, frames: int) -> np.ndarray:
    sq: dict[int, tuple[float, int]] = {}
    for start, x in pieces:
        idx = (start + np.arange(len(x))) // spf
        for f in np.unique(idx):
            seg = x[idx == f].astype(np.float64)
            s, c = sq.get(int(f), (0.0, 0))
            sq[int(f)] = (s + float(np.sum((seg - seg.mean()) ** 2)), c + len(seg))
    out = []
    for i in range(frames):
        s, c = sq.get(i, (0.0, 0))
        out.append(10.0 * math.log10(s / c) if c and s > 0 else -100.0)
    return np.array(out)


class _OldEnergyBins:
    def __init__(self, hop_s: float = 0.01) -> None:
        self.hop_s = hop_s
        self._bins: dict[int, np.ndarray] = {}
        self._last_end = -math.inf
        self._last_sample = 0.0
        self._last_rate = 0

    def add(self, pcm: np.ndarray, rate: int, pts: float) -> None:
        pcm = np.asarray(pcm, dtype=np.float64)
        n = len(pcm)
        contiguous = rate == self._last_rate and abs(pts - self._last_end) < 0.5 / rate
        diff = np.diff(pcm, prepend=self._last_sample if contiguous else pcm[0])
        idx = np.floor((pts + np.arange(n) / rate) / self.hop_s + 1e-6).astype(np.int64)
        for b in np.unique(idx):
            m = idx == b
            acc = self._bins.setdefault(int(b), np.zeros(3))
            acc += (np.sum(pcm[m] ** 2), np.sum(diff[m] ** 2), np.sum(m))
        self._last_end, self._last_sample, self._last_rate = pts + n / rate, float(pcm[-1]), rate

    def window(self, t0: float, t1: float) -> tuple[float, float]:
        b0 = math.floor(t0 / self.hop_s + 1e-6)
        b1 = max(b0 + 1, math.floor(t1 / self.hop_s + 1e-6))
        sq = dq = cnt = 0.0
        for b in range(b0, b1):
            acc = self._bins.get(b)
            if acc is not None:
                sq, dq, cnt = sq + acc[0], dq + acc[1], cnt + acc[2]
        if cnt <= 0.0:
            return 0.0, 0.0
        return math.sqrt(sq / cnt), (min(1.0, dq / (4.0 * sq + 1e-12)) if sq > 0.0 else 0.0)


def _old_teacher_loudness(rms: float, floor_db: float = -45.0, ceiling_db: float = -12.0) -> float:
    if rms <= 0.0:
        return 0.0
    db = 20.0 * math.log10(rms)
    return min(1.0, max(0.0, (db - floor_db) / (ceiling_db - floor_db)))


# ---- before == after ---------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("fps", [25.0, 30.0, 50.0])
def test_frame_energy_reads_as_before(rate: int, fps: float) -> None:
    for name, x in _signals(rate).items():
        new, old = frame_energy(x, rate, fps), _old_frame_energy(x, rate, fps)
        assert new.shape == old.shape, name
        np.testing.assert_allclose(new, old, atol=1e-3, err_msg=name)
        env = speech_envelope(x, rate, fps)
        want = np.clip((old.astype(np.float64) + 50.0) / 35.0, 0.0, 1.0)
        np.testing.assert_allclose(env, want, atol=1e-4, err_msg=name)


def test_frame_bins_differ_from_before_only_on_half_sample_edges() -> None:
    # 11025 Hz at 30 fps: frames of 367.5 samples. The old edges rounded halves to even, the
    # tracker rounds them up; all other frames read the same.
    x = _speechlike(2.0, 11025)
    new, old = frame_energy(x, 11025, 30.0), _old_frame_energy(x, 11025, 30.0)
    edges = np.arange(len(new) + 1) * 367.5
    moved = np.round(edges) != np.floor(edges + 0.5)
    touched = moved[:-1] | moved[1:]
    np.testing.assert_allclose(new[~touched], old[~touched], atol=1e-3)
    assert touched.any()


@pytest.mark.parametrize("piece", [640, 1280, 320, 1000, 377])
def test_the_network_engines_frame_loudness_reads_as_before(piece: int) -> None:
    x = _speechlike(3.0, 16000, seed=2)
    t = LoudnessTracker(25.0)
    for o in range(0, len(x), piece):
        t.add(x[o : o + piece], 16000, o)
    new = np.array([t.db(i) for i in range(76)])
    # The old sums removed the mean of each piece's part of a frame: what the engine fed in whole
    # frames it read as the tracker does; pieces that split frames shifted its reading (up to 2 dB
    # here), the tracker's does not move.
    whole_frames = _old_network_db([(o, x[o : o + 640]) for o in range(0, len(x), 640)], 640, 76)
    np.testing.assert_allclose(new, whole_frames, atol=1e-9)
    if piece % 640 == 0:
        old = _old_network_db([(o, x[o : o + piece]) for o in range(0, len(x), piece)], 640, 76)
        np.testing.assert_allclose(new, old, atol=1e-9)


def test_the_teachers_envelope_reads_as_before() -> None:
    rng = np.random.default_rng(5)
    old, new = _OldEnergyBins(), LoudnessTracker(100.0)
    for rate, pts, seconds in ((22050, 0.0, 1.5), (16000, 1.5, 1.0), (22050, 3.0, 1.2)):  # a gap at 2.5 s
        x = _speechlike(seconds, rate, seed=rate)
        o = 0
        while o < len(x):
            k = int(rng.integers(50, 3000))
            old.add(x[o : o + k], rate, pts + o / rate)
            new.add(x[o : o + k], rate, round((pts + o / rate) * rate))
            o += k
    for t in np.arange(0.0, 4.3, 0.04):
        rms, hf = old.window(t - 0.02, t + 0.02)
        k0 = new.bin_at(t - 0.02)
        db, hf_new = new.window(k0, max(k0 + 1, new.bin_at(t + 0.02)))
        assert hf_new == pytest.approx(hf, abs=1e-9)
        assert float(db_level(db, -45.0, -12.0)) == pytest.approx(_old_teacher_loudness(rms), abs=1e-9)
        if rms > 0:
            assert db == pytest.approx(20 * math.log10(rms), abs=1e-9)
        else:
            assert db == SILENCE_DB


# ---- the tracker itself ------------------------------------------------------------------------
def test_bins_hold_the_frames_audio_at_any_rate() -> None:
    t = LoudnessTracker(30.0)
    for rate in (8000, 11025, 16000, 22050, 44100, 48000):
        p = rate / 30.0
        for k in range(200):
            edge = t.bin_edge(k, rate)
            assert edge == math.floor(k * p + 0.5)
            assert t.bin_of(edge, rate) == k and (edge == 0 or t.bin_of(edge - 1, rate) == k - 1)


def test_forgetting() -> None:
    t = LoudnessTracker(25.0)
    x = _speechlike(1.0, 16000)
    t.add(x, 16000, 0)
    assert len(t) == 25 and t.db(1) > -60
    t.forget_from(20)
    assert len(t) == 20 and t.db(22) == SILENCE_DB
    t.forget_before(5)
    assert len(t) == 15 and t.db(3) == SILENCE_DB
    t.add(x[:640], 16000, 0)  # audio for forgotten bins is ignored
    assert t.db(0) == SILENCE_DB
    t.add(x[640 * 20 : 640 * 21], 16000, 640 * 20)  # dropped bins fill again
    assert t.db(20) == pytest.approx(frame_energy(x, 16000, 25.0)[20], abs=1e-3)


def test_db_level() -> None:
    np.testing.assert_allclose(
        db_level(np.array([-100.0, -50.0, -32.5, -15.0, 0.0]), -50.0, -15.0), [0, 0, 0.5, 1, 1]
    )
    with pytest.raises(ValueError):
        db_level(0.0, -10.0, -20.0)

"""benchmarks/lipsync_render.py: the scores on synthetic series, and the rendered level (the real
pipeline, read back with FaceMesh) on a synthetic tone burst and on a real GRID clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from media import SHARED_DATA

from benchmarks.lipsync_render import (
    FPS,
    SAMPLE_RATE,
    RenderedClip,
    clip_audio,
    clip_photo,
    fidelity,
    real_opening,
    render_clip,
    rest_and_std,
    score,
    silent_frames,
)
from vlogger.runtime.config import VloggerConfig

SPF = SAMPLE_RATE // int(FPS)  # 640 samples per 25 fps frame
GRID_CLIP = "grid_gm01_01"
GRID_MP4 = SHARED_DATA / "real" / f"{GRID_CLIP}.mp4"
ROOT = Path(__file__).resolve().parents[1]


def _smooth_series(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=n + 20)
    return np.convolve(x, np.ones(5) / 5, mode="same")[10 : n + 10]


@pytest.mark.parametrize("lag", [-2, -1, 0, 1, 2])
def test_score_finds_a_known_lag(lag: int) -> None:
    n = 200
    base = _smooth_series(n + 10)
    real = base[5 : 5 + n]
    pred = base[5 + lag : 5 + lag + n]  # pred[t] = real[t + lag]: lag > 0 means pred moves earlier
    r, found = score(real, pred, max_lag=2)
    assert found == lag
    assert r == pytest.approx(1.0, abs=1e-9)


def test_score_ignores_nan_and_scale() -> None:
    real = _smooth_series(150, seed=1)
    pred = 3.0 * real + 0.5
    real = real.copy()
    real[::7] = np.nan
    pred[3::11] = np.nan
    r, lag = score(real, pred)
    assert lag == 0 and r == pytest.approx(1.0, abs=1e-9)
    assert np.isnan(score(np.full(10, np.nan), pred[:10])[0])


def test_fidelity_reports_ratio_offset_and_lag() -> None:
    commanded = _smooth_series(120, seed=2) * 0.05 + 0.1
    f = fidelity(0.5 * commanded + 0.01, commanded)
    assert f.r == pytest.approx(1.0) and f.lag == 0
    assert f.std_ratio == pytest.approx(0.5)
    assert f.mean_diff == pytest.approx(-0.5 * float(np.mean(commanded)) + 0.01)
    late = np.concatenate([[commanded[0]], commanded[:-1]])  # rendered one frame late
    assert fidelity(late, commanded).lag == -1


def test_rest_and_std_uses_silent_runs_only() -> None:
    n = 40
    audio = np.zeros(n * SPF, np.float32)
    t = np.arange(n * SPF) / SAMPLE_RATE
    loud = slice(10 * SPF, 30 * SPF)
    audio[loud] = 0.3 * np.sin(2 * np.pi * 220 * t[loud])
    audio[34 * SPF : 35 * SPF] = 0.3  # DC only: RMS with the mean removed is 0, still silent
    audio[37 * SPF : 38 * SPF] = 0.3 * np.sin(2 * np.pi * 220 * t[:SPF])  # breaks the last run
    silent = silent_frames(audio, n)
    assert silent[:10].all() and not silent[10:30].any()
    assert silent[30:37].all() and not silent[37:].any()  # 38-39: a run of 2 frames is too short
    rendered = np.full(n, 0.2)
    rendered[:10] = 0.02
    rendered[30:37] = 0.04
    real = np.linspace(0.0, 0.3, n)
    res = rest_and_std(rendered, audio, real)
    assert res.silent_frames == 17
    assert res.rest_rendered == pytest.approx(0.02)
    assert res.rest_real == pytest.approx(float(np.percentile(real, 5)))
    assert res.std_ratio == pytest.approx(float(np.std(rendered) / np.std(real)))


def _check_rendered(rc: RenderedClip, n: int) -> None:
    assert rc.n_frames == n
    assert rc.rendered.shape == rc.commanded.shape == (n,)
    assert rc.face_found > 0.9
    assert rc.rerun_max_diff == 0.0  # the replayed engine gives the render's very frames
    assert rc.pts_ok and rc.lead_frames == 5 and rc.video_frames >= n + 5
    assert abs(rc.av_offset_s) <= 0.5 / FPS
    assert np.nanstd(rc.commanded) > 0.01  # the mouth moves
    assert rc.fidelity is not None and rc.fidelity.r > 0.5, rc.fidelity
    assert rc.fidelity.lag == 0, rc.fidelity  # rendered frame i shows motion frame i


def test_render_clip_on_a_tone_burst(tmp_path: Path) -> None:
    """The shipped portrait "says" 2 s of 150 ms tone bursts (no shared data needed)."""
    import cv2

    from vlogger.engines.avatar import DEFAULT_PORTRAIT

    n = 50
    t = np.arange(n * SPF) / SAMPLE_RATE
    gate = (np.floor(t / 0.15) % 2 == 1) & (t > 0.3) & (t < 1.7)
    audio = (0.25 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) * gate).astype(
        np.float32
    )
    bgr = cv2.imread(str(DEFAULT_PORTRAIT))
    assert bgr is not None
    photo = bgr[:, :, ::-1]
    config = VloggerConfig()
    config.motion_engine = "teacher"
    rc = render_clip(photo, audio, config, tmp_path)
    _check_rendered(rc, n)
    assert rc.height == 256 and rc.warp_lips_flipped is False


@pytest.mark.skipif(not GRID_MP4.is_file(), reason=f"no real clips at {GRID_MP4.parent}")
def test_render_clip_on_a_real_grid_clip(tmp_path: Path) -> None:
    corpus = ROOT / "training" / "data" / "real"
    if not (corpus / f"{GRID_CLIP}.landmarks25.npz").is_file():
        pytest.skip(f"no {GRID_CLIP}.landmarks25.npz in {corpus}")
    audio = clip_audio(GRID_CLIP, corpus)
    real = real_opening(GRID_CLIP, corpus)
    assert len(audio) == len(real) * SPF
    rc = render_clip(clip_photo(GRID_MP4, 0), audio, lambda: VloggerConfig(motion_engine="teacher"), tmp_path)
    _check_rendered(rc, len(real))
    r, lag = score(real, rc.rendered)
    assert r > 0.2 and abs(lag) <= 2

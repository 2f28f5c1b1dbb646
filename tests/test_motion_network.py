"""The learned motion network: features, sampler, streaming engine, bad input."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from scipy.signal import resample_poly

from vlogger.engines.diffusion import DDIMScheduler
from vlogger.engines.errors import InputError
from vlogger.engines.motion.factory import make_motion_engine
from vlogger.engines.motion.features import (
    FeatureConfig,
    FeatureStream,
    offline_features,
)
from vlogger.engines.motion.network import (
    NetworkConfig,
    NetworkMotionEngine,
    _default_model_path,
    ar1_noise,
    noise_correlations,
    noise_scales,
    offline_rollout,
)
from vlogger.engines.types import EXPRESSION_NAMES, AudioChunk, MotionFrame

MODEL = os.environ.get("VLOGGER_MOTION_MODEL") or str(_default_model_path())
JAW = EXPRESSION_NAMES.index("jaw_open")
needs_model = pytest.mark.skipif(not os.path.exists(MODEL), reason=f"no motion network at {MODEL}")


def _speechlike(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Syllable-rate (4 Hz) bursts of a harmonic voice with formant-like noise, pauses between."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.5 * t)
    voice = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / rate) / k for k in range(1, 12))
    env = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2 * (np.sin(2 * np.pi * 0.3 * t) > -0.3)
    return (0.15 * env * (voice + 0.3 * rng.standard_normal(len(t)))).astype(np.float32)


def _vec(f: MotionFrame) -> np.ndarray:
    return np.concatenate([f.expression, f.head, f.body.reshape(-1)])


def _stream(
    engine: NetworkMotionEngine, pcm: np.ndarray, rate: int, chunk_s: float = 0.3, pts: float = 0.0
) -> list[MotionFrame]:
    out: list[MotionFrame] = []
    step = round(chunk_s * rate)
    for k, off in enumerate(range(0, len(pcm), step)):
        engine.push_audio(AudioChunk(pcm[off : off + step], rate, pts + off / rate, sample_offset=off))
        if k % 2:
            out += engine.frames(math.inf)
    engine.end_of_input()
    out += engine.frames(pts + len(pcm) / rate)
    return out


# ---- features -------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk", [160, 777, 4000])
def test_features_stream_equals_offline_for_any_chunking(chunk: int) -> None:
    x = _speechlike(2.0)
    cfg = FeatureConfig()
    ref = offline_features(x, 50, cfg)
    fs = FeatureStream(cfg)
    got = []
    for off in range(0, len(x), chunk):
        fs.push(x[off : off + chunk])
        got.append(fs.pop())
    fs.finish()
    got.append(fs.pop())
    # equal within float rounding: other chunkings give other array shapes to the FFT and the
    # filterbank product, whose float32 sums round differently on some machines (4.8e-7 seen)
    atol = 1e-5 * float(np.abs(ref).max())  # log-mel values reach ~6
    np.testing.assert_allclose(np.concatenate(got)[:50], ref, rtol=0, atol=atol)
    assert np.abs(ref[1:] - ref[:-1]).max() > 1000 * atol  # a frame off would fail by far


def test_features_are_causal_with_the_named_lookahead() -> None:
    cfg = FeatureConfig(lookahead_frames=2)
    x = _speechlike(2.0)
    y = x.copy()
    y[30 * 640 :] = 0.5 * np.sign(np.sin(np.arange(len(y) - 30 * 640)))  # change the audio from frame 30 on
    fx, fy = offline_features(x, 50, cfg), offline_features(y, 50, cfg)
    # Frame i sees audio up to the end of frame i + 2, plus the 15 ms tail of its last 25 ms window.
    np.testing.assert_array_equal(fx[:27], fy[:27])
    last = (cfg.context_frames + 1 + cfg.lookahead_frames) * 2 - 1  # its last 20 ms step
    np.testing.assert_array_equal(fx[27, : last * 80], fy[27, : last * 80])
    assert np.abs(fx[28] - fy[28]).max() > 0.1


def test_features_ignore_dc_offset() -> None:
    x = _speechlike(1.0)
    a, b = offline_features(x, 25), offline_features(x + 0.3, 25)
    # Away from the steps at the signal's edges (silence before and after it) the offset is invisible.
    assert np.abs(a[3:21] - b[3:21]).max() < 1e-2


# ---- sampler --------------------------------------------------------------------------------
def test_ddim_recovers_x0_from_its_own_noise_path() -> None:
    s = DDIMScheduler(1000, prediction_type="sample")
    assert s.set_timesteps(4) == [1000, 750, 500, 250]
    rng = np.random.default_rng(0)
    x0, eps = rng.standard_normal(8), rng.standard_normal(8)
    x = np.sqrt(s.alpha_bar[1000]) * x0 + np.sqrt(1 - s.alpha_bar[1000]) * eps
    for t in s.timesteps:
        x = s.step(x0, t, x)
        tp = s.previous_timestep(t)
        if tp:  # deterministic DDIM stays on the path x_t = sqrt(ab) x0 + sqrt(1 - ab) eps
            np.testing.assert_allclose(
                x, np.sqrt(s.alpha_bar[tp]) * x0 + np.sqrt(1 - s.alpha_bar[tp]) * eps, atol=1e-4
            )
    np.testing.assert_allclose(x, x0, atol=1e-6)
    with pytest.raises(InputError):
        s.set_timesteps(0)


def test_ar1_noise_is_unit_variance_and_correlated() -> None:
    eps = np.random.default_rng(0).standard_normal((20000, 4)).astype(np.float32)
    z = ar1_noise(eps, 0.9)
    np.testing.assert_array_equal(ar1_noise(eps, 0.0), eps)
    assert abs(z.std() - 1.0) < 0.05
    r1 = np.mean([np.corrcoef(z[1:, k], z[:-1, k])[0, 1] for k in range(4)])
    assert abs(r1 - 0.9) < 0.02
    with pytest.raises(InputError):
        NetworkConfig(noise_correlation=1.0)
    with pytest.raises(InputError):
        NetworkConfig(mouth_noise_scale=1.5)
    cfg = NetworkConfig(noise_correlation=0.9, mouth_noise_correlation=0.2, mouth_noise_scale=0.5)
    rho, scale = noise_correlations(cfg, 174), noise_scales(cfg, 174)
    assert rho[0] == rho[8] == np.float32(0.2) and rho[9] == rho[15] == rho[173] == np.float32(0.9)
    assert scale[0] == scale[8] == 0.5 and scale[9] == scale[173] == 1.0


# ---- engine ---------------------------------------------------------------------------------
@needs_model
@pytest.mark.parametrize("rho", [0.0, 0.9])
def test_streamed_output_equals_offline_causal_rollout(rho: float) -> None:
    cfg = NetworkConfig(
        model_path=MODEL,
        eyes="network",
        mouth="network",  # the diffusion network's own mouth (the read-out's: the next test)
        noise_correlation=rho,
        mouth_noise_correlation=rho / 2,
        mouth_noise_scale=1 - rho / 2,
    )
    eng = NetworkMotionEngine(cfg, seed=5)
    x = _speechlike(1.2, rate=16000)
    frames = _stream(eng, x, 16000, chunk_s=0.13)
    n = 24
    feats = offline_features(x, n, eng.feature_config)
    noises = ar1_noise(
        np.random.default_rng([5, 0x4E7]).standard_normal((n, 174)).astype(np.float32),
        noise_correlations(cfg, 174),
    ) * noise_scales(cfg, 174)
    ref = offline_rollout(feats, noises, cfg) * eng._std + eng._mean
    got = np.stack([_vec(f) for f in frames[:n]])
    np.testing.assert_allclose(got[:, 15:], ref[:, 15:], atol=1e-4)  # head and body as generated
    np.testing.assert_allclose(got[:, :13], np.clip(ref[:, :13], 0, 1), atol=1e-4)


@needs_model
def test_streamed_readout_mouth_equals_offline_readout() -> None:
    """With the learned mouth (the default), the mouth channels are the read-out of the same
    features computed offline; head and body are still the diffusion network's."""
    from vlogger.engines.motion.mouth import MouthReadout, load_mouth_model

    eng = NetworkMotionEngine(NetworkConfig(model_path=MODEL), seed=5)
    x = _speechlike(1.2, rate=16000)
    frames = _stream(eng, x, 16000, chunk_s=0.13)
    n = 24
    feats = offline_features(x, n, eng.feature_config)
    ref = MouthReadout(load_mouth_model()).offline(feats)
    got = np.stack([f.expression[:9] for f in frames[:n]])
    np.testing.assert_allclose(got, ref, atol=1e-4)


@needs_model
def test_engine_protocol_and_seeds() -> None:
    eng = make_motion_engine("network", NetworkConfig(model_path=MODEL), seed=0)
    assert eng.ready_until() == math.inf  # nothing pushed: idles
    x = _speechlike(2.0, rate=22050)
    eng.push_audio(AudioChunk(x, 22050, 0.0))
    r = eng.ready_until()
    assert 1.7 < r < 2.0  # the lookahead (2 frames + window) holds the last frames back
    frames = eng.frames(10.0)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert len(frames) == math.ceil(r * 25 - 1e-9)
    eng.end_of_input()
    assert eng.ready_until() == math.inf
    more = eng.frames(3.0)
    assert more[0].index == len(frames) and more[-1].index == 74
    a = np.stack([f.head for f in frames + more])
    other = make_motion_engine("network", NetworkConfig(model_path=MODEL), seed=1)
    other.push_audio(AudioChunk(x, 22050, 0.0))
    other.end_of_input()
    b = np.stack([f.head for f in other.frames(3.0)])
    assert np.abs(a - b).max() > 1e-3  # a different seed moves differently
    with pytest.raises(InputError):
        make_motion_engine("nope")


@needs_model
def test_mouth_follows_speech_and_rests_in_silence() -> None:
    from vlogger.engines.tts import PiperTTS

    chunks = list(PiperTTS().synthesize("Bob bought a big blue map of Moscow and Zurich.", start_pts=1.0))
    rate = chunks[0].sample_rate
    end = chunks[-1].end
    x = np.zeros(round((end + 1.0) * rate), np.float32)
    for c in chunks:
        s = round(c.pts * rate)
        x[s : s + c.num_samples] = c.pcm
    frames = _stream(NetworkMotionEngine(NetworkConfig(model_path=MODEL), seed=0), x, rate)
    jaw = np.array([f.expression[JAW] for f in frames])
    talk = slice(30, int(end * 25) - 5)
    speech, silence = jaw[talk].mean(), np.r_[jaw[3:20], jaw[int(end * 25) + 12 :]].mean()
    assert speech > silence + 0.05, (speech, silence)
    # the mouth moves with the syllables, not a constant opening
    assert jaw[talk].std() > 0.03
    assert np.mean([f.speaking for f in frames[talk]]) > 0.5 and not any(f.speaking for f in frames[3:20])


@needs_model
def test_clear_buffer_returns_to_idle() -> None:
    eng = NetworkMotionEngine(NetworkConfig(model_path=MODEL), seed=0)
    eng.push_audio(AudioChunk(_speechlike(4.0), 16000, 0.0))
    first = eng.frames(1.0)
    eng.clear_buffer()
    assert eng.ready_until() == math.inf
    rest = eng.frames(3.0)
    assert rest[0].index == first[-1].index + 1
    jaw = np.array([f.expression[JAW] for f in rest])
    assert jaw[-25:].mean() < 0.1
    assert not any(f.speaking for f in rest[5:])


# ---- bad input ------------------------------------------------------------------------------
def _bad_inputs() -> dict[str, tuple[np.ndarray, int]]:
    rng = np.random.default_rng(3)
    s = _speechlike(3.0)
    return {
        "silence": (np.zeros(48000, np.float32), 16000),
        "clipping": (np.clip(s * 40, -1, 1), 16000),
        "dc_offset": (s + 0.4, 16000),
        "telephone_8k": (resample_poly(s, 1, 2).astype(np.float32), 8000),
        "noise": (0.5 * rng.standard_normal(48000).astype(np.float32), 16000),
        "nan": (np.where(rng.random(48000) < 0.01, np.nan, s).astype(np.float32), 16000),
    }


@needs_model
@pytest.mark.parametrize("name", list(_bad_inputs()))
def test_bad_input_stays_calm_and_alive(name: str) -> None:
    pcm, rate = _bad_inputs()[name]
    frames = _stream(NetworkMotionEngine(NetworkConfig(model_path=MODEL), seed=0), pcm, rate)
    m = np.stack([_vec(f) for f in frames])
    assert len(frames) == 75 and np.isfinite(m).all()
    # not frozen: the head and the eyes keep moving
    assert np.ptp(m[:, 15:24], axis=0).max() > 1e-3
    assert np.ptp(m[:, 9]) > 0.3 or np.ptp(m[:, 13]) > 0.01
    # calm: expression in range, head within a few degrees of the photo's pose
    assert m[:, :13].min() >= 0 and m[:, :13].max() <= 1
    assert np.abs(m[:, 15:21] - [1, 0, 0, 0, 1, 0]).max() < 0.3


@needs_model
def test_long_audio_streams_in_constant_memory() -> None:
    eng = NetworkMotionEngine(NetworkConfig(model_path=MODEL, steps=1, guidance=1.0), seed=0)
    s = _speechlike(2.0)
    sizes = []
    for k in range(15):  # 30 s pushed in 2 s pieces, frames taken as they become ready
        eng.push_audio(AudioChunk(s, 16000, 2.0 * k))
        frames = eng.frames(math.inf)
        assert np.isfinite(_vec(frames[-1])).all()
        sizes.append((eng._fs._audio.size, eng._pk.shape, len(eng._loud)))
    assert len({sz[1] for sz in sizes}) == 1
    assert max(sz[0] for sz in sizes[3:]) <= sizes[2][0] + 16000 and max(sz[2] for sz in sizes) < 80
    assert eng._next_index > 700

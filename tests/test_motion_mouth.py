"""The learned mouth (read-out on Whisper features) inside the motion network engine, on generated
audio: closed in silence, moving with speech whatever its channel (telephone, shouting, whispering,
an unknown language), little with music, never NaN, streaming equal to offline."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest
from scipy.signal import butter, istft, resample_poly, sosfilt, stft

from vlogger.engines.errors import InputError
from vlogger.engines.metrics import mouth_opening
from vlogger.engines.motion.features import FeatureConfig, offline_features
from vlogger.engines.motion.mouth import MouthReadout, load_mouth_model
from vlogger.engines.motion.network import NetworkConfig, NetworkMotionEngine, load_motion_models
from vlogger.engines.types import AudioChunk, MotionFrame

RATE = 16000


@lru_cache(maxsize=1)
def _models() -> object:
    return load_motion_models(NetworkConfig())


@lru_cache(maxsize=1)
def _opening() -> object:
    """Mouth opening (13-14 / 33-263) of the default avatar posed with the engine's frames."""
    from vlogger.engines.avatar import load_avatar

    return load_avatar(None).rig


def _open(frames: list[MotionFrame]) -> np.ndarray:
    rig = _opening()
    return np.asarray([mouth_opening(rig.pose(f).face) for f in frames])  # type: ignore[attr-defined]


@lru_cache(maxsize=1)
def _speech() -> np.ndarray:
    """Two sentences of the packaged piper voice at 16 kHz, with 0.5 s of silence before and 2.5 s
    after (longer than the Whisper window, so the end is heard as silence alone)."""
    from vlogger.engines.tts import PiperTTS

    tts = PiperTTS()
    chunks = list(
        tts.synthesize(
            "Hello there. I think the weather will be lovely this afternoon, so let us walk by the river."
        )
    )
    pcm = np.concatenate([c.pcm for c in chunks]).astype(np.float32)
    x = resample_poly(pcm, RATE, chunks[0].sample_rate).astype(np.float32)
    return np.concatenate([np.zeros(RATE // 2, np.float32), x, np.zeros(5 * RATE // 2, np.float32)])


def _run(pcm: np.ndarray, rate: int = RATE, chunk_s: float = 0.2) -> list[MotionFrame]:
    eng = NetworkMotionEngine(NetworkConfig(), seed=0, models=_models())  # type: ignore[arg-type]
    step = round(chunk_s * rate)
    out: list[MotionFrame] = []
    for a in range(0, len(pcm), step):
        eng.push_audio(AudioChunk(pcm[a : a + step], rate, a / rate))
        out += eng.frames(math.inf)
    eng.end_of_input()
    out += eng.frames(len(pcm) / rate)
    return out


def _rest() -> float:
    return float(_open([MotionFrame.neutral()])[0])


def _speech_frames(pcm16: np.ndarray, n: int) -> np.ndarray:
    """Which of ``n`` frames have their 40 ms of audio above -40 dBFS."""
    x = np.zeros(n * 640)
    x[: min(len(pcm16), n * 640)] = pcm16[: n * 640]
    rms = np.sqrt(np.mean(x.reshape(n, 640) ** 2, axis=1) + 1e-12)
    return 20 * np.log10(rms) > -40


def test_the_packaged_readout_loads_and_reads_the_networks_features() -> None:
    model = load_mouth_model()
    meta_feats = _models().meta["feature_config"]  # type: ignore[attr-defined]
    assert model.lookahead_frames == meta_feats["lookahead_frames"]
    assert model.feature_mean.shape == (768,)
    with pytest.raises(InputError, match="does not exist"):
        load_mouth_model("/nonexistent/mouth.onnx")
    with pytest.raises(InputError, match="mouth"):
        NetworkConfig(mouth="lips")


def test_readout_stepping_equals_offline() -> None:
    x = _speech()[: 3 * RATE]
    feats = offline_features(x, 75, FeatureConfig(kind="whisper", lookahead_frames=2))
    ro = MouthReadout(load_mouth_model())
    stepped = np.stack([ro.step(f) for f in feats])
    np.testing.assert_allclose(stepped, MouthReadout(load_mouth_model()).offline(feats), atol=1e-5)
    assert np.all((stepped >= 0) & (stepped <= 1))


def test_silence_keeps_the_mouth_closed() -> None:
    """Digital silence: closed throughout. Steady noise (-60 and -40 dBFS): closed once the onset of
    the noise out of the stream's digital silence (it reads as a sound starting) has passed."""
    rest = _rest()
    o = _open(_run(np.zeros(3 * RATE, np.float32)))
    assert len(o) == 75 and np.all(np.isfinite(o))
    assert float(np.max(o - rest)) < 0.02, f"mouth open in digital silence: {np.max(o - rest):.3f} above rest"
    for db in (-60, -40):
        noise = np.random.default_rng(0).standard_normal(3 * RATE) * 10 ** (db / 20)
        o = _open(_run(noise.astype(np.float32)))
        assert float(np.max(o[8:] - rest)) < 0.02, (
            f"mouth open in {db} dBFS noise: {np.max(o[8:] - rest):.3f}"
        )


def test_speech_moves_the_mouth_and_pauses_close_it() -> None:
    x = _speech()
    o = _open(_run(x))
    sp = _speech_frames(x, len(o))
    rest = _rest()
    assert np.percentile(o[sp], 90) - rest > 0.08, "the mouth hardly opens on speech"
    assert np.std(o[sp]) > 0.03, "the mouth does not move with the syllables"
    # the silence before the sentences, and after them from 0.2 s on (the sound has stopped though
    # the features' 2 s window still holds speech): closed
    after = int(np.flatnonzero(sp).max()) + 5
    assert float(np.max(o[:8] - rest)) < 0.02 and float(np.max(o[after:] - rest)) < 0.02


def _telephone(x: np.ndarray) -> np.ndarray:
    sos = butter(4, [300, 3400], "bandpass", fs=RATE, output="sos")
    y = resample_poly(sosfilt(sos, x), 1, 2)
    mu = np.sign(y) * np.log1p(255 * np.minimum(np.abs(y), 1)) / np.log1p(255)  # mu-law round trip
    q = np.round(mu * 127) / 127
    return (np.sign(q) * np.expm1(np.abs(q) * np.log1p(255)) / 255).astype(np.float32)


def _whisper(x: np.ndarray) -> np.ndarray:
    """Whispered: the spectral envelope kept, the voicing (phase) randomised."""
    _, _, z = stft(x, RATE, nperseg=512)
    rng = np.random.default_rng(1)
    _, y = istft(np.abs(z) * np.exp(1j * rng.uniform(0, 2 * np.pi, z.shape)), RATE, nperseg=512)
    return (0.5 * y[: len(x)]).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "make", "rate"),
    [
        ("telephone 8 kHz mu-law", _telephone, 8000),
        ("shouting (x8, saturated)", lambda x: np.tanh(8 * x).astype(np.float32), RATE),
        ("whispering", _whisper, RATE),
    ],
)
def test_the_mouth_follows_speech_through_other_channels(name: str, make: object, rate: int) -> None:
    x = _speech()
    ref = _open(_run(x))
    o = _open(_run(make(x), rate))  # type: ignore[operator]
    n = min(len(ref), len(o))
    assert np.all(np.isfinite(o))
    r = float(np.corrcoef(ref[:n], o[:n])[0, 1])
    assert r > 0.7, f"{name}: mouth r {r:.2f} against the clean speech's"
    assert 0.5 < np.std(o[:n]) / np.std(ref[:n]) < 1.6, f"{name}: amplitude off"


def test_an_unknown_language_still_moves_the_mouth() -> None:
    """Time-reversed English: speech acoustics with no English word in it (a stand-in for a language
    the model never heard; no non-English voice ships)."""
    x = _speech()
    o = _open(_run(x[::-1].copy()))
    ref = _open(_run(x))
    sp = _speech_frames(x[::-1].copy(), len(o))
    assert np.std(o[sp]) > 0.5 * np.std(ref[_speech_frames(x, len(ref))])


def test_music_moves_the_mouth_less_than_speech() -> None:
    t = np.arange(4 * RATE) / RATE
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 440.0)) * 0.08
    notes = chord * np.exp(-((t * 2) % 1) * 3)  # plucked, two notes a second
    o = _open(_run(notes.astype(np.float32)))
    x = _speech()
    ref = _open(_run(x))
    assert np.std(o) < 0.6 * np.std(ref[_speech_frames(x, len(ref))])


def test_nan_and_inf_input_never_reach_the_mouth() -> None:
    x = _speech()[: 2 * RATE].copy()
    x[1000:3000] = np.nan
    x[5000] = np.inf
    frames = _run(x)
    e = np.stack([f.expression for f in frames])
    assert np.all(np.isfinite(e)) and np.all((e[:, :9] >= 0) & (e[:, :9] <= 1))


def test_speech_after_idle_is_heard_from_its_start() -> None:
    """An idle engine pushes silence ahead of the frames it makes (the features' lookahead); speech
    that then arrives for those times replaces that silence instead of losing its first 0.2 s (the
    mouth used to stay shut over the first syllable of every utterance after a pause)."""
    x = _speech()[RATE // 2 : RATE // 2 + 2 * RATE]

    def run(idle_first: bool) -> np.ndarray:
        e = NetworkMotionEngine(NetworkConfig(), seed=0, models=_models())  # type: ignore[arg-type]
        if idle_first:
            out = e.frames(1.0)  # idles up to 1 s
        else:
            e.push_audio(AudioChunk(np.zeros(RATE, np.float32), RATE, 0.0))
            out = e.frames(1.0)
        e.push_audio(AudioChunk(x, RATE, 1.0))
        e.end_of_input()
        out += e.frames(3.0)
        return np.stack([f.expression[:9] for f in out])

    idle, fed = run(True), run(False)
    assert idle.shape == fed.shape == (75, 9)
    # only the frames whose context was already shown (the last idle frame's feature) may differ
    np.testing.assert_allclose(idle[27:], fed[27:], atol=1e-4)
    assert idle[26:32, 0].max() > 0.1, "the first syllable after idling does not open the mouth"

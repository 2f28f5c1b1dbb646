"""Piper TTS: one chunk per sentence on a continuous clock, phoneme timings that tile the audio,
streaming, text validation, long sentences cut into bounded units, the memory a long unit leaves
behind, and the alignment-patched voice cache."""

from __future__ import annotations

import dataclasses
import itertools
import random
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from vlogger.engines.errors import InputError
from vlogger.engines.tts import PiperTTS, TTSConfig, split_sentences, split_units


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


def test_split_units() -> None:
    ordinary = "Hello there, my name is Joe, and I can speak in sentences of an ordinary length; " * 2
    assert len(ordinary.strip()) < 200 and split_units(ordinary, 250) == [ordinary.strip()]
    # clause marks first (the last one that fits), even with spaces nearer the limit
    text = "one two three, four five six; seven eight nine ten eleven"
    assert split_units(text, 40) == ["one two three, four five six;", "seven eight nine ten eleven"]
    assert split_units("alpha beta—gamma delta epsilon", 12) == ["alpha beta—", "gamma delta", "epsilon"]
    # a clause mark too near the start (under a quarter of the limit) loses to the last space
    assert split_units("Oh, the quick brown fox jumps over it", 24) == [
        "Oh, the quick brown fox",
        "jumps over it",
    ]
    # no clause mark: between words; numbers like 3,000 or 12:30 are not clause ends
    assert split_units("at 12:30 we sold 3,000 red apples", 16) == ["at 12:30 we sold", "3,000 red apples"]
    assert split_units("x" * 1000, 250) == ["x" * 250] * 4  # one endless word: cut by length
    assert split_units("ab cd", 1) == ["a", "b", "c", "d"]
    words = random.Random(1).choices(["a", "quick", "brown", "fox", "jumps", "over", "lazy", "dogs"], k=3000)
    long = " ".join(words)
    units = split_units(long, 250)
    assert " ".join(units) == long and all(200 < len(u) <= 250 for u in units[:-1])
    with pytest.raises(ValueError, match="at least 1"):
        split_units("text", 0)


_WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog"]


def _spy_on_piper(engine: PiperTTS, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Texts the engine's piper voice is asked to speak; each answered with 10 samples a character."""
    calls: list[str] = []

    def synthesize(text: str, **_: Any) -> Iterable[Any]:
        calls.append(text)
        audio = np.full(10 * len(text), 0.1, dtype=np.float32)
        return [SimpleNamespace(audio_float_array=audio, phoneme_alignments=None, phonemes=list(text))]

    monkeypatch.setattr(engine._voice, "synthesize", synthesize)
    return calls


def test_long_text_without_punctuation_reaches_piper_in_bounded_units(
    tts: PiperTTS, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = tts.share()  # its own PiperVoice over the same session, real phonemizer
    calls = _spy_on_piper(engine, monkeypatch)
    words = random.Random(0).choices(_WORDS, k=6000)
    text = " ".join(words)[:20_000].strip()
    chunks = list(engine.synthesize(text, start_pts=2.0))
    cfg = engine.config
    assert len(calls) >= len(text) / cfg.max_unit_chars and max(len(c) for c in calls) <= cfg.max_unit_chars
    assert " ".join(calls) == text  # cut between words, nothing lost or repeated
    assert all(len(p) <= cfg.max_unit_phonemes for c in calls[:5] for p in tts._voice.phonemize(c))
    assert [c.text for c in chunks] == calls  # one chunk per unit
    assert chunks[0].pts == 2.0 and chunks[0].sample_offset == round(2.0 * 22050)
    for prev, cur in itertools.pairwise(chunks):
        assert cur.sample_offset == prev.sample_offset + prev.num_samples
        assert cur.pts == pytest.approx(prev.end, abs=1e-9)
        assert cur.phonemes[0].start == pytest.approx(prev.phonemes[-1].end, abs=1e-9)
    assert sum(c.num_samples for c in chunks) == 10 * sum(len(c) for c in calls)


def test_endless_word_and_expanding_text_are_cut(tts: PiperTTS, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = tts.share()
    calls = _spy_on_piper(engine, monkeypatch)
    list(engine.synthesize("x" * 1000))
    assert calls == ["x" * 250] * 4
    calls.clear()
    text = "7 " * 150  # 300 characters, ~1,000 phonemes ("seven" each time)
    list(engine.synthesize(text))
    counts = [sum(len(p) for p in tts._voice.phonemize(c)) for c in calls]
    assert len(calls) >= 3 and max(counts) <= engine.config.max_unit_phonemes
    assert " ".join(calls) == text.strip() and min(counts) > engine.config.max_unit_phonemes / 4


def test_sentence_silence_follows_the_sentence_not_each_unit(
    tts: PiperTTS, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = tts.share()
    engine.config = dataclasses.replace(engine.config, sentence_silence=0.1, max_unit_chars=20)
    calls = _spy_on_piper(engine, monkeypatch)
    chunks = list(engine.synthesize("one two three four five six seven eight nine. Ten eleven."))
    assert calls == ["one two three four", "five six seven eight", "nine.", "Ten eleven."]
    pauses = [c.phonemes[-1].phoneme == "_" for c in chunks]
    assert pauses == [False, False, True, True]
    assert chunks[2].num_samples == 10 * len("nine.") + round(0.1 * 22050)


def test_units_of_a_long_sentence_tile_time(cache: Path) -> None:
    engine = PiperTTS(TTSConfig(max_unit_chars=60))
    sentence = (
        "When the evening came, we walked along the river for a long while; "
        "the water was calm and the sky slowly turned from orange to a deep blue."
    )
    chunks = list(engine.synthesize(sentence, start_pts=0.5))
    assert [c.text for c in chunks] == [  # clause marks first, then between words
        "When the evening came,",
        "we walked along the river for a long while;",
        "the water was calm and the sky slowly turned from orange to",
        "a deep blue.",
    ]
    assert chunks[0].pts == 0.5
    for prev, cur in itertools.pairwise(chunks):
        assert cur.pts == pytest.approx(prev.end, abs=1e-9)
        assert cur.sample_offset == prev.sample_offset + prev.num_samples
    for c in chunks:
        assert c.phonemes[0].phoneme == "^" and c.phonemes[-1].phoneme == "$"
        assert c.phonemes[0].start == pytest.approx(c.pts) and c.phonemes[-1].end == pytest.approx(c.end)
        assert 0.05 < float(np.sqrt(np.mean(c.pcm**2))) < 0.8  # real speech


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
def test_a_long_unit_gives_its_memory_back(cache: Path) -> None:
    engine = PiperTTS(TTSConfig(threads=1))
    list(engine.synthesize("Warm up the voice."))
    words = random.Random(2).choices(_WORDS, k=80)
    text = " ".join(words)[:250].strip()  # one unit of ~320 phonemes: ~300 MB while it runs
    before = _rss_mb()
    chunks = list(engine.synthesize(text))
    assert len(chunks) == 1 and chunks[0].duration > 8.0
    assert _rss_mb() - before < 120  # onnxruntime's arena kept ~300 MB here before it was shrunk


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

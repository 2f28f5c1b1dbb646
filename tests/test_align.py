"""ASR and forced alignment on piper speech: whisper hears the text, and pocketsphinx's phone
boundaries agree with piper's own phoneme timings (the ground truth of synthetic speech)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vlogger.engines.asr import WhisperASR
from vlogger.engines.asr.lexicon import letters_to_arpabet, normalize_words, number_to_words
from vlogger.engines.audio import load_audio, resample
from vlogger.engines.motion.align import ARPABET_PHONES, SILENCE, AlignConfig, Aligner, align_audio
from vlogger.engines.tts import PiperTTS
from vlogger.engines.types import PhonemeTiming

TEXT = (
    "The quick brown fox jumps over the lazy dog. "
    "Yesterday we visited the museum, and it was surprisingly quiet for a Saturday afternoon."
)
IPA_VOWELS = set("aeiouəɐɑɒɔɛɜɪʊʌæɚᵻɨɵ")
ARPA_VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def tts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PiperTTS]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLOGGER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield PiperTTS()


@pytest.fixture(scope="module")
def speech(tts: PiperTTS) -> tuple[np.ndarray, list[PhonemeTiming]]:
    chunks = list(tts.synthesize(TEXT))
    return np.concatenate([c.pcm for c in chunks]), [p for c in chunks for p in c.phonemes]


@pytest.fixture(scope="module")
def asr() -> WhisperASR:
    return WhisperASR()


@pytest.fixture(scope="module")
def aligner(asr: WhisperASR) -> Aligner:
    return Aligner(asr=asr)


def piper_vowel_onsets(phonemes: list[PhonemeTiming]) -> np.ndarray:
    """Start of each vowel nucleus; a stress mark's start is the onset of the vowel it marks."""
    onsets: list[float] = []
    stress: float | None = None
    prev_vowel = False
    for p in phonemes:
        if p.phoneme in "ˈˌ":
            stress = p.start
            continue
        if p.phoneme == "ː":
            continue
        vowel = p.phoneme in IPA_VOWELS
        if vowel and not prev_vowel:
            onsets.append(stress if stress is not None else p.start)
        prev_vowel, stress = vowel, None
    return np.array(onsets)


def onset_errors(piper: list[PhonemeTiming], arpa: list[PhonemeTiming]) -> np.ndarray:
    ours = np.array([p.start for p in arpa if p.phoneme in ARPA_VOWELS])
    return np.array([np.min(np.abs(ours - t)) for t in piper_vowel_onsets(piper)])


def word_error_rate(ref: str, hyp: str) -> float:
    r, h = normalize_words(ref), normalize_words(hyp)
    d = np.arange(len(h) + 1)
    for i in range(1, len(r) + 1):
        prev, d[0] = d.copy(), i
        for j in range(1, len(h) + 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r[i - 1] != h[j - 1]))
    return float(d[-1]) / len(r)


def test_whisper_hears_piper(speech: tuple[np.ndarray, list[PhonemeTiming]], asr: WhisperASR) -> None:
    pcm16 = resample(speech[0], 22050, 16000)
    assert word_error_rate(TEXT, asr.text(pcm16)) <= 0.15
    words = asr.transcribe(pcm16)
    starts = [w.start for w in words]
    assert starts == sorted(starts) and words[-1].end <= len(pcm16) / 16000 + 0.1
    assert re.sub(r"\W", "", words[0].text).lower() == "the"
    assert asr.transcribe(np.zeros(16000, np.float32)) == [] and asr.text(np.zeros(8000, np.float32)) == ""


@pytest.mark.parametrize("given_text", [False, True])
def test_aligned_phones_agree_with_piper_timings(
    speech: tuple[np.ndarray, list[PhonemeTiming]], aligner: Aligner, given_text: bool
) -> None:
    pcm, truth = speech
    result = aligner.align(pcm, 22050, TEXT if given_text else None)
    assert result.method == "pocketsphinx" and result.aligned
    assert result.transcript_source == ("text" if given_text else "whisper")
    ph = result.phonemes
    assert all(p.alphabet == "arpabet" and p.phoneme in (*ARPABET_PHONES, SILENCE) for p in ph)
    duration = len(pcm) / 22050
    assert ph[0].start == 0.0 and ph[-1].end == pytest.approx(duration, abs=0.01)  # tiles the audio
    for a, b in itertools.pairwise(ph):
        assert b.start == pytest.approx(a.end, abs=1e-6) and b.end > b.start
    err = onset_errors(truth, ph)
    assert len(err) >= 25
    assert np.median(err) < 0.04 and np.percentile(err, 90) < 0.08
    # speech/silence agree: piper's pauses (",", ".", sentence gap) are SIL or quiet phones here
    words = [w.text for w in result.words]
    assert words[:4] == ["the", "quick", "brown", "fox"] and "saturday" in words


def test_long_audio_with_text_is_aligned_piecewise(
    speech: tuple[np.ndarray, list[PhonemeTiming]], asr: WhisperASR
) -> None:
    pcm, truth = speech
    piecewise = Aligner(AlignConfig(max_segment_seconds=2.0), asr=asr)  # force the segment path
    result = piecewise.align(pcm, 22050, TEXT)
    assert result.aligned and result.transcript_source == "text"
    assert np.median(onset_errors(truth, result.phonemes)) < 0.05


def test_unknown_words_are_spelled(tts: PiperTTS, aligner: Aligner) -> None:
    text = "My friend Blorvax likes pizza."
    pcm = np.concatenate([c.pcm for c in tts.synthesize(text)])
    result = aligner.align(pcm, tts.sample_rate, text)
    assert result.transcript_source == "text"
    assert [w.text for w in result.words] == ["my", "friend", "blorvax", "likes", "pizza"]


def test_nothing_to_align_returns_empty(aligner: Aligner, asr: WhisperASR) -> None:
    silence = np.zeros(3 * 16000, np.float32)
    result = aligner.align(silence, 16000)
    assert result.phonemes == [] and result.method == "none" and not result.aligned
    assert align_audio(silence, 16000, asr=asr) == []
    assert aligner.align(silence, 16000, "").method == "none"


def test_lexicon_helpers() -> None:
    assert number_to_words(1234) == "one thousand two hundred thirty four".split()
    assert normalize_words("It's 10% & $5.") == ["it's", "ten", "percent", "and", "five", "dollars"]
    assert letters_to_arpabet("knight") == "N AY T"
    assert letters_to_arpabet("vlog") == "V L AA G"
    assert letters_to_arpabet("123") == ""


def test_real_speech_aligns(aligner: Aligner) -> None:
    path = SHARED / "audio" / "speech_f_5s.wav"
    if not path.exists():
        pytest.skip("../shared/data is absent (real speech clips for development)")
    pcm, rate = load_audio(path, 16000)
    result = aligner.align(pcm, rate)
    speechy = [p for p in result.phonemes if p.phoneme != SILENCE]
    assert result.aligned and len(result.words) >= 8
    assert 0.5 < sum(p.end - p.start for p in speechy) / (len(pcm) / rate) <= 1.0

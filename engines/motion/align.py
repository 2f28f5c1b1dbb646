"""Phoneme timings from audio alone: whisper for the words (when no text is given), then
pocketsphinx forced alignment of those words at phone level (ARPAbet, 10 ms steps).

Long audio is aligned a phrase at a time (whisper segments), so the cost grows linearly.
When nothing can be aligned (silence, music, noise) the result is empty and ``method == "none"``:
the caller then drives the mouth from energy instead.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlogger.engines.asr.base import ASR, ASR_SAMPLE_RATE, Word
from vlogger.engines.asr.lexicon import letters_to_arpabet, normalize_words
from vlogger.engines.asr.whisper import WhisperASR
from vlogger.engines.audio import resample
from vlogger.engines.types import PhonemeTiming

__all__ = ["ARPABET_PHONES", "SILENCE", "AlignConfig", "AlignResult", "Aligner", "align_audio"]

_LOGGER = logging.getLogger(__name__)

#: Silence symbol in the output (pocketsphinx's ``SIL``; noise phones are reported as it too).
SILENCE = "SIL"

#: The 39 phones of the pocketsphinx en-us model (ARPAbet without stress digits).
ARPABET_PHONES: tuple[str, ...] = tuple(
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W "
    "Y Z ZH".split()
)
_FRAME = 0.01  # pocketsphinx frame step in seconds


@dataclass(frozen=True)
class AlignConfig:
    """Settings of the forced aligner."""

    acoustic_model: str | Path | None = None
    """pocketsphinx acoustic model folder; ``None`` = its packaged en-us model."""
    dictionary: str | Path | None = None
    """Pronunciation dictionary; ``None`` = the packaged CMU dictionary (134k words)."""
    letter_to_sound: bool = True
    """Spell words missing from the dictionary with simple rules (else drop them)."""
    segment_pad: float = 0.4
    """Seconds of audio added around each whisper segment (bounded by the neighbours)."""
    max_segment_seconds: float = 30.0
    """Given text and audio longer than this: cut at whisper segments to align piecewise."""
    fill_silence: bool = True
    """Cover gaps (and the audio's head and tail) with ``SIL`` so timings tile the audio."""


@dataclass
class AlignResult:
    """Phone timings and how they were made."""

    phonemes: list[PhonemeTiming]
    """ARPAbet phones (alphabet ``"arpabet"``) and ``SIL``, sorted, absolute seconds."""
    method: str
    """``"pocketsphinx"`` when any speech was aligned, ``"none"`` when nothing was."""
    transcript: str = ""
    """The words that were aligned (normalised, space separated)."""
    transcript_source: str = ""
    """``"text"`` (given), ``"whisper"`` (recognised) or ``""`` (nothing)."""
    words: list[Word] = field(default_factory=list)
    """Aligned words with pocketsphinx's times."""

    @property
    def aligned(self) -> bool:
        return self.method != "none"


@dataclass
class _Piece:
    start: float  # seconds in the 16 kHz signal
    end: float
    words: list[str]


class Aligner:
    """Holds the pocketsphinx decoder (and a whisper recogniser, made on demand)."""

    def __init__(self, config: AlignConfig | None = None, asr: ASR | None = None) -> None:
        self.config = config or AlignConfig()
        self._asr = asr
        self._decoder: Any = None

    @property
    def asr(self) -> ASR:
        """The recogniser of audio without text (``asr=``; else a default whisper, made on first use)."""
        if self._asr is None:
            self._asr = WhisperASR()
        return self._asr

    def _load(self) -> Any:
        if self._decoder is None:
            from pocketsphinx import Config, Decoder, get_model_path

            cfg = self.config
            hmm = str(cfg.acoustic_model or get_model_path("en-us/en-us"))
            dic = str(cfg.dictionary or get_model_path("en-us/cmudict-en-us.dict"))
            conf = Config(
                hmm=hmm, dict=dic, samprate=ASR_SAMPLE_RATE, lm=None, loglevel="FATAL", bestpath=False
            )
            self._decoder = Decoder(conf)
        return self._decoder

    def _known(self, words: list[str]) -> list[str]:
        """Words the decoder can say (missing ones spelled by rule, or dropped)."""
        dec = self._load()
        out: list[str] = []
        for w in words:
            if dec.lookup_word(w) is not None:
                out.append(w)
                continue
            base = w[:-2] if w.endswith("'s") else w
            phones = dec.lookup_word(base)
            if phones is not None and base != w:
                dec.add_word(w, phones + " Z", True)
                out.append(w)
            elif self.config.letter_to_sound and (spelled := letters_to_arpabet(w)):
                dec.add_word(w, spelled, True)
                out.append(w)
        return out

    def _align_piece(self, pcm16: np.ndarray, piece: _Piece) -> tuple[list[PhonemeTiming], list[Word]]:
        words = self._known(piece.words)
        a = max(0, round(piece.start * ASR_SAMPLE_RATE))
        b = min(pcm16.shape[0], round(piece.end * ASR_SAMPLE_RATE))
        if not words or b - a < ASR_SAMPLE_RATE // 10:
            return [], []
        data = (np.clip(pcm16[a:b], -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        dec = self._load()
        try:
            dec.set_align_text(" ".join(words))
            dec.start_utt()
            dec.process_raw(data, full_utt=True)
            dec.end_utt()
            if dec.hyp() is None:
                return [], []
            spans = [(s.word, s.start_frame, s.end_frame + 1) for s in dec.seg()]
        except RuntimeError as exc:
            _LOGGER.debug("word alignment failed for %r: %s", " ".join(words), exc)
            return [], []
        t0 = a / ASR_SAMPLE_RATE
        try:
            dec.set_alignment()
            dec.start_utt()
            dec.process_raw(data, full_utt=True)
            dec.end_utt()
            alignment = dec.get_alignment()
        except RuntimeError as exc:
            _LOGGER.debug("phone alignment failed for %r (%s): phones spread over words", words, exc)
            alignment = None
        if alignment is None:
            return self._spread(spans, t0)
        phones: list[PhonemeTiming] = []
        out_words: list[Word] = []
        for word in alignment:
            ws, wd = t0 + word.start * _FRAME, word.duration * _FRAME
            name = word.name
            if not (name.startswith("<") or name.startswith("[")):
                out_words.append(Word(name.split("(")[0], ws, ws + wd))
            for phone in word:
                p = phone.name if phone.name in ARPABET_PHONES else SILENCE
                s = t0 + phone.start * _FRAME
                phones.append(PhonemeTiming(p, s, s + phone.duration * _FRAME, "arpabet"))
        return phones, out_words

    def _spread(self, spans: list[tuple[str, int, int]], t0: float) -> tuple[list[PhonemeTiming], list[Word]]:
        """Phones spread evenly over each word's span (when phone-level alignment fails)."""
        dec = self._load()
        phones: list[PhonemeTiming] = []
        out_words: list[Word] = []
        for name, f0, f1 in spans:
            ws, we = t0 + f0 * _FRAME, t0 + f1 * _FRAME
            if we <= ws:
                continue
            pron = None if name.startswith(("<", "[")) else dec.lookup_word(name)
            if not pron:
                phones.append(PhonemeTiming(SILENCE, ws, we, "arpabet"))
                continue
            out_words.append(Word(name.split("(")[0], ws, we))
            seq = [p if p in ARPABET_PHONES else SILENCE for p in pron.split()]
            edges = np.linspace(ws, we, len(seq) + 1)
            phones += [
                PhonemeTiming(p, float(edges[i]), float(edges[i + 1]), "arpabet") for i, p in enumerate(seq)
            ]
        return phones, out_words

    def align(self, pcm: np.ndarray, rate: int, text: str | None = None) -> AlignResult:
        """Phone timings of ``pcm`` (mono, any rate); with ``text``, of those words (falling back
        to what whisper hears when they do not fit the audio), else of what whisper hears.
        Times are seconds from the start of ``pcm``."""
        x = np.asarray(pcm, dtype=np.float32).reshape(-1)
        pcm16 = resample(x, int(rate), ASR_SAMPLE_RATE) if rate != ASR_SAMPLE_RATE else x
        duration = pcm16.shape[0] / ASR_SAMPLE_RATE
        if pcm16.shape[0] < ASR_SAMPLE_RATE // 10 or float(np.max(np.abs(pcm16))) < 1e-4:
            return AlignResult([], "none")
        pieces, source = self._plan(pcm16, duration, text)
        phones: list[PhonemeTiming] = []
        words: list[Word] = []
        for piece in pieces:
            p, w = self._align_piece(pcm16, piece)
            phones += p
            words += w
        if not any(p.phoneme != SILENCE for p in phones):
            if text is not None:  # the text may not be what was said: align what whisper hears
                _LOGGER.info("given text did not align; aligning whisper's transcript instead")
                return self.align(pcm16, ASR_SAMPLE_RATE, None)
            return AlignResult([], "none", transcript_source=source)
        phones = _tidy(phones, duration, self.config.fill_silence)
        transcript = " ".join(w.text for w in words)
        return AlignResult(phones, "pocketsphinx", transcript, source, words)

    def _plan(self, pcm16: np.ndarray, duration: float, text: str | None) -> tuple[list[_Piece], str]:
        """Cut the audio into pieces with their words."""
        if text is not None:
            words = normalize_words(text)
            if not words:
                return [], "text"
            if duration <= self.config.max_segment_seconds:
                return [_Piece(0.0, duration, words)], "text"
        segments = self.asr.segments(pcm16)
        if not segments:
            return [], "text" if text is not None else ""
        bounds = _segment_bounds([(s.start, s.end) for s in segments], duration, self.config.segment_pad)
        seg_words = [normalize_words(" ".join(w.text for w in s.words) or s.text) for s in segments]
        if text is None:
            return [_Piece(a, b, w) for (a, b), w in zip(bounds, seg_words, strict=True)], "whisper"
        # Long audio with given text: share the text's words among whisper's segments.
        text_words = normalize_words(text)
        heard = [w for ws in seg_words for w in ws]
        to_text = _map_indices(heard, text_words)
        pieces: list[_Piece] = []
        first = 0
        for k, (a, b) in enumerate(bounds):
            first_heard = sum(len(ws) for ws in seg_words[: k + 1])
            last = len(text_words) if k == len(bounds) - 1 else to_text[first_heard]
            pieces.append(_Piece(a, b, text_words[first:last]))
            first = max(first, last)
        return pieces, "text"


def _segment_bounds(
    spans: list[tuple[float, float]], duration: float, pad: float
) -> list[tuple[float, float]]:
    """Padded segment spans that do not overlap (cut at the midpoint of the gap)."""
    out: list[tuple[float, float]] = []
    for i, (s, e) in enumerate(spans):
        lo = max(0.0, s - pad)
        hi = min(duration, e + pad)
        if i > 0:
            lo = max(lo, (spans[i - 1][1] + s) / 2)
        if i + 1 < len(spans):
            hi = min(hi, (e + spans[i + 1][0]) / 2)
        out.append((lo, max(lo, hi)))
    return out


def _map_indices(src: list[str], dst: list[str]) -> list[int]:
    """For each position in ``src`` (and its end) the matching position in ``dst`` (monotone)."""
    pos = [0] * (len(src) + 1)
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=src, b=dst, autojunk=False).get_opcodes():
        for i in range(i1, i2):
            pos[i] = j1 + (i - i1) * (j2 - j1) // max(1, i2 - i1) if tag != "delete" else j1
    pos[len(src)] = len(dst)
    for i in range(1, len(pos)):
        pos[i] = max(pos[i], pos[i - 1])
    return pos


def _tidy(phones: list[PhonemeTiming], duration: float, fill: bool) -> list[PhonemeTiming]:
    """Sort, clip to the audio, drop empty phones, merge adjacent silences, fill gaps with SIL."""
    phones = sorted(phones, key=lambda p: p.start)
    out: list[PhonemeTiming] = []
    t = 0.0
    for p in phones:
        s, e = max(p.start, t), min(p.end, duration)
        if e <= s + 1e-9:
            continue
        if fill and s > t + 1e-9:
            out.append(PhonemeTiming(SILENCE, t, s, "arpabet"))
        out.append(PhonemeTiming(p.phoneme, s, e, "arpabet"))
        t = e
    if fill and duration > t + 1e-9:
        out.append(PhonemeTiming(SILENCE, t, duration, "arpabet"))
    merged: list[PhonemeTiming] = []
    for p in out:
        if (
            merged
            and p.phoneme == SILENCE
            and merged[-1].phoneme == SILENCE
            and abs(merged[-1].end - p.start) < 1e-9
        ):
            merged[-1] = PhonemeTiming(SILENCE, merged[-1].start, p.end, "arpabet")
        else:
            merged.append(p)
    return merged


def align_audio(
    pcm: np.ndarray,
    rate: int,
    text: str | None = None,
    config: AlignConfig | None = None,
    asr: ASR | None = None,
) -> list[PhonemeTiming]:
    """ARPAbet phone timings of ``pcm`` ([] when nothing could be aligned); see :class:`Aligner`.

    Builds a decoder per call (about 0.1 s); keep an :class:`Aligner` to reuse it.
    """
    return Aligner(config, asr).align(pcm, rate, text).phonemes

"""espeak-ng through its C API (ctypes): speech + phoneme events with sample positions.

``libespeak-ng.so.1`` is opened with ``AUDIO_OUTPUT_SYNCHRONOUS``; a synth callback collects the
16-bit samples and the ``espeakEVENT_PHONEME`` events (type 7). Phoneme events carry espeak's own
ASCII mnemonics (``a#``, ``@``, ``I``, ``tS``, ...); :func:`mnemonic_to_ipa` maps them to IPA that
:mod:`vlogger.engines.motion.visemes` understands. Each event's ``audio_position`` (ms) gives the
phone's start; a phone ends where the next one starts. The library holds process-wide state, so
one :class:`Espeak` per process (the builder's workers are processes) and no threads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass

import numpy as np

from vlogger.engines.types import AudioChunk, PhonemeTiming

__all__ = [
    "ENGLISH_VOICES",
    "Espeak",
    "EspeakUnavailable",
    "EspeakUtterance",
    "espeak_available",
    "mnemonic_to_ipa",
]

#: English voices of espeak-ng (language ids) used by the corpus builder; variants (``+f2`` ...)
#: change the formants and pitch of each.
ENGLISH_VOICES: tuple[str, ...] = (
    "en-us",
    "en",
    "en-us-nyc",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
)
VARIANTS: tuple[str, ...] = ("", "+f1", "+f2", "+f3", "+f4", "+m1", "+m3", "+m7")

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_POS_CHARACTER = 1


class _EventId(ctypes.Union):
    _fields_ = (("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8))


class _Event(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    )


class _Voice(ctypes.Structure):
    _fields_ = (
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    )


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class EspeakUnavailable(RuntimeError):
    """libespeak-ng could not be loaded or initialised."""


def _find_library() -> str | None:
    for name in ("libespeak-ng.so.1", "libespeak-ng.so"):
        try:
            ctypes.CDLL(name)
            return name
        except OSError:
            continue
    return ctypes.util.find_library("espeak-ng")


def espeak_available() -> bool:
    """Whether libespeak-ng can be loaded here."""
    return _find_library() is not None


# espeak-ng's English phoneme mnemonics (phsource/ph_english*) -> IPA. Longest match first.
_MNEMONICS: dict[str, str] = {
    # vowels and diphthongs
    "a#": "ɐ",
    "a": "æ",
    "aa": "ɑː",
    "A:": "ɑː",
    "A@": "ɑːɹ",
    "A": "ɑ",
    "aI": "aɪ",
    "aI@": "aɪə",
    "aI3": "aɪɚ",
    "aU": "aʊ",
    "aU@": "aʊə",
    "@": "ə",
    "@2": "ə",
    "@5": "ə",
    "@L": "əl",
    "@U": "oʊ",
    "3": "ɚ",
    "3:": "ɜː",
    "E": "ɛ",
    "E2": "ɛ",
    "E3": "ɛ",
    "e@": "ɛə",
    "eI": "eɪ",
    "I": "ɪ",
    "I2": "ɪ",
    "I#": "ᵻ",
    "i": "i",
    "i:": "iː",
    "i@": "ɪə",
    "i@3": "ɪɚ",
    "0": "ɒ",
    "O": "ɔ",
    "O:": "ɔː",
    "O@": "ɔːɹ",
    "o@": "oːɹ",
    "OI": "ɔɪ",
    "oU": "oʊ",
    "o": "o",
    "U": "ʊ",
    "U@": "ʊə",
    "u": "u",
    "u:": "uː",
    "V": "ʌ",
    "IR": "ɪɹ",
    "VR": "ʌɹ",
    "a2": "ɐ",
    "aU#": "aʊ",
    # consonants
    "p": "p",
    "b": "b",
    "t": "t",
    "d": "d",
    "k": "k",
    "g": "ɡ",
    "f": "f",
    "v": "v",
    "T": "θ",
    "D": "ð",
    "s": "s",
    "z": "z",
    "S": "ʃ",
    "Z": "ʒ",
    "h": "h",
    "m": "m",
    "n": "n",
    "N": "ŋ",
    "l": "l",
    "r": "ɹ",
    "r-": "ɹ",
    "w": "w",
    "j": "j",
    "tS": "tʃ",
    "dZ": "dʒ",
    "t#": "ɾ",
    "t2": "t",
    "d#": "d",
    "x": "x",
    "?": "ʔ",
    "W": "ʍ",
    "n-": "n",
    "m-": "m",
    "l/": "l",
    "l/2": "l",
    "L": "l",
    "z/2": "z",
    "r/": "ɹ",
    "*": "ɾ",
    "C": "ç",
    "j/": "j",
    # pauses
    "_": "_",
    "_:": "_",
    "_!": "_",
    "_^_": "_",
    "||": "_",
    "|": "",
}
_STRESS = {"'": "ˈ", ",": "ˌ", "%": "", "=": ""}


def mnemonic_to_ipa(mnemonic: str) -> str:
    """IPA for one espeak-ng phoneme mnemonic (``"a#"`` -> ``"ɐ"``, ``"tS"`` -> ``"tʃ"``,
    ``"'aI"`` -> ``"ˈaɪ"``). Unknown mnemonics map letter by letter where the letter is itself IPA;
    otherwise to the empty string (the teacher ignores them)."""
    m = mnemonic.strip()
    prefix = ""
    while m and m[0] in _STRESS:
        prefix += _STRESS[m[0]]
        m = m[1:]
    if not m:
        return prefix
    if m in _MNEMONICS:
        return prefix + _MNEMONICS[m]
    # strip trailing digits/marks espeak uses for allophones (e.g. "l/3", "@2")
    core = m.rstrip("0123456789/#-")
    if core in _MNEMONICS:
        return prefix + _MNEMONICS[core]
    out = "".join(ch for ch in core if ch.isalpha() and ch.islower())
    return prefix + out


@dataclass
class EspeakUtterance:
    """What espeak said: samples and phoneme timings (seconds from the first sample)."""

    pcm: np.ndarray
    """Mono float32 in [-1, 1]."""
    sample_rate: int
    """espeak-ng's rate (22,050 Hz)."""
    phonemes: list[PhonemeTiming]
    """IPA timings, in order, tiling [first phone start, end of audio]."""
    mnemonics: list[tuple[str, int]]
    """The raw (mnemonic, sample position) events."""
    voice: str
    """The voice name used."""

    def chunk(self, pts: float = 0.0) -> AudioChunk:
        ph = [PhonemeTiming(p.phoneme, p.start + pts, p.end + pts, p.alphabet) for p in self.phonemes]
        return AudioChunk(pcm=self.pcm, sample_rate=self.sample_rate, pts=pts, phonemes=ph)


class Espeak:
    """One espeak-ng engine (per process): ``synthesize(text, voice, rate, pitch, pitch_range)``.

    Raises :class:`EspeakUnavailable` when the library is missing or fails to initialise.
    """

    def __init__(self, data_path: str | None = None) -> None:
        name = _find_library()
        if name is None:
            raise EspeakUnavailable("libespeak-ng.so.1 not found (apt-get install libespeak-ng1)")
        lib = ctypes.CDLL(name)
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
        lib.espeak_SetSynthCallback.argtypes = (_CALLBACK,)
        lib.espeak_SetVoiceByName.argtypes = (ctypes.c_char_p,)
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)
        lib.espeak_Synth.argtypes = (
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_void_p,
        )
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_ListVoices.argtypes = (ctypes.c_void_p,)
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode() if data_path else None, _INIT_PHONEME_EVENTS
        )
        if rate <= 0:
            raise EspeakUnavailable(f"espeak_Initialize failed ({rate})")
        self.sample_rate = int(rate)
        self._lib = lib
        self._samples: list[np.ndarray] = []
        self._events: list[tuple[str, int]] = []
        self._cb = _CALLBACK(self._callback)  # keep a reference: espeak calls it later
        lib.espeak_SetSynthCallback(self._cb)

    def _callback(self, wav: ctypes._Pointer, n: int, events: ctypes._Pointer) -> int:
        if n > 0 and wav:
            self._samples.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                raw = bytes(ev.id.string).split(b"\0", 1)[0].decode("ascii", "replace")
                self._events.append((raw, round(ev.audio_position * self.sample_rate / 1000.0)))
            i += 1
        return 0

    def list_voices(self, language: str = "en") -> list[tuple[str, str]]:
        """(name, identifier) of the voices whose languages start with ``language``."""
        arr = self._lib.espeak_ListVoices(None)
        out = []
        i = 0
        while arr[i]:
            v = arr[i].contents
            langs = ctypes.string_at(v.languages, 64)
            # languages: (priority byte, name, NUL)* then a 0 byte
            found = []
            k = 0
            while k < len(langs) and langs[k] != 0:
                end = langs.find(b"\0", k + 1)
                found.append(langs[k + 1 : end].decode("ascii", "replace"))
                k = end + 1
            if any(lang.startswith(language) for lang in found):
                out.append(((v.name or b"").decode(), (v.identifier or b"").decode()))
            i += 1
        return out

    def synthesize(
        self, text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50, pitch_range: int = 50
    ) -> EspeakUtterance:
        """Speak ``text``; ``rate`` in words per minute (80-450), ``pitch`` and ``pitch_range`` 0-100."""
        lib = self._lib
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        lib.espeak_SetParameter(_RATE, int(rate), 0)
        lib.espeak_SetParameter(_PITCH, int(pitch), 0)
        lib.espeak_SetParameter(_RANGE, int(pitch_range), 0)
        self._samples, self._events = [], []
        data = text.encode("utf-8") + b"\0"
        buf = ctypes.create_string_buffer(data)
        err = lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed ({err})")
        pcm = (
            np.concatenate(self._samples).astype(np.float32) / 32768.0
            if self._samples
            else np.zeros(0, np.float32)
        )
        n = pcm.shape[0]
        events = [(m, min(max(p, 0), n)) for m, p in self._events]
        events.sort(key=lambda e: e[1])
        rate_hz = float(self.sample_rate)
        phonemes: list[PhonemeTiming] = []
        for k, (m, pos) in enumerate(events):
            end = events[k + 1][1] if k + 1 < len(events) else n
            ipa = mnemonic_to_ipa(m)
            if not ipa:
                continue
            phonemes.append(PhonemeTiming(ipa, pos / rate_hz, max(end, pos) / rate_hz, "ipa"))
        return EspeakUtterance(
            pcm=pcm, sample_rate=self.sample_rate, phonemes=phonemes, mnemonics=events, voice=voice
        )

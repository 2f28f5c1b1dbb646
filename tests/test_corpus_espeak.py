"""espeak-ng through its C API: phoneme events in order, inside the audio, mapped to visemes."""

from __future__ import annotations

import numpy as np
import pytest

from training.motion.espeak import espeak_available, mnemonic_to_ipa
from vlogger.engines.motion.visemes import ipa_visemes

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="libespeak-ng.so.1 is not installed")


def test_mnemonics_map_to_ipa_the_teacher_knows():
    assert mnemonic_to_ipa("a#") == "ɐ"
    assert mnemonic_to_ipa("tS") == "tʃ"
    assert mnemonic_to_ipa("'aI") == "ˈaɪ"
    assert ipa_visemes(mnemonic_to_ipa("@")) == ["AH"]
    assert ipa_visemes(mnemonic_to_ipa("m")) == ["PP"]
    assert ipa_visemes(mnemonic_to_ipa("u:")) == ["UU"]
    assert ipa_visemes(mnemonic_to_ipa("S")) == ["CH"]
    assert ipa_visemes(mnemonic_to_ipa("f")) == ["FF"]


@needs_espeak
def test_phoneme_events_are_ordered_and_inside_the_audio():
    from training.motion.espeak import Espeak

    eng = Espeak()
    assert any(v.startswith("English") for v, _ in eng.list_voices("en"))
    for voice, rate in (("en-us", 175), ("en-gb-x-rp+f2", 130)):
        u = eng.synthesize("Bob moved the blue boat. Why?", voice, rate=rate)
        dur = u.pcm.size / u.sample_rate
        assert 0.8 < dur < 5.0 and np.abs(u.pcm).max() > 0.05
        starts = [p.start for p in u.phonemes]
        assert starts == sorted(starts)
        assert all(0.0 <= p.start <= p.end <= dur + 1e-6 for p in u.phonemes)
        vis = [v for p in u.phonemes for v in ipa_visemes(p.phoneme)]
        assert vis.count("PP") >= 3  # b, m, b
        assert "UU" in vis and "WW" in vis
        # phones cover the speech: the audio around the first bilabial is quiet (lips closed)
        first_b = next(p for p in u.phonemes if ipa_visemes(p.phoneme) == ["PP"])
        assert first_b.start < 0.3


@needs_espeak
def test_slower_rate_gives_longer_audio():
    from training.motion.espeak import Espeak

    eng = Espeak()
    fast = eng.synthesize("Please measure the thick book.", "en-us", rate=220)
    slow = eng.synthesize("Please measure the thick book.", "en-us", rate=120)
    assert slow.pcm.size > 1.4 * fast.pcm.size

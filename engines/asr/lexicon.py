"""Text normalisation for forced alignment and a small English letter-to-sound fallback.

Only what alignment needs: lower-case words the CMU dictionary knows (numbers spelled out,
punctuation dropped) and a rough ARPAbet spelling for words it does not know. The spelling need
not be right, only plausible enough that the aligner places the word's sounds in time.
"""

from __future__ import annotations

import re

__all__ = ["letters_to_arpabet", "normalize_words", "number_to_words"]

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))

_TOKEN = re.compile(r"\$?\d+(?:[.,]\d+)*%?|[^\W\d_]+(?:'[^\W\d_]+)*", re.UNICODE)


def number_to_words(n: int) -> list[str]:
    """Spell a non-negative integer in English words (``123`` -> one hundred twenty three)."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    for value, name in _SCALES:
        if n >= value:
            rest = n % value
            return number_to_words(n // value) + [name] + (number_to_words(rest) if rest else [])
    raise AssertionError("unreachable")  # pragma: no cover


def _spell_number(token: str) -> list[str]:
    dollars = token.startswith("$")
    percent = token.endswith("%")
    core = token.strip("$%").replace(",", "")
    words: list[str] = []
    whole, _, frac = core.partition(".")
    if whole and len(whole) <= 15:
        words += number_to_words(int(whole))
    if frac:
        words += ["point", *[_ONES[int(d)] for d in frac if d.isdigit()]]
    if dollars:
        words.append("dollars")
    if percent:
        words.append("percent")
    return words


def normalize_words(text: str) -> list[str]:
    """Lower-case alignment words: numbers spelled out, ``&`` as "and", punctuation dropped."""
    text = text.replace("&", " and ").replace("’", "'").replace("‘", "'")
    out: list[str] = []
    for token in _TOKEN.findall(text):
        if token[0].isdigit() or token[0] == "$":
            out += _spell_number(token)
        else:
            out.append(token.lower())
    return out


# Letter clusters, longest first, with their ARPAbet sounds (a rough English spelling).
_RULES: tuple[tuple[str, str], ...] = (
    ("tion", "SH AH N"),
    ("sion", "ZH AH N"),
    ("ough", "AO"),
    ("igh", "AY"),
    ("tch", "CH"),
    ("dge", "JH"),
    ("sch", "S K"),
    ("ch", "CH"),
    ("sh", "SH"),
    ("th", "TH"),
    ("ph", "F"),
    ("wh", "W"),
    ("ck", "K"),
    ("ng", "NG"),
    ("qu", "K W"),
    ("kn", "N"),
    ("wr", "R"),
    ("ee", "IY"),
    ("ea", "IY"),
    ("oo", "UW"),
    ("ai", "EY"),
    ("ay", "EY"),
    ("ei", "EY"),
    ("ey", "EY"),
    ("oa", "OW"),
    ("ow", "OW"),
    ("ou", "AW"),
    ("oi", "OY"),
    ("oy", "OY"),
    ("au", "AO"),
    ("aw", "AO"),
    ("ie", "IY"),
    ("ue", "UW"),
    ("ew", "UW"),
    ("ar", "AA R"),
    ("or", "AO R"),
    ("er", "ER"),
    ("ir", "ER"),
    ("ur", "ER"),
    ("a", "AE"),
    ("b", "B"),
    ("c", "K"),
    ("d", "D"),
    ("e", "EH"),
    ("f", "F"),
    ("g", "G"),
    ("h", "HH"),
    ("i", "IH"),
    ("j", "JH"),
    ("k", "K"),
    ("l", "L"),
    ("m", "M"),
    ("n", "N"),
    ("o", "AA"),
    ("p", "P"),
    ("q", "K"),
    ("r", "R"),
    ("s", "S"),
    ("t", "T"),
    ("u", "AH"),
    ("v", "V"),
    ("w", "W"),
    ("x", "K S"),
    ("y", "IY"),
    ("z", "Z"),
)
_VOWEL_LETTERS = set("aeiou")


def letters_to_arpabet(word: str) -> str:
    """A rough ARPAbet pronunciation from spelling (greedy longest-cluster rules).

    Returns "" when the word has no Latin letters. Silent final ``e``, soft ``c``/``g`` before
    ``e i y`` and consonant ``y`` at the start are handled; doubled consonants sound once.
    """
    w = "".join(ch for ch in word.lower() if "a" <= ch <= "z")
    if len(w) > 2 and w.endswith("e") and w[-2] not in _VOWEL_LETTERS:
        w = w[:-1]
    phones: list[str] = []
    i = 0
    while i < len(w):
        nxt = w[i + 1] if i + 1 < len(w) else ""
        if w[i] == "c" and nxt in ("e", "i", "y"):
            sound, step = "S", 1
        elif w[i] == "g" and nxt in ("e", "i", "y"):
            sound, step = "JH", 1
        elif w[i] == "y" and i == 0 and nxt in _VOWEL_LETTERS:
            sound, step = "Y", 1
        elif nxt == w[i] and w[i] not in _VOWEL_LETTERS:
            i += 1
            continue
        else:
            sound, step = next((s, len(k)) for k, s in _RULES if w.startswith(k, i))
        phones.extend(sound.split())
        i += step
    return " ".join(phones)

"""A generator of varied English sentences (our own text, no downloads) for the motion corpus.

Clause templates x openers x closers x a vocabulary chosen for phonetic coverage (bilabials
p b m, labiodentals f v, dental th, sibilants s z sh zh ch j, rounded vowels oo/oh/ow/oy,
r/w/y glides, all the English vowels), plus questions, exclamations, numbers, dates, times and
lists. Deterministic for a given ``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SentenceGenerator", "number_words"]

# fmt: off
_NAMES = (
    "Maria", "Bob", "Peter", "Vivian", "Thomas", "Judith", "George", "Zoe", "Ruth", "Owen", "Yusuf",
    "Chloe", "Sean", "Beth", "Howard", "Irene", "Oscar", "Ursula", "Eve", "Moira", "Paul", "Fiona",
)
_PEOPLE = (
    "the baker", "my brother", "our teacher", "the young pilot", "a tired nurse", "the mayor",
    "her father", "the old fisherman", "my neighbour", "the jazz musician", "a shy student",
    "the museum guide", "the judge", "his mother", "the plumber", "a loyal friend", "the chef",
    "the boys", "both of them", "the whole family", "everybody", "nobody", "the voters",
)
_THINGS = (
    "the blue box", "a bowl of soup", "the broken umbrella", "a pair of shoes", "the map",
    "a warm loaf of bread", "the purple balloon", "fresh juice", "the thick book", "a yellow boat",
    "the smooth pebble", "a cup of coffee", "the measuring tape", "two movie tickets", "the vase",
    "a bag of oranges", "the television", "the wooden spoon", "a thousand coins", "the newspaper",
    "the garage door", "some cheese", "the huge puzzle", "a pocket watch", "the violin",
)
_PLACES = (
    "at the beach", "in the kitchen", "by the window", "near the old bridge", "on the boat",
    "under the table", "in the garden", "at the museum", "through the woods", "over the hills",
    "around the corner", "in the zoo", "at the office", "behind the barn", "on the roof",
    "across the river", "in Boston", "in Zurich", "in Moscow", "by the pool", "at the airport",
)
_TIMES = (
    "yesterday", "this morning", "every Thursday", "at noon", "last winter", "tomorrow",
    "on Monday evening", "twice a week", "before dawn", "after the show", "in June", "right now",
    "every few months", "late at night", "during the summer",
)
_VERBS_PAST = (
    "bought", "brought", "found", "moved", "pushed", "fixed", "washed", "sold", "borrowed",
    "dropped", "painted", "measured", "lost", "opened", "shared", "chose", "threw", "weighed",
    "polished", "carried", "watched", "ordered", "smelled", "approved", "judged",
)
_VERBS_BASE = (
    "buy", "bring", "find", "move", "push", "fix", "wash", "sell", "borrow", "drop", "paint",
    "measure", "lose", "open", "share", "choose", "throw", "weigh", "polish", "carry", "watch",
    "order", "enjoy", "approve", "judge",
)
_ADJ = (
    "beautiful", "awful", "smooth", "boring", "thoughtful", "usual", "huge", "quiet", "loud",
    "vivid", "cheap", "precious", "foolish", "joyful", "pure", "rough", "cozy", "massive",
    "strange", "wonderful", "obvious", "bright", "shiny", "soft", "ugly",
)
_ADV = (
    "slowly", "quickly", "carefully", "happily", "roughly", "quietly", "proudly", "boldly",
    "smoothly", "gently", "loudly", "eagerly", "barely", "truly", "vaguely",
)
_OPENERS = (
    "", "", "", "", "", "Well, ", "Oh, ", "So, ", "Honestly, ", "By the way, ", "Of course, ",
    "Believe it or not, ", "Apparently, ", "You know, ", "Look, ", "Frankly, ", "Meanwhile, ",
    "Sure, ", "Wow, ", "Obviously, ",
)
_CLOSERS = (
    "", "", "", "", ", I think", ", as usual", ", believe me", ", of course", ", right away",
    " without a word", " for the first time", " again", ", just in case", " by mistake",
)
_CLAUSES = (
    "{P} {vp} {T} {L}",
    "{N} {vp} {T} {L}",
    "{P} {vp} {T} {adv}",
    "{N} and {N2} {vp} {T}",
    "{time}, {P} {vp} {T} {L}",
    "the {adj} thing about {T_} is that it looks {adj2}",
    "{N} said that {P} {vp} {L}",
    "there was a {adj} smell of {food} {L}",
    "{P} will {vb} {T} {L}",
    "{N} wants to {vb} {T} before {time}",
    "if {P} could {vb} {T}, {N} would be {adj}",
    "{N} usually {vb}s {T} {time}",
    "the {adj} view {L} made {N} smile",
    "please {vb} {T} {L}",
    "{N} has never seen anything so {adj}",
    "we should {vb} {T} {adv} {time}",
    "{P} {adv} {vp} {T} and then went home",
    "my favourite colour is {colour}, but {N} prefers {colour2}",
    "it took {num} minutes to {vb} {T}",
    "{N} was born in {year}",
    "the train leaves at {clock}",
    "{N} owes me {num} dollars and {num2} cents",
    "the room measures {num} by {num2} feet",
    "we need {food}, {food2}, and {food3}",
    "{N} thought the movie was {adj}, {adj2}, and a little {adj3}",
    "nothing is more {adj} than {T_} {L}",
    "the weather {L} was {adj} {time}",
    "{P} whispered something about {T_}",
)
_QUESTIONS = (
    "did {P} {vb} {T} {time}?",
    "why would {N} {vb} {T}?",
    "where did you put {T}?",
    "how much does {T} cost?",
    "who {vp} {T} {L}?",
    "could you {vb} {T} for me?",
    "what time does the shop open {time}?",
    "is it true that {N} {vp} {T}?",
    "have you ever been {L}?",
    "which one do you want, {T} or {T2}?",
    "are we going {L} {time}?",
    "how many {plural} are there {L}?",
    "would {N} enjoy {T_}?",
    "do you remember what {N} said {time}?",
)
_EXCLAIMS = (
    "what a {adj} day!",
    "watch out for {T}!",
    "that is {adj}!",
    "oh no, {N} {vp} {T}!",
    "look at {T}!",
    "happy birthday, {N}!",
    "wow, {T_} is {adj}!",
    "stop right there!",
    "bravo, {N}, that was {adj}!",
    "hooray, we won!",
    "move the boat over here, quickly!",
)
_SHORT = (
    "yes.", "no.", "okay.", "thank you.", "good morning.", "hello there.", "maybe.", "of course.",
    "see you soon.", "I agree.", "not really.", "absolutely!", "why not?", "really?", "oh boy.",
    "hmm, let me think.", "you bet.", "fair enough.", "welcome back!", "goodbye, {N}.",
)
_FOOD = (
    "bread", "cheese", "fish", "mushrooms", "peaches", "yogurt", "soup", "garlic", "olives", "beef",
    "vanilla", "juice", "zucchini", "potatoes", "chocolate", "shrimp", "oatmeal", "papaya",
)
_COLOURS = ("blue", "purple", "orange", "yellow", "brown", "violet", "beige", "maroon", "white", "gold")
_PLURALS = ("boats", "shoes", "books", "balloons", "pebbles", "chairs", "windows", "oranges", "puzzles")

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
# fmt: on


def number_words(n: int) -> str:
    """English words for 0 <= n < 1,000,000 (``"three hundred and twelve"``)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        t, o = divmod(n, 10)
        return _TENS[t] + ("-" + _ONES[o] if o else "")
    if n < 1000:
        h, r = divmod(n, 100)
        return _ONES[h] + " hundred" + (" and " + number_words(r) if r else "")
    th, r = divmod(n, 1000)
    return number_words(th) + " thousand" + (" " + number_words(r) if r else "")


class SentenceGenerator:
    """``sentence(rng)`` and ``utterance(rng, max_sentences)`` from a seeded numpy Generator."""

    def _pick(self, rng: np.random.Generator, seq: tuple[str, ...]) -> str:
        return seq[int(rng.integers(len(seq)))]

    def _number(self, rng: np.random.Generator) -> str:
        r = rng.random()
        if r < 0.5:
            return number_words(int(rng.integers(2, 100)))
        if r < 0.85:
            return number_words(int(rng.integers(100, 1000)))
        return number_words(int(rng.integers(1000, 100_000)))

    def _fill(self, template: str, rng: np.random.Generator) -> str:
        p = self._pick
        thing_bare = p(rng, _THINGS)
        year = int(rng.integers(1900, 2030))
        hi, lo = divmod(year, 100)
        year_words = (
            number_words(hi) + " " + (number_words(lo) if lo >= 10 else "oh " + number_words(lo))
            if lo
            else number_words(hi) + " hundred"
        )
        if 2000 <= year < 2010:
            year_words = "two thousand" + (" and " + number_words(year - 2000) if year > 2000 else "")
        hour, minute = int(rng.integers(1, 13)), int(rng.integers(0, 60))
        clock = number_words(hour) + (
            " o'clock" if minute == 0 else " " + ("oh " if minute < 10 else "") + number_words(minute)
        )
        people = _PEOPLE + tuple(_NAMES)
        values = {
            "P": p(rng, people),
            "N": p(rng, _NAMES),
            "N2": p(rng, _NAMES),
            "T": p(rng, _THINGS),
            "T2": p(rng, _THINGS),
            "T_": thing_bare,
            "L": p(rng, _PLACES),
            "vp": p(rng, _VERBS_PAST),
            "vb": p(rng, _VERBS_BASE),
            "adj": p(rng, _ADJ),
            "adj2": p(rng, _ADJ),
            "adj3": p(rng, _ADJ),
            "adv": p(rng, _ADV),
            "time": p(rng, _TIMES),
            "food": p(rng, _FOOD),
            "food2": p(rng, _FOOD),
            "food3": p(rng, _FOOD),
            "colour": p(rng, _COLOURS),
            "colour2": p(rng, _COLOURS),
            "plural": p(rng, _PLURALS),
            "num": self._number(rng),
            "num2": number_words(int(rng.integers(1, 100))),
            "year": year_words,
            "clock": clock,
        }
        values["T"] = values["T"] if rng.random() < 0.8 else p(rng, _THINGS).replace("the ", "this ")
        if "{time}" not in template and "{T}" in template and rng.random() < 0.3:
            template = template.replace("{T}", "{T} " + p(rng, _TIMES), 1)
        return template.replace("{T2}", "{T_2}").format(**values, T_2=values["T2"])

    @staticmethod
    def _cap(s: str) -> str:
        s = " ".join(s.split())
        return s[:1].upper() + s[1:] if s else s

    def sentence(self, rng: np.random.Generator) -> str:
        """One sentence: statements (60%), questions (20%), exclamations (10%), short ones (10%)."""
        r = rng.random()
        if r < 0.6:
            body = self._fill(self._pick(rng, _CLAUSES), rng)
            text = self._pick(rng, _OPENERS) + body + self._pick(rng, _CLOSERS) + "."
        elif r < 0.8:
            text = self._pick(rng, (*_OPENERS[:5], "So ", "But ", "And ")) + self._fill(
                self._pick(rng, _QUESTIONS), rng
            )
        elif r < 0.9:
            text = self._fill(self._pick(rng, _EXCLAIMS), rng)
        else:
            text = self._fill(self._pick(rng, _SHORT), rng)
        return self._cap(text)

    def utterance(self, rng: np.random.Generator, max_sentences: int = 3) -> str:
        """One to ``max_sentences`` sentences (more often one or two)."""
        k = 1 + int(rng.choice(max_sentences, p=_sentence_count_probs(max_sentences)))
        return " ".join(self.sentence(rng) for _ in range(k))


def _sentence_count_probs(k: int) -> np.ndarray:
    w = np.array([0.6**i for i in range(k)])
    return w / w.sum()

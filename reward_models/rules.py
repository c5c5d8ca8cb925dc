"""Rule-based rewards: no model, no download, deterministic.

Defined values for empty or degenerate text are part of each reward's contract (see each class), because
an optimiser will find them: a word-count length reward was hacked at once with empty strings and runs
of dots, so length counts characters and gives 0 to text with fewer than two words.
"""
from __future__ import annotations

import re
from functools import cached_property
from typing import Literal, Sequence

from .base import PolicyHandle, Reward

# A word contains at least one letter: "....." or "42" are not words (so punctuation runs can't game rewards).
_WORD = re.compile(r"\w*[^\W\d_]\w*")
_SENTENCE_END = re.compile(r"[.!?]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text)


class VaderSentiment(Reward):
    """VADER compound score in [-1, 1] (vaderSentiment's lexicon ships with the package). Empty text → 0."""

    def __init__(self, name: str = "vader"):
        super().__init__(name)

    @cached_property
    def _analyzer(self):
        # deferred: vaderSentiment is an optional dependency (the pipeline extra); only the vader reward needs it
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        return SentimentIntensityAnalyzer()

    def _score(self, prompts, responses, policy):
        return [self._analyzer.polarity_scores(r)["compound"] if r.strip() else 0.0 for r in responses]


def normalized_length(text: str) -> int:
    """Characters after collapsing whitespace runs to one space (padding with spaces earns nothing)."""
    return len(" ".join(text.split()))


class CharLength(Reward):
    """Length in characters (whitespace collapsed); 0 for text with fewer than `min_words` words."""

    def __init__(self, name: str = "length", min_words: int = 2):
        super().__init__(name)
        self.min_words = min_words

    def _score(self, prompts, responses, policy):
        return [float(normalized_length(r)) if len(words(r)) >= self.min_words else 0.0 for r in responses]


class Conciseness(Reward):
    """Shorter is better. `negative`: −characters (0 for empty); `inverse`: 1 / (1 + characters).

    Empty text is the most concise; pair it with a quality reward, as the demo pairs length with VADER.
    """

    def __init__(self, name: str = "conciseness", form: Literal["negative", "inverse"] = "negative"):
        super().__init__(name)
        self.form = form

    def _score(self, prompts, responses, policy):
        lengths = [normalized_length(r) for r in responses]
        if self.form == "inverse":
            return [1.0 / (1.0 + n) for n in lengths]
        return [-float(n) for n in lengths]


def type_token_ratio(tokens: Sequence[str]) -> float:
    return len(set(tokens)) / len(tokens) if tokens else 0.0


def _mtld_pass(tokens: Sequence[str], threshold: float) -> float:
    """One direction of MTLD (McCarthy & Jarvis 2010): tokens per 'factor' of TTR falling to threshold."""
    factors, seen, count = 0.0, set(), 0
    for token in tokens:
        seen.add(token)
        count += 1
        if len(seen) / count <= threshold:
            factors, seen, count = factors + 1.0, set(), 0
    if count:  # partial factor for the remainder, scaled by how far its TTR fell towards the threshold
        factors += (1.0 - len(seen) / count) / (1.0 - threshold)
    return len(tokens) / factors if factors > 0 else float(len(tokens))


def mtld(tokens: Sequence[str], threshold: float = 0.72) -> float:
    """Mean of the forward and backward MTLD passes; 0 for no tokens."""
    if not tokens:
        return 0.0
    return 0.5 * (_mtld_pass(tokens, threshold) + _mtld_pass(list(reversed(tokens)), threshold))


class LexicalDiversity(Reward):
    """Lexical diversity over lower-cased words: `distinct` = distinct/total (type-token ratio) or `mtld`.

    Text without words → 0. TTR favours short texts; MTLD is length-robust, better next to a length reward.
    """

    def __init__(self, name: str = "diversity", method: Literal["distinct", "mtld"] = "distinct",
                 mtld_threshold: float = 0.72):
        super().__init__(name)
        self.method, self.mtld_threshold = method, mtld_threshold

    def _score(self, prompts, responses, policy):
        out = []
        for r in responses:
            tokens = [w.lower() for w in words(r)]
            out.append(mtld(tokens, self.mtld_threshold) if self.method == "mtld" else type_token_ratio(tokens))
        return out


class Readability(Reward):
    """Flesch reading ease: 206.835 − 1.015·words/sentences − 84.6·syllables/words.

    Syllables come from pyphen's hyphenation dictionaries (+1 per word), the fallback textstat itself
    uses; we don't use textstat because its English path downloads NLTK's cmudict at run time.
    Sentences are runs of . ! ? (at least one). Text without words → 0.
    """

    def __init__(self, name: str = "readability", lang: str = "en_US"):
        super().__init__(name)
        self.lang = lang

    @cached_property
    def _hyphenator(self):
        # deferred: pyphen is an optional dependency (the pipeline extra); only the readability reward needs it
        import pyphen

        return pyphen.Pyphen(lang=self.lang)

    def syllables(self, word: str) -> int:
        return len(self._hyphenator.positions(word.lower())) + 1

    def flesch(self, text: str) -> float:
        ws = words(text)
        if not ws:
            return 0.0
        sentences = max(1, len([s for s in _SENTENCE_END.split(text) if words(s)]))
        syllables = sum(self.syllables(w) for w in ws)
        return 206.835 - 1.015 * len(ws) / sentences - 84.6 * syllables / len(ws)

    def _score(self, prompts, responses, policy):
        return [self.flesch(r) for r in responses]


class KeywordPresence(Reward):
    """Whole-word keyword matches. `any`: 1 if any keyword occurs; `fraction`: share of keywords present;
    `count`: total occurrences. Case-insensitive unless `case_sensitive`. Empty text → 0."""

    def __init__(self, keywords: Sequence[str], name: str = "keywords",
                 mode: Literal["any", "fraction", "count"] = "any", case_sensitive: bool = False):
        super().__init__(name)
        flags = 0 if case_sensitive else re.IGNORECASE
        self.patterns = [re.compile(r"(?<!\w)" + re.escape(k) + r"(?!\w)", flags) for k in keywords]
        self.mode = mode

    def _score(self, prompts, responses, policy: PolicyHandle | None):
        out = []
        for r in responses:
            counts = [len(p.findall(r)) for p in self.patterns]
            if self.mode == "count":
                out.append(float(sum(counts)))
            elif self.mode == "fraction":
                out.append(sum(c > 0 for c in counts) / len(counts))
            else:
                out.append(float(any(counts)))
        return out


class LexiconCount(Reward):
    """How many words of the response are in VADER's sentiment lexicon with a valence of at least `min_valence`
    (positive words: "great", "love", "fun", ...), counted with repeats. A reward that wants more words, of a kind:
    it grows with enthusiastic text, so it pulls against conciseness. Case-insensitive; empty text → 0."""

    def __init__(self, name: str = "lexicon", min_valence: float = 1.0):
        super().__init__(name)
        self.min_valence = min_valence

    @cached_property
    def _lexicon(self) -> frozenset[str]:
        # deferred: vaderSentiment is an optional dependency (the pipeline extra); its lexicon ships in the wheel
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        return frozenset(w for w, v in SentimentIntensityAnalyzer().lexicon.items() if v >= self.min_valence)

    def _score(self, prompts, responses, policy):
        return [float(sum(w.lower() in self._lexicon for w in words(r))) for r in responses]

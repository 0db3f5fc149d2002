"""Fuzzy text filters: each word of a text `fq` also matches indexed words a typo or two away.

The engines' full-text match is exact per word (after lower-casing), so fuzziness is added
before the engine is asked: every query word is expanded to the words of the field's
vocabulary (the words its indexed values hold) within an edit distance that grows with the
word's length, as Elasticsearch's `fuzziness: AUTO` does: none up to 2 characters, one up to
5, two beyond. An edit is an insertion, a deletion, a substitution or the swap of two
neighbouring letters (optimal string alignment). The expanded words go back to the engine as
one any-word match, so a fuzzy filter costs what a filter of a few more words costs.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from magpie.common.filters import Filter, TextMatch

# The engines' word tokenizer: runs of letters and digits (an underscore splits words too).
_WORD = re.compile(r"[^\W_]+")
MAX_EXPANSIONS = 16  # vocabulary words added per query word, closest first
NEAR_CACHE = 4096  # query words remembered per vocabulary (a scan costs ~4 ms at 20k words)


def words(text: str) -> list[str]:
    """The words of a text as the engines' full-text index sees them, in order, once each."""
    return list(dict.fromkeys(_WORD.findall(text.lower())))


def max_edits(word: str) -> int:
    """How many edits a query word tolerates: 0 up to 2 characters, 1 up to 5, then 2."""
    return 0 if len(word) <= 2 else 1 if len(word) <= 5 else 2


@dataclass(frozen=True)
class Vocabulary:
    """The distinct words of one field's indexed values."""

    words: tuple[str, ...]
    _near: dict[str, list[str]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, texts: Iterable[object]) -> Vocabulary:
        """The vocabulary of some payload values (non-strings are skipped)."""
        seen: dict[str, None] = {}
        for text in texts:
            if isinstance(text, str):
                seen.update(dict.fromkeys(_WORD.findall(text.lower())))
        return cls(tuple(sorted(seen)))

    def near(self, word: str) -> list[str]:
        """Vocabulary words within `max_edits(word)` of `word`, closest first, then by word."""
        edits = max_edits(word)
        if edits == 0 or not self.words:
            return []
        cached = self._near.get(word)
        if cached is not None:
            return list(cached)
        from rapidfuzz import process  # C++ scan: ~4 ms per word over 20k words
        from rapidfuzz.distance import OSA

        found = process.extract(word, self.words, scorer=OSA.distance, score_cutoff=edits,
                                limit=None)
        ranked = sorted((dist, w) for w, dist, _ in found if w != word)
        near = [w for _, w in ranked[:MAX_EXPANSIONS]]
        if len(self._near) >= NEAR_CACHE:
            self._near.clear()  # rare; cheaper than LRU bookkeeping on every lookup
        self._near[word] = near
        return list(near)


def expand(text: str, vocabulary: Vocabulary) -> str:
    """The query's words followed by their near vocabulary words, space-separated, once each."""
    query = words(text)
    out = dict.fromkeys(query)
    for word in query:
        out.update(dict.fromkeys(vocabulary.near(word)))
    return " ".join(out)


def text_fields(flt: Filter) -> list[str]:
    """The fields a filter matches by full text, once each."""
    return list(dict.fromkeys(c.field for c in flt if isinstance(c, TextMatch)))


def expand_filter(flt: Filter, vocabularies: Mapping[str, Vocabulary]) -> Filter:
    """`flt` with every text condition widened to the near words of its field's vocabulary."""
    return tuple(
        TextMatch(c.field, expand(c.text, vocabularies[c.field]))
        if isinstance(c, TextMatch) and c.field in vocabularies else c
        for c in flt)

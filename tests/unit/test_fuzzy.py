"""Fuzzy text filters: words, edit budgets, near words, expanded filters."""
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from magpie.common.filters import AnyOf, Between, TextMatch
from magpie.search.fuzzy import (
    MAX_EXPANSIONS, Vocabulary, expand, expand_filter, max_edits, text_fields, words,
)

pytestmark = pytest.mark.unit

VOCAB = Vocabulary.of(["Red leather Shoes", "blue suede shoe", "Wool jacket", "cap", None, 42,
                       "running-shoes_2024", "Ünïcode café"])


def test_words_split_like_the_engines_word_tokenizer():
    assert words("Running-Shoes_2024 3.5 Café!") == ["running", "shoes", "2024", "3", "5", "café"]
    assert words("shoe SHOE shoe") == ["shoe"]
    assert words("!!! ---") == []


def test_the_vocabulary_holds_each_lowercased_word_once_and_skips_non_text():
    assert VOCAB.words == tuple(sorted({
        "red", "leather", "shoes", "blue", "suede", "shoe", "wool", "jacket", "cap", "running",
        "2024", "ünïcode", "café"}))


@pytest.mark.parametrize(("word", "edits"), [("ab", 0), ("cap", 1), ("shoes", 1), ("jacket", 2),
                                             ("leathers", 2)])
def test_the_edit_budget_grows_with_the_word(word, edits):
    assert max_edits(word) == edits


@pytest.mark.parametrize(("typo", "found"), [
    ("shoez", ["shoe", "shoes"]),  # a deletion and a substitution: one edit each
    ("lether", ["leather"]),  # a missing letter
    ("leahter", ["leather"]),  # two letters swapped count as one edit
    ("jakcet", ["jacket"]),
    ("jackte", ["jacket"]),
    ("wol", ["wool"]),
    ("cafe", ["café"]),
])
def test_near_finds_words_within_the_budget_closest_first(typo, found):
    assert VOCAB.near(typo) == found


def test_near_leaves_out_far_words_short_words_and_the_word_itself():
    assert VOCAB.near("lthr") == []  # three edits from leather
    assert VOCAB.near("cp") == []  # two letters tolerate no edit
    assert "shoes" not in VOCAB.near("shoes") and VOCAB.near("shoes") == ["shoe"]
    assert Vocabulary(()).near("shoes") == []


def test_near_is_capped_and_ordered_by_distance_then_word():
    many = Vocabulary.of([f"tablet{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + ["tablet"])
    near = many.near("tablets")
    assert len(near) == MAX_EXPANSIONS and near[0] == "tablet"
    assert near[1:] == sorted(near[1:])


def test_expand_keeps_the_query_words_first_then_adds_near_ones():
    assert expand("Lether SHOEZ", VOCAB) == "lether shoez leather shoe shoes"
    assert expand("nothing like it", VOCAB) == "nothing like it"


def test_expand_filter_widens_only_text_conditions_with_a_vocabulary():
    flt = (AnyOf("brand", ("Shoez",)), TextMatch("title", "shoez"), Between("price", 1, 2),
           TextMatch("other", "shoez"))
    out = expand_filter(flt, {"title": VOCAB})
    assert out == (AnyOf("brand", ("Shoez",)), TextMatch("title", "shoez shoe shoes"),
                   Between("price", 1, 2), TextMatch("other", "shoez"))
    assert text_fields(flt) == ["title", "other"]
    assert text_fields(flt[:1]) == []


@given(st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=9), min_size=1, max_size=30),
       st.text(alphabet="abcdefgh", min_size=1, max_size=9))
def test_near_words_are_within_the_budget_of_an_independent_distance(vocab, word):
    near = Vocabulary.of([" ".join(vocab)]).near(word)
    assert len(near) <= MAX_EXPANSIONS
    for found in near:
        assert found != word and _osa(word, found) <= max_edits(word)
    # Nothing within the budget is missed (while under the cap).
    expected = {w for w in set(vocab) if w != word and _osa(word, w) <= max_edits(word)}
    if len(expected) <= MAX_EXPANSIONS:
        assert set(near) == expected
    assert all(re.fullmatch(r"[a-h]+", w) for w in near)


def _osa(a: str, b: str) -> int:
    """Optimal string alignment distance, by the textbook dynamic programme."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def test_near_answers_a_repeated_word_from_its_cache_unchanged_by_callers():
    vocabulary = Vocabulary.of(["leather jacket"])
    first = vocabulary.near("lether")
    first.append("tampered")
    assert vocabulary.near("lether") == ["leather"]

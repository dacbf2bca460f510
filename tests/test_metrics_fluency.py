"""N-gram entropy fluency, computed by hand on tiny texts."""

import math

import pytest

from metrics import fluency, ngram_entropy, text_fluency, word_tokenize


def test_word_tokenize_splits_like_nltk():
    assert word_tokenize("I don't know John's 3.14 well-known cats.") == [
        "I", "do", "n't", "know", "John", "'s", "3.14", "well-known", "cats", ".",
    ]


def test_ngram_entropy_by_hand():
    words = ["a", "b", "a", "b"]
    # bigrams (a,b) (b,a) (a,b): p = 2/3, 1/3  ->  -(2/3 log2 2/3 + 1/3 log2 1/3) = 0.918296
    assert ngram_entropy(words, 2) == pytest.approx(-(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3)))
    # trigrams (a,b,a) (b,a,b): p = 1/2, 1/2  ->  1 bit
    assert ngram_entropy(words, 3) == pytest.approx(1.0)
    assert ngram_entropy(["a", "b"], 3) == 0.0  # no trigram at all


def test_fluency_by_hand():
    # "a b a b": H2 = 0.918296, H3 = 1  ->  (2/3 * 0.918296 + 4/3 * 1) / 2 = 0.972765
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    first = (2 / 3 * h2 + 4 / 3 * 1.0) / 2
    assert text_fluency("a b a b") == pytest.approx(first)
    assert first == pytest.approx(0.972765, abs=1e-6)
    # "the cat sat." -> [the, cat, sat, .]: 3 distinct bigrams H2 = log2 3 = 1.584963,
    # 2 distinct trigrams H3 = 1  ->  (2/3 * 1.584963 + 4/3) / 2 = 1.194988
    second = (2 / 3 * math.log2(3) + 4 / 3) / 2
    assert text_fluency("the cat sat.") == pytest.approx(second)
    # mean over texts × 100: (97.2765 + 119.4988) / 2 = 108.3877
    assert fluency(["a b a b", "the cat sat."]) == pytest.approx(100 * (first + second) / 2)
    assert fluency(["a b a b", "the cat sat."]) == pytest.approx(108.3877, abs=1e-3)


def test_repetition_lowers_fluency():
    assert fluency(["the the the the the the"]) == 0.0  # one distinct bigram and trigram
    assert fluency(["one two three four five six"]) > 0.0

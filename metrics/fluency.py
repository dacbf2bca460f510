"""Fluency of generated text as n-gram entropy (ROME, MedLaSA, MedREK).

For one text: split into words and punctuation (`word_tokenize`), and for n = 2 and 3 take the
Shannon entropy in bits of the text's own n-gram frequency distribution,
`H_n = -sum_k f_n(k) log2 f_n(k)` with `f_n(k)` = count of n-gram k / number of n-grams (the
MedREK seed prints eq. 5 without the minus sign; entropy is meant). The text's fluency is the
weighted average `(2/3 H_2 + 4/3 H_3) / (2/3 + 4/3)`, and `fluency` reports the mean over texts
× 100. The weights sum to 2, so this equals the ROME reference (`mean([2/3 H_2, 4/3 H_3])`);
the published values (560-600 in MedREK Table 2) are on this scale, whereas the plain weighted
sum would be twice as large. Repetitive text has few distinct n-grams and so low entropy.
A text with fewer than n words has no n-grams and contributes H_n = 0.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from types import MappingProxyType
from typing import Mapping, Sequence

# Close to nltk's Treebank word tokenizer on ordinary prose: clitics ("do" + "n't",
# "John" + "'s") and punctuation are separate tokens, numbers and hyphenated words stay whole,
# case is kept. Exotic quoting and abbreviations ("U.S.") are split differently.
_WORD = re.compile(
    r"""\w+(?=n't\b)                      # "do" of "don't", "ca" of "can't"
      | n't\b                             # the negation clitic itself
      | '(?:s|re|ve|ll|d|m)\b             # 's 're 've 'll 'd 'm
      | \d+(?:[.,]\d+)*                   # 3.14, 1,000
      | \w+(?:-\w+)*                      # words, hyphenated compounds
      | \.\.\.                            # ellipsis
      | [^\w\s]                           # any other single symbol
    """,
    re.VERBOSE | re.IGNORECASE,
)

BIGRAM_TRIGRAM_WEIGHTS: Mapping[int, float] = MappingProxyType({2: 2 / 3, 3: 4 / 3})


def word_tokenize(text: str) -> list[str]:
    """Words and punctuation of `text`, nltk-style."""
    return _WORD.findall(text)


def ngram_entropy(words: Sequence[str], n: int) -> float:
    """Entropy in bits of the n-gram frequency distribution of one word sequence (0 if none)."""
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def text_fluency(text: str, weights: Mapping[int, float] = BIGRAM_TRIGRAM_WEIGHTS) -> float:
    """Weighted average of the n-gram entropies of one text, in bits (not × 100)."""
    words = word_tokenize(text)
    weighted = sum(w * ngram_entropy(words, n) for n, w in weights.items())
    return weighted / sum(weights.values())


def fluency(texts: Sequence[str]) -> float:
    """Mean `text_fluency` over texts, × 100 (the scale the papers report)."""
    if not texts:
        raise ValueError("fluency needs at least one text.")
    return 100 * sum(text_fluency(t) for t in texts) / len(texts)

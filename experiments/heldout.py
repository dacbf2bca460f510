"""Held-out text for the perplexity check, cut so that any `Scorer` scores it in context.

Each WikiText paragraph (headings skipped) is cut into pieces of `TARGET_WORDS` words; a
piece is the scored target and the `context_words` words before it in the same paragraph
(default 16, about one sentence) are its prompt, so the first `context_words` words of a
paragraph are context only. The prompt is
what a `Scorer` conditions on and what a retrieval editor's scorer retrieves with, so a
retrieval editor whose memory fires on a passage's wording changes its perplexity, exactly as
a weight edit would. The pieces depend only on the corpus, the tokenizer and the token budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from data.corpus import corpus_text
from lm.scoring import Scorer

TARGET_WORDS = 64
MIN_TARGET_WORDS = 8  # shorter tails are mostly list fragments


@dataclass(frozen=True)
class HeldoutText:
    corpus: str
    prompts: tuple[str, ...]  # each piece's preceding words of the same paragraph
    targets: tuple[str, ...]
    tokens: int  # target tokens that perplexity is computed over


@dataclass(frozen=True)
class PieceLosses:
    """Summed negative log-likelihood (natural log) and token count of each held-out piece."""

    nll: tuple[float, ...]
    tokens: tuple[int, ...]

    @property
    def perplexity(self) -> float:
        """Corpus perplexity: tokens pooled over pieces."""
        return math.exp(sum(self.nll) / sum(self.tokens))


def heldout_text(tok: Any, token_budget: int, corpus: str = "wikitext2-test",
                 context_words: int = 16) -> HeldoutText:
    """The first pieces of `corpus` holding at least `token_budget` target tokens, each after
    its `context_words` preceding words."""
    prompts, targets, tokens = [], [], 0
    for line in corpus_text(corpus).splitlines():
        words = line.split()
        if not words or words[0] == "=":
            continue
        for start in range(context_words, len(words), TARGET_WORDS):
            if tokens >= token_budget:
                return HeldoutText(corpus, tuple(prompts), tuple(targets), tokens)
            piece = words[start : start + TARGET_WORDS]
            if len(piece) < MIN_TARGET_WORDS:
                continue
            target = " ".join(piece)
            prompts.append(" ".join(words[start - context_words : start]))
            targets.append(target)
            # Counted as the scorer encodes targets: a leading space, no special tokens.
            tokens += len(tok(" " + target, add_special_tokens=False)["input_ids"])
    return HeldoutText(corpus, tuple(prompts), tuple(targets), tokens)


def heldout_losses(scorer: Scorer, text: HeldoutText) -> PieceLosses:
    """Each held-out piece's summed NLL under the (possibly edited) scorer."""
    scores = scorer.score(text.prompts, text.targets)
    return PieceLosses(tuple(-s.sum_logprob for s in scores), tuple(len(s.logprobs) for s in scores))


def heldout_perplexity(scorer: Scorer, text: HeldoutText) -> float:
    """Corpus perplexity of the held-out targets under the (possibly edited) scorer."""
    return heldout_losses(scorer, text).perplexity

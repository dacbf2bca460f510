"""Held-out text for the perplexity check, cut so that it can be scored through any `Scorer`.

A `Scorer` scores targets after prompts, so each paragraph piece becomes its first word (the
prompt, which gives the model a start after BOS) and the rest (the scored target). Routing
perplexity through the scorer means a retrieval editor's injected prompts are measured too.
The pieces depend only on the corpus, the tokenizer and the token budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from data.corpus import corpus_text
from lm.scoring import Scorer
from metrics import perplexity

WORDS_PER_PIECE = 48
MIN_WORDS_PER_PIECE = 8  # shorter tails are mostly headings' leftovers and list fragments


@dataclass(frozen=True)
class HeldoutText:
    corpus: str
    prompts: tuple[str, ...]
    targets: tuple[str, ...]
    tokens: int  # target tokens that perplexity is computed over


def heldout_text(tok: Any, token_budget: int, corpus: str = "wikitext2-test") -> HeldoutText:
    """The first paragraph pieces of `corpus` holding at least `token_budget` target tokens
    (WikiText section headings, lines like "= = Career = =", are skipped)."""
    prompts, targets, tokens = [], [], 0
    for line in corpus_text(corpus).splitlines():
        words = line.split()
        if not words or words[0] == "=":
            continue
        for start in range(0, len(words), WORDS_PER_PIECE):
            piece = words[start : start + WORDS_PER_PIECE]
            if tokens >= token_budget:
                return HeldoutText(corpus, tuple(prompts), tuple(targets), tokens)
            if len(piece) < MIN_WORDS_PER_PIECE:
                continue
            target = " ".join(piece[1:])
            prompts.append(piece[0])
            targets.append(target)
            # Counted as the scorer encodes targets: a leading space, no special tokens.
            tokens += len(tok(" " + target, add_special_tokens=False)["input_ids"])
    return HeldoutText(corpus, tuple(prompts), tuple(targets), tokens)


def heldout_perplexity(scorer: Scorer, text: HeldoutText) -> float:
    """Corpus perplexity of the held-out targets under the (possibly edited) scorer."""
    scores = scorer.score(text.prompts, text.targets)
    return perplexity([s.logprobs for s in scores])

"""Perplexity of held-out text, the model-health check before and after editing."""

from __future__ import annotations

import math
from typing import Sequence


def perplexity(token_logprobs: Sequence[Sequence[float]]) -> float:
    """`exp(mean NLL over all tokens of all texts)` from natural-log token log-probabilities.

    Tokens are pooled, so a long text weighs more than a short one and the result is the
    corpus perplexity; it is not the mean of per-text perplexities, which would be dominated
    by short texts and by the convexity of exp.
    """
    total = sum(sum(text) for text in token_logprobs)
    count = sum(len(text) for text in token_logprobs)
    if count == 0:
        raise ValueError("perplexity needs at least one scored token.")
    return math.exp(-total / count)

"""Perplexity of held-out text, the model-health check before and after editing."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from metrics.uncertainty import bootstrap_interval


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


def perplexity_change_interval(nll_before: Sequence[float], nll_after: Sequence[float],
                               tokens: Sequence[int], seed: int = 0) -> tuple[float, float] | None:
    """95% bootstrap interval of the relative perplexity change `after / before - 1`, resampling
    held-out pieces (paired: a piece's before and after NLL sums stay together). `nll_*[i]` is
    piece i's summed negative log-likelihood, `tokens[i]` its token count."""
    before, after, counts = (np.asarray(v, dtype=float) for v in (nll_before, nll_after, tokens))
    if not len(before) == len(after) == len(counts):
        raise ValueError("perplexity_change_interval needs one before, after and count per piece.")

    def change(indices: np.ndarray) -> float:
        total = counts[indices].sum()
        return math.exp((after[indices].sum() - before[indices].sum()) / total) - 1

    return bootstrap_interval(len(counts), change, seed)

"""Efficacy and generality under both conventions the literature uses.

The same functions score edit prompts (efficacy) and rephrased prompts (generality); only the
prompts the caller scored differ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from lm.scoring import TokenScores


def token_accuracy(scores: Sequence[TokenScores]) -> float:
    """Convention (a), RECIPE / MedREK / EasyEdit: teacher-forced target token accuracy.

    Per request, the fraction of target positions where the edited model's argmax is the target
    token; then the mean over requests (each request weighs the same, whatever its length).
    """
    if not scores:
        raise ValueError("token_accuracy needs at least one scored request.")
    return sum(s.accuracy for s in scores) / len(scores)


def efficacy_score(
    new_scores: Sequence[TokenScores],
    old_scores: Sequence[TokenScores],
    length_normalised: bool = False,
) -> float:
    """Convention (b), ROME / MEMIT: fraction of requests with P(target_new) > P(target_true).

    `new_scores[i]` and `old_scores[i]` are the edited model's scores of request i's new and
    true targets after the same prompt. By default P(target) is the joint probability, compared
    as the sum of token log-probabilities. `length_normalised=True` compares the mean token
    log-probability instead, as the ROME/MEMIT evaluation code does, which stops a longer
    target from losing merely for having more tokens. The comparison is strict: a tie counts
    as a failure, since the edit did not make the new target more likely.
    """
    if len(new_scores) != len(old_scores):
        raise ValueError(f"Got {len(new_scores)} new-target scores but {len(old_scores)} true-target scores.")
    if not new_scores:
        raise ValueError("efficacy_score needs at least one scored request.")

    def likelihood(s: TokenScores) -> float:
        return s.sum_logprob / len(s.logprobs) if length_normalised else s.sum_logprob

    wins = sum(likelihood(new) > likelihood(old) for new, old in zip(new_scores, old_scores))
    return wins / len(new_scores)

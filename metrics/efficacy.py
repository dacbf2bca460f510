"""Efficacy and generality under both conventions the literature uses.

The same functions score edit prompts (efficacy) and rephrased prompts (generality); only the
prompts the caller scored differ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Sequence

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
    convention: Literal["per_token", "joint"] = "per_token",
) -> float:
    """Convention (b), ROME / MEMIT: the share of prompts where the new target beats the old.

    `new_scores[i]` and `old_scores[i]` are the edited model's scores of the new and the old
    (true) target after the same prompt. "per_token" (the default, MEMIT's evaluation code and
    its "score"): the new target wins when its mean per-token NLL is lower, i.e. its mean token
    log-probability higher, so a target does not lose merely for having more tokens. "joint":
    the new target's joint probability (sum of token log-probabilities) is higher; the two
    differ whenever the targets have different token counts. The comparison is strict: a tie
    counts as a failure, since the edit did not make the new target more likely.

    With the arguments swapped (ground truth first, new target second) on unrelated prompts
    this is MEMIT's neighbourhood score "NS": the share of probes that still prefer their own
    answer to the edit's new target.
    """
    if len(new_scores) != len(old_scores):
        raise ValueError(f"Got {len(new_scores)} new-target scores but {len(old_scores)} true-target scores.")
    if not new_scores:
        raise ValueError("efficacy_score needs at least one scored request.")
    if convention not in ("per_token", "joint"):
        raise ValueError(f"Unknown efficacy convention {convention!r}; use 'per_token' or 'joint'.")

    def likelihood(s: TokenScores) -> float:
        return s.sum_logprob / len(s.logprobs) if convention == "per_token" else s.sum_logprob

    wins = sum(likelihood(new) > likelihood(old) for new, old in zip(new_scores, old_scores))
    return wins / len(new_scores)

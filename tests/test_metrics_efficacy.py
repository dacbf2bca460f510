"""Efficacy/generality conventions, on hand-built token scores."""

import pytest

from lm.scoring import TokenScores
from metrics import efficacy_score, token_accuracy


def scores(logprobs, argmax_ids=None, target_ids=None):
    target_ids = target_ids or tuple(range(len(logprobs)))
    return TokenScores(tuple(target_ids), tuple(logprobs), tuple(argmax_ids or target_ids))


def test_token_accuracy_is_mean_of_per_request_accuracies():
    half = scores([-1.0, -1.0], argmax_ids=(0, 9), target_ids=(0, 1))  # 1 of 2 correct
    full = scores([-1.0], argmax_ids=(7,), target_ids=(7,))  # 1 of 1 correct
    # (1/2 + 1/1) / 2 = 0.75, not the pooled 2/3
    assert token_accuracy([half, full]) == pytest.approx(0.75)


def test_efficacy_score_counts_ties_as_failures():
    new = [scores([-1.0]), scores([-2.0]), scores([-3.0])]
    old = [scores([-2.0]), scores([-2.0]), scores([-1.0])]
    # -1 > -2 win; -2 > -2 tie, fails; -3 > -1 loss  ->  1/3
    assert efficacy_score(new, old) == pytest.approx(1 / 3)


def test_efficacy_score_is_memits_per_token_convention_by_default():
    new = [scores([-1.0, -1.0])]  # sum -2.0, mean -1.0
    old = [scores([-1.5])]  # sum -1.5, mean -1.5
    assert efficacy_score(new, old) == 1.0  # per token: -1.0 > -1.5
    assert efficacy_score(new, old, convention="joint") == 0.0  # joint: -2.0 < -1.5


def test_efficacy_score_rejects_mismatched_lists():
    with pytest.raises(ValueError, match="2 new-target scores but 1"):
        efficacy_score([scores([-1.0])] * 2, [scores([-1.0])])

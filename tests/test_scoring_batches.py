"""Scoring batches are formed by length, so one long prompt does not pad the others."""

from __future__ import annotations

import pytest

from lm.scoring import LMScorer, length_batches


def test_one_long_text_gets_a_batch_of_its_own():
    lengths = [12, 5000, 9, 14, 11]
    batches = length_batches(lengths, max_rows=32, max_padded_tokens=32 * 128)
    assert batches == [[2, 4, 0, 3], [1]]
    padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
    assert padded == 4 * 14 + 5000  # not 5 × 5000


@pytest.mark.parametrize("max_rows, budget", [(1, 10**6), (3, 10**6), (32, 40)])
def test_every_index_once_within_both_limits(max_rows, budget):
    lengths = [7, 3, 3, 20, 1, 15, 8, 8, 2]
    batches = length_batches(lengths, max_rows, budget)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= max_rows
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= budget


def test_scores_do_not_depend_on_the_batching(tiny_llama):
    model, tok = tiny_llama
    prompts = ["The capital of France is", "Water boils at " * 20 + "one hundred", "Tea is"]
    targets = [" Paris", " degrees", " hot"]
    together = LMScorer(model, tok, batch_size=32).score(prompts, targets)
    alone = [LMScorer(model, tok, batch_size=1).score([p], [t])[0] for p, t in zip(prompts, targets)]
    for a, b in zip(together, alone):
        assert a.target_ids == b.target_ids and a.argmax_ids == b.argmax_ids
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)

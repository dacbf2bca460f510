"""MEMIT on the embedded default model: a batch of 10 CounterFact test edits takes, and undoes.

Loads SmolLM2-135M; the covariance (100k corpus tokens, the default edit layers) is computed once (~1 min)
and then read from the cache root.
"""

from __future__ import annotations

import pytest
import torch

from data.benchmarks import load_benchmark
from editors.registry import make_editor
from lm.loading import load
from metrics.efficacy import efficacy_score, token_accuracy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_model():
    return load("default")


def test_memit_batch_of_ten_counterfact_edits_takes_and_undoes_exactly(default_model):
    model, tok = default_model
    requests = load_benchmark("counterfact", "test")[:10]
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    prompts = [r.prompt for r in requests]

    applied = make_editor("memit", model).apply(model, tok, requests)
    scorer = applied.scorer
    new = scorer.score(prompts, [r.target_new for r in requests])
    old = scorer.score(prompts, [r.target_true for r in requests])
    applied.undo()

    assert efficacy_score(new, old) >= 0.9
    assert token_accuracy(new) >= 0.9
    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)

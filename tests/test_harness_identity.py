"""The unedited baseline on the default model: locality exactly 1, efficacy at its base rate."""

from __future__ import annotations

import pytest

from experiments.edit_sets import draw_edits
from experiments.harness import run_batch, run_single
from experiments.identity import IdentityEditor
from experiments.records import Settings
from lm.scoring import LMScorer
from metrics import efficacy_score, token_accuracy

pytestmark = pytest.mark.slow

SMALL = Settings(fluency_prompts=2, fluency_new_tokens=4, perplexity_tokens=32)


@pytest.fixture(scope="module")
def edits():
    return draw_edits("medcfpp", 3, seed=11)


def base_rates(model, tok, requests):
    """Efficacy and generality of the untouched model, scored directly (no harness)."""
    scorer = LMScorer(model, tok)
    prompts = [r.prompt for r in requests]
    rephrases = [r.rephrase_prompts[0] for r in requests]
    new = scorer.score(prompts, [r.target_new for r in requests])
    old = scorer.score(prompts, [r.target_true for r in requests])
    return (token_accuracy(new), efficacy_score(new, old),
            token_accuracy(scorer.score(rephrases, [r.target_new for r in requests])))


def check_unedited_scores(record, model, tok, requests):
    result = record.aggregate
    assert result.locality == {"td": 1.0, "em": 1.0, "ss": 1.0, "ts": 1.0}
    for step in record.steps:
        for request in step.requests:
            assert set(request.locality.values()) == {1.0}
    efficacy, score, generality = base_rates(model, tok, requests)
    assert result.efficacy_accuracy == pytest.approx(efficacy, abs=1e-12)
    assert result.efficacy_score == pytest.approx(score, abs=1e-12)
    assert result.generality_accuracy == pytest.approx(generality, abs=1e-12)
    assert result.health.perplexity_after == pytest.approx(record.perplexity_before, rel=1e-9)


def test_unedited_batch_scores_base_rates_and_reproduces_to_the_byte(default_model, tmp_path, edits):
    model, tok = default_model
    first = run_batch(IdentityEditor(), model, tok, edits, settings=SMALL, baseline_dir=tmp_path)
    check_unedited_scores(first, model, tok, edits.requests)
    # Drawn anew and read against the now cached baseline, as a second process would.
    second = run_batch(IdentityEditor(), model, tok, draw_edits("medcfpp", 3, seed=11),
                       settings=SMALL, baseline_dir=tmp_path)
    assert first.to_json(include_timings=False) == second.to_json(include_timings=False)


def test_unedited_single_scores_base_rates(default_model, tmp_path, edits):
    model, tok = default_model
    record = run_single(IdentityEditor(), model, tok, edits, settings=SMALL, baseline_dir=tmp_path)
    check_unedited_scores(record, model, tok, edits.requests)

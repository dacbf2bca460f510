"""Fluency and perplexity on the embedded default model, through the harness's own paths:
fixed-length sampled texts, the reference path and an empty retrieval memory agreeing, and a
retrieval memory that fires on held-out text changing its perplexity."""

from __future__ import annotations

import pytest

from data.requests import EditRequest
from experiments.edit_sets import draw_edits
from experiments.harness import run_batch
from experiments.heldout import heldout_losses, heldout_text
from experiments.identity import IdentityEditor
from experiments.records import Settings
from experiments.scoring import fluency_samples
from lm.scoring import LMScorer, TopKSampling
from metrics import text_fluency
from retrieval.editor import RetrievalEditor

pytestmark = pytest.mark.slow

FLUENCY = Settings(fluency_prompts=6, fluency_new_tokens=24, perplexity_tokens=0)


@pytest.fixture(scope="module")
def edits():
    return draw_edits("medcfpp", 6, seed=3)


@pytest.fixture(scope="module")
def medrek():
    return RetrievalEditor.from_checkpoint("medrek")


@pytest.fixture(scope="module")
def unedited(default_model, edits, tmp_path_factory):
    model, tok = default_model
    return run_batch(IdentityEditor(), model, tok, edits, settings=FLUENCY,
                     baseline_dir=tmp_path_factory.mktemp("baselines"))


def test_every_fluency_text_has_the_requested_length(default_model, unedited):
    model, tok = default_model
    samples = unedited.aggregate.health.fluency_samples
    assert len(samples) == FLUENCY.fluency_prompts
    assert {s.new_tokens for s in samples} == {FLUENCY.fluency_new_tokens}
    # The ids behind the texts: exactly that many, none of them special (no early end of turn).
    sampling = TopKSampling(FLUENCY.fluency_top_k, unedited.seed)
    found = LMScorer(model, tok).continuations([s.prompt for s in samples], 24, sampling)
    assert [c.text for c in found] == [s.continuation for s in samples]
    assert all(len(c.token_ids) == 24 and not set(c.token_ids) & set(tok.all_special_ids)
               for c in found)


def test_an_empty_retrieval_memory_gives_the_unedited_fluency(default_model, unedited, edits, medrek):
    model, tok = default_model
    applied = medrek.apply(model, tok, edits.requests[:1])
    applied.undo()  # the handle's scorer now retrieves from an empty memory
    samples = fluency_samples(applied.scorer, [r.prompt for r in edits.requests], FLUENCY,
                              unedited.seed)
    reference = unedited.aggregate
    low, high = reference.intervals["fluency"]
    flu = sum(s.fluency for s in samples) / len(samples)
    assert low <= flu <= high and low < high
    assert [s.continuation for s in samples] == [s.continuation for s in reference.health.fluency_samples]


def test_a_repeated_text_of_the_same_length_scores_far_lower(unedited):
    sample = unedited.aggregate.health.fluency_samples[0]
    varied = f"{sample.prompt} {sample.continuation}"
    words = varied.split()
    repeated = " ".join((words[:4] * len(words))[: len(words)])
    assert len(repeated.split()) == len(words)
    assert text_fluency(repeated) < 0.6 * text_fluency(varied)


def test_a_memory_that_fires_on_heldout_text_changes_its_perplexity(default_model, medrek):
    model, tok = default_model
    text = heldout_text(tok, 300)
    plain = heldout_losses(LMScorer(model, tok), text)
    # An edit whose prompt is a held-out piece's context: retrieval queries with that context.
    request = EditRequest(prompt=text.prompts[1], target_new="aspirin", target_true="nothing")
    applied = medrek.apply(model, tok, [request])
    try:
        fired = [entry is not None for entry in applied.retrieve(text.prompts).retrieved]
        edited = heldout_losses(applied.scorer, text)
    finally:
        applied.undo()
    assert fired[1]
    assert edited.perplexity != pytest.approx(plain.perplexity, rel=1e-4)
    for hit, before, after in zip(fired, plain.nll, edited.nll):
        if hit:
            assert after != pytest.approx(before, rel=1e-4)
        else:  # pieces that retrieve nothing are scored by the plain model, as before
            assert after == pytest.approx(before, rel=1e-4, abs=1e-3)


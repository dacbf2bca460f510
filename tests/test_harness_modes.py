"""The three editing settings on a tiny model: apply/undo order, what is scored, restoration."""

from __future__ import annotations

import pytest
import torch

from data.requests import EditRequest, LocalityProbe
from experiments.edit_sets import edit_set_of
from experiments.harness import EditorRestoreError, run_batch, run_sequential, run_single
from experiments.records import Settings
from lm.scoring import LMScorer

# Generation on, perplexity off: the tiny model's perplexity is tested elsewhere and costs time.
FAST = Settings(fluency_prompts=2, fluency_new_tokens=3, perplexity_tokens=0)


def requests(count: int) -> list[EditRequest]:
    facts = [("The capital of France is", "Rome", "Paris"), ("Aspirin treats", "cats", "pain"),
             ("The Nile is a river in", "Europe", "Africa"), ("Insulin lowers", "water", "sugar"),
             ("The Louvre holds the", "Nile", "Mona Lisa"), ("Tea is", "loud", "hot")]
    return [
        EditRequest(prompt=prompt, target_new=new, target_true=old,
                    rephrase_prompts=(f"In short, {prompt.lower()}",),
                    locality={"default": (LocalityProbe("Cats sleep", "a lot"),)},
                    metadata={"index": index})
        for index, (prompt, new, old) in enumerate(facts[:count])
    ]


class RecordingEditor:
    """Adds 0.5 to one weight per apply (undo puts back an exact copy); logs every call."""

    name = "recording"
    hparams = None

    def __init__(self, log: list, fail_on_apply: int | None = None, forget_undo: bool = False):
        self.log = log
        self.fail_on_apply = fail_on_apply
        self.forget_undo = forget_undo
        self.applies = 0

    def prepare(self, model, tok):
        pass

    def apply(self, model, tok, batch):
        self.applies += 1
        if self.applies == self.fail_on_apply:
            raise RuntimeError("apply failed on purpose")
        label = tuple(request.metadata["index"] for request in batch)
        self.log.append(("apply", label))
        weight = model.model.layers[0].mlp.down_proj.weight
        original = weight.detach().clone()
        with torch.no_grad():
            weight.add_(0.5)
        return RecordedEdit(self, label, weight, original, LoggingScorer(self.log, model, tok))


class RecordedEdit:
    info = {}

    def __init__(self, editor, label, weight, original, scorer):
        self.editor, self.label, self.weight, self.original, self.scorer = (
            editor, label, weight, original, scorer)

    def undo(self):
        self.editor.log.append(("undo", self.label))
        if not self.editor.forget_undo:
            with torch.no_grad():
                self.weight.copy_(self.original)


class LoggingScorer(LMScorer):
    """The edit's own scorer (as a retrieval editor would have); logs that it was used."""

    def __init__(self, log, model, tok):
        super().__init__(model, tok)
        self.log = log

    def score(self, prompts, targets):
        self.log.append(("score", len(prompts)))
        return super().score(prompts, targets)


def snapshot(model):
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def assert_restored(model, before):
    after = model.state_dict()
    assert after.keys() == before.keys()
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), name


def edit_calls(log):
    return [entry for entry in log if entry[0] != "score"]


def test_single_mode_applies_and_undoes_each_request_alone(tiny_llama, tmp_path):
    model, tok = tiny_llama
    before, log = snapshot(model), []
    record = run_single(RecordingEditor(log), model, tok, edit_set_of(requests(3), "hand"),
                        settings=FAST, baseline_dir=tmp_path)
    assert edit_calls(log) == [("apply", (0,)), ("undo", (0,)), ("apply", (1,)), ("undo", (1,)),
                               ("apply", (2,)), ("undo", (2,))]
    # Scoring happens between each apply and its undo, through the edit's own scorer.
    assert [entry[0] for entry in log[:3]] == ["apply", "score", "undo"]
    assert [step.applied_indices for step in record.steps] == [(0,), (1,), (2,)]
    assert [[r.record_index for r in step.requests] for step in record.steps] == [[0], [1], [2]]
    assert record.mode == "single" and record.batch_size == 1 and record.aggregate.requests == 3
    # The run's first two prompts are continued for fluency, one in each of their steps.
    assert [step.aggregate.health.fluency_texts for step in record.steps] == [1, 1, 0]
    assert [s.prompt for s in record.aggregate.health.fluency_samples] == [r.prompt for r in requests(2)]
    assert_restored(model, before)


def test_batch_mode_applies_consecutive_batches_and_undoes_each(tiny_llama, tmp_path):
    model, tok = tiny_llama
    before, log = snapshot(model), []
    record = run_batch(RecordingEditor(log), model, tok, edit_set_of(requests(5), "hand"),
                       batch_size=2, settings=FAST, baseline_dir=tmp_path)
    assert edit_calls(log) == [("apply", (0, 1)), ("undo", (0, 1)), ("apply", (2, 3)),
                               ("undo", (2, 3)), ("apply", (4,)), ("undo", (4,))]
    assert [len(step.requests) for step in record.steps] == [2, 2, 1]
    assert record.aggregate.requests == 5
    assert len(record.timings.steps) == 3
    assert_restored(model, before)


def test_sequential_mode_keeps_edits_scores_all_so_far_and_undoes_in_reverse(tiny_llama, tmp_path):
    model, tok = tiny_llama
    before, log = snapshot(model), []
    progress = []
    record = run_sequential(RecordingEditor(log), model, tok, edit_set_of(requests(6), "hand"),
                            batch_size=2, settings=FAST, baseline_dir=tmp_path,
                            progress=lambda done, total: progress.append((done, total)))
    assert edit_calls(log) == [("apply", (0, 1)), ("apply", (2, 3)), ("apply", (4, 5)),
                               ("undo", (4, 5)), ("undo", (2, 3)), ("undo", (0, 1))]
    assert [[r.record_index for r in step.requests] for step in record.steps] == [
        [0, 1], [0, 1, 2, 3], [0, 1, 2, 3, 4, 5]]
    assert [step.validation.requests for step in record.steps] == [2, 4, 6]
    assert record.aggregate == record.steps[-1].aggregate
    assert progress == [(0, 3), (1, 3), (2, 3), (3, 3)]
    # Undoing in any other order would leave the first batch's +0.5 in the weight.
    assert_restored(model, before)


def test_a_failing_apply_still_undoes_every_earlier_batch(tiny_llama, tmp_path):
    model, tok = tiny_llama
    before, log = snapshot(model), []
    with pytest.raises(RuntimeError, match="on purpose"):
        run_sequential(RecordingEditor(log, fail_on_apply=3), model, tok,
                       edit_set_of(requests(6), "hand"), batch_size=2, settings=FAST,
                       baseline_dir=tmp_path)
    assert edit_calls(log)[-2:] == [("undo", (2, 3)), ("undo", (0, 1))]
    assert_restored(model, before)


def test_an_editor_that_does_not_restore_the_model_is_caught(tiny_llama, tmp_path):
    model, tok = tiny_llama
    with pytest.raises(EditorRestoreError, match="'recording' did not restore the model"):
        run_batch(RecordingEditor([], forget_undo=True), model, tok,
                  edit_set_of(requests(2), "hand"), settings=FAST, baseline_dir=tmp_path)

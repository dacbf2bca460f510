"""Run any editor on an edit set in one of three settings and return a `RunRecord`.

- single: each request alone: apply, score, undo.
- batch: consecutive batches of `batch_size` requests (the last may be smaller): apply, score
  the batch, undo.
- sequential: batches applied one after another without undoing; after each, everything
  edited so far is scored; at the end every batch is undone, newest first.

Single is batch mode with batch size 1. Every editor of a comparison gets the same `EditSet`,
hence the same records in the same order, and is read against the same cached pre-edit
baseline. The harness uses only the `Editor` and `Applied` protocols (editors/protocol.py):
it scores through the handle's `scorer` and records the editor's `hparams` and the handle's
`info`. However a run ends, every applied edit is undone, and the model must then hash as it
did before.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

from data.validation import validate_batch
from data.requests import EditRequest, validate_requests
from editors.protocol import Applied, Editor
from experiments.aggregate import aggregate
from experiments.baseline import BaselineCache
from experiments.context import check_context
from experiments.edit_sets import EditSet
from experiments.environment import package_versions
from experiments.errors import HarnessError
from experiments.heldout import HeldoutText, PieceLosses, heldout_text
from experiments.records import (
    RECORD_FORMAT, Aggregate, ModelInfo, RequestResult, RunRecord, Settings, StepResult, StepTiming,
    Timings, Validation,
)
from experiments.scoring import model_health, score_requests
from lm.loading import check_finite_outputs, model_fingerprint
from lm.progress import Progress



class EditorRestoreError(RuntimeError):
    """An editor's `undo()` left the model's weights different from before the run."""


def run_single(editor: Editor, model: Any, tok: Any, edits: EditSet, settings: Settings = Settings(),
               progress: Progress | None = None, baseline_dir: Path | None = None) -> RunRecord:
    """Each request edited alone, scored, and undone before the next."""
    return _Run(editor, model, tok, edits, 1, settings, baseline_dir).isolated("single", progress)


def run_batch(editor: Editor, model: Any, tok: Any, edits: EditSet, batch_size: int | None = None,
              settings: Settings = Settings(), progress: Progress | None = None,
              baseline_dir: Path | None = None) -> RunRecord:
    """Batches of `batch_size` requests (default: the whole set) applied together, scored, undone."""
    size = len(edits.requests) if batch_size is None else batch_size
    return _Run(editor, model, tok, edits, size, settings, baseline_dir).isolated("batch", progress)


def run_sequential(editor: Editor, model: Any, tok: Any, edits: EditSet, batch_size: int,
                   settings: Settings = Settings(), progress: Progress | None = None,
                   baseline_dir: Path | None = None) -> RunRecord:
    """Batches applied cumulatively; everything edited so far is scored after each batch."""
    return _Run(editor, model, tok, edits, batch_size, settings, baseline_dir).sequential(progress)


def prepare_baseline(model: Any, tok: Any, edit_sets: Sequence[EditSet], settings: Settings = Settings(),
                     baseline_dir: Path | None = None) -> None:
    """Compute and cache the unedited references of every edit set now (locality predictions
    and perplexity), so that runs started later, in this or another process, only read them."""
    fingerprint = model_fingerprint(model)  # of every weight: taken once, not per edit set
    for edits in edit_sets:
        validate_requests(edits.requests)
        check_context(edits.requests, tok, model)
        _baseline(model, tok, fingerprint, edits, settings, baseline_dir)


def _baseline(model: Any, tok: Any, fingerprint: str, edits: EditSet, settings: Settings,
              baseline_dir: Path | None) -> tuple[list, HeldoutText | None, PieceLosses | None]:
    """The unedited locality predictions, the held-out text and its unedited losses."""
    cache = BaselineCache(model, tok, fingerprint, baseline_dir)
    unedited = cache.locality(edits.requests, about={
        "dataset": asdict(edits.dataset), "record_indices": list(edits.record_indices)})
    heldout = (heldout_text(tok, settings.perplexity_tokens, settings.perplexity_corpus,
                            settings.perplexity_context_words)
               if settings.perplexity_tokens else None)
    return unedited, heldout, cache.perplexity(heldout) if heldout else None


class _Run:
    """One harness run: the unedited references, then the steps, then the record."""

    def __init__(self, editor: Editor, model: Any, tok: Any, edits: EditSet, batch_size: int,
                 settings: Settings, baseline_dir: Path | None):
        # Refuse bad input before any expensive work.
        validate_requests(edits.requests)
        self.batches = _batches(len(edits.requests), batch_size)
        check_context(edits.requests, tok, model)
        check_finite_outputs(model, tok, "The model to edit")
        self.batch_size = batch_size
        self.started = time.perf_counter()
        self.editor, self.model, self.tok, self.edits, self.settings = editor, model, tok, edits, settings
        self.requests: tuple[EditRequest, ...] = edits.requests
        self.fingerprint = model_fingerprint(model)
        self.unedited, self.heldout, self.losses_before = _baseline(
            model, tok, self.fingerprint, edits, settings, baseline_dir)
        self.baseline_seconds = time.perf_counter() - self.started

    def isolated(self, mode: str, progress: Progress | None) -> RunRecord:
        steps, timings = [], []
        if progress:
            progress(0, len(self.batches))
        for number, batch in enumerate(self.batches, start=1):
            began = time.perf_counter()
            applied = self.editor.apply(self.model, self.tok, [self.requests[i] for i in batch])
            edited = time.perf_counter()
            try:
                steps.append(self._score(number, applied, batch, batch))
            finally:
                scored = time.perf_counter()
                applied.undo()
            timings.append(StepTiming(edited - began, scored - edited, time.perf_counter() - scored,
                                      reused_seconds=_reused_seconds(applied)))
            if progress:
                progress(number, len(self.batches))
        self._check_restored()
        every_request = [result for step in steps for result in step.requests]
        overall = aggregate(every_request, [step.aggregate.health for step in steps])
        return self._record(mode, steps, overall, timings, final_undo_seconds=0.0)

    def sequential(self, progress: Progress | None) -> RunRecord:
        steps, timings, live = [], [], []
        edited_so_far: list[int] = []
        if progress:
            progress(0, len(self.batches))
        try:
            for number, batch in enumerate(self.batches, start=1):
                began = time.perf_counter()
                live.append(self.editor.apply(self.model, self.tok, [self.requests[i] for i in batch]))
                edited = time.perf_counter()
                edited_so_far.extend(batch)
                steps.append(self._score(number, live[-1], batch, edited_so_far))
                timings.append(StepTiming(edited - began, time.perf_counter() - edited, 0.0,
                                          reused_seconds=_reused_seconds(live[-1])))
                if progress:
                    progress(number, len(self.batches))
        finally:
            undo_began = time.perf_counter()
            for applied in reversed(live):
                applied.undo()
            final_undo_seconds = time.perf_counter() - undo_began
        self._check_restored()
        return self._record("sequential", steps, steps[-1].aggregate, timings, final_undo_seconds)

    def _score(self, number: int, applied: Applied, applied_positions: Sequence[int],
               scored_positions: Sequence[int]) -> StepResult:
        scorer = applied.scorer
        scored = [self.requests[i] for i in scored_positions]
        results: list[RequestResult] = score_requests(
            scorer, scored, [self.unedited[i] for i in scored_positions])
        # The run's first `fluency_prompts` requests are continued wherever they are scored, so
        # a run of one-edit steps generates as many texts as one batch, not one per step.
        fluent = [self.requests[i].prompt for i in scored_positions[: self.settings.fluency_prompts]
                  if i < self.settings.fluency_prompts]
        health = model_health(scorer, applied, scored, fluent, self.settings, self.edits.seed,
                              self.heldout, self.losses_before)
        return StepResult(
            step=number,
            applied_indices=tuple(self.requests[i].metadata.get("index") for i in applied_positions),
            validation=_validation(scored),
            requests=tuple(results),
            aggregate=aggregate(results, [health]),
        )

    def _check_restored(self) -> None:
        if model_fingerprint(self.model) != self.fingerprint:
            raise EditorRestoreError(
                f"Editor {self.editor.name!r} did not restore the model: its weights differ "
                "after every edit was undone."
            )

    def _record(self, mode: str, steps: list[StepResult], overall: Aggregate,
                timings: list[StepTiming], final_undo_seconds: float) -> RunRecord:
        hparams = self.editor.hparams
        return RunRecord(
            format=RECORD_FORMAT,
            mode=mode,
            batch_size=self.batch_size,
            editor=self.editor.name,
            hparams=None if hparams is None else hparams.to_dict(),
            model=ModelInfo(
                fingerprint=self.fingerprint,
                model_type=str(getattr(self.model.config, "model_type", "")),
                parameters=sum(p.numel() for p in self.model.parameters()),
            ),
            seed=self.edits.seed,
            dataset=self.edits.dataset,
            record_indices=self.edits.record_indices,
            settings=self.settings,
            versions=package_versions(),
            perplexity_before=self.losses_before.perplexity if self.losses_before else None,
            steps=tuple(steps),
            aggregate=overall,
            timings=Timings(
                steps=tuple(timings),
                baseline_seconds=self.baseline_seconds,
                final_undo_seconds=final_undo_seconds,
                total_seconds=time.perf_counter() - self.started,
            ),
        )


def _batches(count: int, batch_size: int) -> list[list[int]]:
    """Positions in the edit set, cut into consecutive batches."""
    if not 1 <= batch_size <= count:
        raise HarnessError(
            f"Batch size {batch_size} is out of range: it must be between 1 and the "
            f"{count} edits in the set."
        )
    return [list(range(start, min(start + batch_size, count))) for start in range(0, count, batch_size)]


def _reused_seconds(applied: Applied) -> float:
    """The original cost of the values an editor reused (`info["seconds"]["values_reused"]` of
    the key–value editors); 0.0 for editors that report no such thing."""
    seconds = applied.info.get("seconds")
    reused = seconds.get("values_reused", 0.0) if isinstance(seconds, Mapping) else 0.0
    return float(reused or 0.0)


def _validation(requests: Sequence[EditRequest]) -> Validation:
    found = validate_batch(requests)
    return Validation(
        requests=len(requests),
        locality_overlaps=found.locality_overlaps,
        self_overlaps=found.self_overlaps,
        contradictory_records=found.contradictory_records,
        ceiling_efficacy=found.ceiling.efficacy,
        ceiling_locality=dict(found.ceiling.locality),
        ceiling_sentence=found.ceiling.sentence,
    )

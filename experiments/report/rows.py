"""The results table as data: one row per run, or one per step for sequential runs.

Markdown, CSV and HTML all format these rows, so the three files never disagree. A
single/batch run's row holds its overall aggregate (every batch scored, each request weighing
the same); a sequential run gets one row per step, scored on everything edited so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from experiments.records import Aggregate, RetrievalSummary, RunRecord, StepResult, StepTiming
from experiments.report.formatting import group_order


@dataclass(frozen=True)
class ResultRow:
    run: RunRecord
    run_number: int  # 1-based, as the report shows it
    name: str  # e.g. "memit, batch of 10, same-subject"
    editor: str
    label: str | None
    benchmark: str
    mode: str
    batch_size: int
    step: int | None  # sequential runs only
    requests: int  # edits scored in this row
    aggregate: Aggregate
    perplexity_before: float | None
    edit_seconds: float  # measured, plus the original cost of reused values (run order aside)
    reused_seconds: float  # the part of `edit_seconds` that reused values cost earlier
    scoring_seconds: float
    ceiling_efficacy: float  # lowest validator ceiling among the scored batches (1.0: no limit)
    ceiling_locality: Mapping[str, float]
    ceiling_sentences: tuple[str, ...]  # the validator's sentences where a ceiling is below 1

    @property
    def retrieval(self) -> RetrievalSummary | None:
        return self.aggregate.health.retrieval

    @property
    def intervals(self) -> Mapping[str, tuple[float, float]]:
        """95% bootstrap intervals by figure name (empty for records without them)."""
        return self.aggregate.intervals

    @property
    def perplexity_change(self) -> float | None:
        """Relative perplexity change, after / before - 1 (None when not measured)."""
        before, after = self.perplexity_before, self.aggregate.health.perplexity_after
        if before is None or after is None or before <= 0:
            return None
        return after / before - 1

    @property
    def setting(self) -> tuple:
        """What makes two rows comparable: model, benchmark, mode, batch size, label, seed."""
        return (self.run.model.fingerprint, self.benchmark, self.mode, self.batch_size, self.label,
                self.run.seed)


def run_name(run: RunRecord, label: str | None) -> str:
    size = "one edit at a time" if run.mode == "single" else f"{run.mode} of {run.batch_size}"
    return ", ".join(part for part in (run.editor, size, label) if part)


def locality_groups(runs: Sequence[RunRecord]) -> tuple[str, ...]:
    return group_order({group for run in runs for group in run.aggregate.locality})


def result_rows(runs: Sequence[RunRecord], labels: Sequence[str | None]) -> tuple[ResultRow, ...]:
    rows = []
    for number, (run, label) in enumerate(zip(runs, labels), start=1):
        if run.mode == "sequential":
            for step, timing in zip(run.steps, run.timings.steps):
                rows.append(_row(number, run, label, step.step, step.aggregate, [step], [timing]))
        else:
            rows.append(_row(number, run, label, None, run.aggregate, run.steps, run.timings.steps))
    return tuple(rows)


def final_rows(rows: Sequence[ResultRow]) -> tuple[ResultRow, ...]:
    """One row per run: a sequential run's last step (its aggregate after every batch)."""
    last: dict[int, ResultRow] = {}
    for row in rows:
        last[row.run_number] = row
    return tuple(last.values())


def _row(number: int, run: RunRecord, label: str | None, step: int | None, result: Aggregate,
         steps: Sequence[StepResult], timings: Sequence[StepTiming]) -> ResultRow:
    validations = [s.validation for s in steps]
    ceiling_locality: dict[str, float] = {}
    for validation in validations:
        for group, value in validation.ceiling_locality.items():
            ceiling_locality[group] = min(value, ceiling_locality.get(group, 1.0))
    limited = [v.ceiling_sentence for v in validations
               if v.ceiling_efficacy < 1 or any(value < 1 for value in v.ceiling_locality.values())]
    return ResultRow(
        run=run, run_number=number, name=run_name(run, label), editor=run.editor, label=label,
        benchmark=run.dataset.benchmark, mode=run.mode, batch_size=run.batch_size, step=step,
        requests=result.requests, aggregate=result, perplexity_before=run.perplexity_before,
        edit_seconds=sum(timing.edit_cost_seconds for timing in timings),
        reused_seconds=sum(timing.reused_seconds for timing in timings),
        scoring_seconds=sum(timing.scoring_seconds for timing in timings),
        ceiling_efficacy=min(v.ceiling_efficacy for v in validations),
        ceiling_locality=ceiling_locality,
        ceiling_sentences=tuple(dict.fromkeys(limited)),
    )

"""Rich tables built from run records alone (callers decide where to print them).

Scores are shown as percentages with one decimal, as the papers print them; "–" marks a score
the data cannot give (e.g. no rephrasings).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Iterable, Sequence

from rich import box
from rich.table import Table

from experiments.identity import IdentityEditor
from experiments.records import RunRecord

# MedCF's locality groups carry the paper's sub-metric names; a single group is just "Loc".
GROUP_LABELS = MappingProxyType({"td": "TD", "em": "EM", "ss": "SS", "ts": "TS", "default": "Loc"})


def comparison_table(records: Sequence[RunRecord], title: str) -> Table:
    """One row per run: Eff/Gen (token accuracy), locality per group, Flu, Avg (each ± the
    half-width of its 95% bootstrap interval), relative perplexity change, edit time and
    inference overhead (scoring time relative to the unedited run on
    the same prompts, when one is among `records`). Edit time is the measured time plus the
    original cost of values reused from the cache, so it does not depend on the run order."""
    groups = _ordered_groups(g for r in records for g in r.aggregate.locality)
    reference = next((r for r in records if r.editor == IdentityEditor.name), None)
    reference_seconds = sum(s.scoring_seconds for s in reference.timings.steps) if reference else 0.0
    table = _table(title)
    table.add_column("Editor", no_wrap=True)
    for column in ("Eff", "Gen", *(_group_label(g) for g in groups), "Flu", "Avg", "ΔPPL %", "Edit s", "Infer ×"):
        table.add_column(column, justify="right")
    for record in records:
        result = record.aggregate
        after, before = result.health.perplexity_after, record.perplexity_before
        scoring_seconds = sum(s.scoring_seconds for s in record.timings.steps)
        bounds = result.intervals
        table.add_row(
            record.editor,
            plus_minus(result.efficacy_accuracy, bounds.get("efficacy_accuracy")),
            plus_minus(result.generality_accuracy, bounds.get("generality_accuracy")),
            *(_percent(result.locality.get(group)) for group in groups),
            plus_minus(result.health.fluency, bounds.get("fluency"), scale=1),
            plus_minus(result.average, bounds.get("average")),
            "–" if after is None or not before else
            plus_minus(after / before - 1, bounds.get("perplexity_change"), decimals=2),
            _number(record.timings.edit_cost_seconds, 2),
            _number(scoring_seconds / reference_seconds if reference_seconds else None, 2),
        )
    return table


def sequential_table(record: RunRecord, title: str) -> Table:
    """One row per sequential step: scores of everything edited so far, and of the first batch
    alone (how well the earliest edits survive later ones)."""
    first_batch = set(record.steps[0].applied_indices)
    table = _table(title)
    for column in ("Step", "Edited", "Eff", "Eff score", "Gen", "Loc", "Eff batch 1", "PPL",
                   "Edit s"):
        table.add_column(column, justify="right")
    for step, timing in zip(record.steps, record.timings.steps):
        result = step.aggregate
        earliest = [r.efficacy_accuracy for r in step.requests if r.record_index in first_batch]
        table.add_row(
            str(step.step),
            str(result.requests),
            _percent(result.efficacy_accuracy),
            _percent(result.efficacy_score),
            _percent(result.generality_accuracy),
            _percent(result.locality_mean),
            _percent(sum(earliest) / len(earliest) if earliest else None),
            _number(result.health.perplexity_after, 2),
            _number(timing.edit_cost_seconds, 2),
        )
    return table


def _table(title: str) -> Table:
    # Light borders and collapsed padding keep ten numeric columns legible in 80 columns.
    return Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)


def _ordered_groups(groups: Iterable[str]) -> list[str]:
    """Known groups in the paper's order (TD, EM, SS, TS), others after them as first seen;
    records read back from JSON hold their groups in sorted order."""
    known = list(GROUP_LABELS)
    unique = list(dict.fromkeys(groups))
    return sorted(unique, key=lambda g: known.index(g) if g in known else len(known) + unique.index(g))


def _group_label(group: str) -> str:
    return GROUP_LABELS.get(group, group.upper())


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def plus_minus(value: float | None, interval: tuple[float, float] | None, scale: float = 100,
               decimals: int = 1) -> str:
    """`value` (× `scale`) with the half-width of its 95% interval, e.g. "72.9 ±4.4". Percentile
    intervals can be lopsided; the half-width is what a reader compares at a glance, and the
    exact bounds are in report.json and results.csv."""
    if value is None:
        return "–"
    shown = f"{scale * value:.{decimals}f}"
    if interval is None:
        return shown
    return f"{shown} ±{scale * (interval[1] - interval[0]) / 2:.{decimals}f}"


def _number(value: float | None, decimals: int) -> str:
    return "–" if value is None else f"{value:.{decimals}f}"

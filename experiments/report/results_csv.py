"""`results.csv`: the results table for machines — fractions (not percentages) with six
decimals, empty cells for missing values, one row per run (per step for sequential runs).

Columns are the same for every report except the locality groups present (`loc_td` ... or
`loc_default`), so files from several reports can be stacked. Every headline figure is
followed by the bounds of its 95% bootstrap interval (`<column>_low`, `<column>_high`, empty
when the record has none). `eff_score` / `gen_score` are MEMIT's per-token score, `loc_ns`
its neighbourhood score, `ppl_change` the relative perplexity change (after / before - 1). `edit_seconds` is what the edit
cost: measured wall time plus `edit_reused_seconds`, the original cost of value vectors reused
from the cache (subtract it for the time measured in this run).
"""

from __future__ import annotations

import csv
import io

from experiments.report.analyses import run_labels
from experiments.report.document import Report
from experiments.report.formatting import csv_number
from experiments.report.plots import RETRIEVAL_OUTCOMES
from experiments.report.rows import locality_groups, result_rows


def results_csv(report: Report) -> str:
    groups = locality_groups(report.runs)
    # (column, aggregate interval name) of every figure with an interval, in column order.
    figures = [("eff_token_acc", "efficacy_accuracy"), ("eff_score", "efficacy_score"),
               ("gen_token_acc", "generality_accuracy"), ("gen_score", "generality_score"),
               *((f"loc_{group}", f"locality.{group}") for group in groups),
               ("loc_mean", "locality_mean"), ("loc_ns", "locality_score"), ("fluency", "fluency"),
               ("avg", "average"), ("ppl_change", "perplexity_change")]
    header = [
        "run", "editor", "label", "benchmark", "mode", "batch_size", "step", "seed", "edits",
        *(name for column, _ in figures for name in (column, f"{column}_low", f"{column}_high")),
        "ppl_before", "ppl_after", "edit_seconds", "edit_reused_seconds", "scoring_seconds",
        "ceiling_efficacy",
        *(f"retrieval_{outcome}" for outcome in RETRIEVAL_OUTCOMES),
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in result_rows(report.runs, run_labels(report.analyses, report.runs)):
        result = row.aggregate
        retrieval = row.retrieval
        values = [result.efficacy_accuracy, result.efficacy_score, result.generality_accuracy,
                  result.generality_score, *(result.locality.get(group) for group in groups),
                  result.locality_mean, result.locality_score, result.health.fluency,
                  result.average, row.perplexity_change]
        with_bounds = []
        for value, (_, name) in zip(values, figures):
            low, high = row.intervals.get(name, (None, None))
            with_bounds += [value, low, high]
        writer.writerow([
            row.run_number, row.editor, row.label or "", row.benchmark, row.mode, row.batch_size,
            "" if row.step is None else row.step, row.run.seed, row.requests,
            *(csv_number(value) for value in (
                *with_bounds,
                row.perplexity_before, result.health.perplexity_after,
                row.edit_seconds, row.reused_seconds, row.scoring_seconds, row.ceiling_efficacy,
                *(None if retrieval is None else getattr(retrieval, outcome)
                  for outcome in RETRIEVAL_OUTCOMES),
            )),
        ])
    return buffer.getvalue()

"""`results.csv`: the results table for machines — fractions (not percentages) with six
decimals, empty cells for missing values, one row per run (per step for sequential runs).

Columns are the same for every report except the locality groups present (`loc_td` ... or
`loc_default`), so files from several reports can be stacked. `edit_seconds` is what the edit
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
    header = [
        "run", "editor", "label", "benchmark", "mode", "batch_size", "step", "edits",
        "eff_token_acc", "eff_score_p_new_gt_p_old", "gen_token_acc", "gen_score_p_new_gt_p_old",
        *(f"loc_{group}" for group in groups), "loc_mean", "fluency", "avg",
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
        writer.writerow([
            row.run_number, row.editor, row.label or "", row.benchmark, row.mode, row.batch_size,
            "" if row.step is None else row.step, row.requests,
            *(csv_number(value) for value in (
                result.efficacy_accuracy, result.efficacy_score,
                result.generality_accuracy, result.generality_score,
                *(result.locality.get(group) for group in groups),
                result.locality_mean, result.health.fluency, result.average,
                row.perplexity_before, result.health.perplexity_after,
                row.edit_seconds, row.reused_seconds, row.scoring_seconds, row.ceiling_efficacy,
                *(None if retrieval is None else getattr(retrieval, outcome)
                  for outcome in RETRIEVAL_OUTCOMES),
            )),
        ])
    return buffer.getvalue()

"""What a report says, decided once for every output format: provenance, the results table,
the validator's ceilings, retrieval diagnostics, plots, AKD analyses and "Which method?".

Everything comes from the `Report` alone (never from the clock or the machine rendering it),
in the report's own run order, so rendering twice gives the same document.
"""

from __future__ import annotations

import json
from typing import Sequence

from experiments.records import RunRecord
from experiments.report.advice import Thresholds, which_method
from experiments.report.analyses import (
    AkdPoint, akd_points, correlations, other_analyses, run_labels,
)
from experiments.report.blocks import Bullet, Bullets, Code, Document, Paragraph, Section, Table
from experiments.report.document import Report
from experiments.report.formatting import MISSING, fixed, group_label, percent, seconds
from experiments.report.plots import RETRIEVAL_OUTCOMES, report_plots
from experiments.report.rows import ResultRow, final_rows, locality_groups, result_rows

CEILING_MARK = "†"
CONVENTIONS = (
    "Scores are percentages. Eff and Gen are given in both conventions: \"token acc.\" is the "
    "teacher-forced accuracy of the new target's tokens (RECIPE, MedREK, EasyEdit); "
    "\"score P(new)>P(old)\" is the share of prompts where the new target is more probable "
    "than the old one (MEMIT, ROME). Locality is agreement with the unedited model on "
    "unrelated prompts, per probe group; Avg is MedREK's eq. 13 on the token-accuracy "
    "convention; Flu is n-gram entropy ×100; Edit s and Scoring s are wall-clock seconds, "
    "Edit s including what any value vectors reused from an earlier run (another editor of the "
    "same comparison, or a repeated run) cost when they were optimised, so the run order does "
    "not make an editor look faster. "
    "Single/batch runs show one row (all batches); sequential runs show one row per step, "
    "scored on everything edited so far. "
    f"{CEILING_MARK} marks a figure the batch validator caps below 100% (see Ceilings)."
)


def build_document(report: Report, thresholds: Thresholds = Thresholds()) -> Document:
    labels = run_labels(report.analyses, report.runs)
    rows = result_rows(report.runs, labels)
    finals = final_rows(rows)
    akd = akd_points(report.analyses, report.runs)
    sections = [
        _provenance(report),
        _results(report.runs, rows),
        *_retrieval(finals),
    ]
    plots = report_plots(rows, finals, akd)
    sections.append(Section("Plots", plots or (Paragraph("No plot applies to these runs."),)))
    sections += _akd(report, akd)
    further = other_analyses(report.analyses)
    if further:
        code = Code(json.dumps(further, indent=2, sort_keys=True))
        sections.append(Section("Further analyses", (code,)))
    sections += which_method(finals, rows, thresholds)
    benchmarks = ", ".join(dict.fromkeys(run.dataset.benchmark for run in report.runs))
    return Document(f"editscope {report.command}: {benchmarks}", tuple(sections))


def results_header(runs: Sequence[RunRecord], labelled: bool) -> tuple[str, ...]:
    """Column names of the results table; CSV uses its own machine-friendly names."""
    return (
        "Run", "Editor", *(("Label",) if labelled else ()), "Mode", "Batch", "Step", "Edits",
        "Eff (token acc.)", "Eff score P(new)>P(old)", "Gen (token acc.)", "Gen score P(new)>P(old)",
        *(group_label(group) for group in locality_groups(runs)),
        "Loc mean", "Flu", "Avg", "PPL before → after", "Edit s", "Scoring s",
    )


def _provenance(report: Report) -> Section:
    runs = report.runs
    items = [("Command", report.command), ("Created", report.created)]
    items += [(f"Argument {key}", json.dumps(value, sort_keys=True))
              for key, value in sorted(report.arguments.items())]
    items += [("Model", f"{model.model_type}, {model.parameters:,} parameters, "
                        f"fingerprint {model.fingerprint}")
              for model in dict.fromkeys(run.model for run in runs)]
    items += [("Benchmark", f"{data.benchmark}" + (f" ({data.split})" if data.split else "")
               + f", {data.file or 'built in memory'}, sha256 {data.sha256}" + _target_notes(data))
              for data in dict.fromkeys(run.dataset for run in runs)]
    items.append(("Seed", ", ".join(str(seed) for seed in sorted({run.seed for run in runs}))))
    items += [("Settings", ", ".join(f"{key} {value}" for key, value in sorted(vars(found).items())))
              for found in dict.fromkeys(run.settings for run in runs)]
    versions: dict[str, list[str]] = {}
    for run in runs:
        for package, version in run.versions.items():
            versions.setdefault(package, [])
            if version not in versions[package]:
                versions[package].append(version)
    items += [(f"Version {package}", " / ".join(found))
              for package, found in sorted(versions.items())]
    return Section("Run", (
        Table(("Item", "Value"), tuple(items), left_columns=2),
        Paragraph("Hyper-parameters of every run are in report.json."),
    ))


def _target_notes(data) -> str:
    """What was cut from long targets and which scores are absent (experiments.edit_sets)."""
    notes = []
    if data.targets_cut or data.locality_answers_cut:
        notes.append(f"{data.targets_cut} target(s) and {data.locality_answers_cut} locality answer(s) "
                     f"cut to {data.max_target_tokens} tokens")
    if data.without_target_true:
        notes.append(f"{data.without_target_true} request(s) without an old target: their "
                     "P(new)>P(old) scores are absent")
    return "".join(f"; {note}" for note in notes)


def _results(runs: Sequence[RunRecord], rows: Sequence[ResultRow]) -> Section:
    labelled = any(row.label for row in rows)
    groups = locality_groups(runs)
    table_rows = []
    for row in rows:
        result = row.aggregate
        efficacy_mark = CEILING_MARK if row.ceiling_efficacy < 1 else ""
        table_rows.append((
            str(row.run_number), row.editor, *((row.label or MISSING,) if labelled else ()),
            row.mode, str(row.batch_size), MISSING if row.step is None else str(row.step),
            str(row.requests),
            percent(result.efficacy_accuracy) + efficacy_mark,
            percent(result.efficacy_score) + efficacy_mark,
            percent(result.generality_accuracy), percent(result.generality_score),
            *(percent(result.locality.get(group))
              + (CEILING_MARK if row.ceiling_locality.get(group, 1.0) < 1 else "")
              for group in groups),
            percent(result.locality_mean), fixed(result.health.fluency, 1), percent(result.average),
            f"{fixed(row.perplexity_before, 2)} → {fixed(result.health.perplexity_after, 2)}",
            seconds(row.edit_seconds), seconds(row.scoring_seconds),
        ))
    blocks = [Paragraph(CONVENTIONS),
              Table(results_header(runs, labelled), tuple(table_rows),
                    left_columns=4 if labelled else 3)]
    limited = [row for row in rows if row.ceiling_sentences]
    blocks.append(Paragraph("Ceilings: " + (
        "the batch validator found confounds that cap these figures." if limited else
        "the batch validator found no confound; every figure can reach 100%.")))
    if limited:
        blocks.append(Bullets(tuple(
            Bullet(f"{CEILING_MARK} Run {row.run_number}"
                   + (f", step {row.step}" if row.step is not None else ""), sentence)
            for row in limited for sentence in row.ceiling_sentences)))
    return Section("Results", tuple(blocks))


def _retrieval(finals: Sequence[ResultRow]) -> list[Section]:
    with_retrieval = [row for row in finals if row.retrieval is not None]
    if not with_retrieval:
        return []
    rows = tuple(
        (str(row.run_number), row.name,
         *(percent(getattr(row.retrieval, outcome)) for outcome in RETRIEVAL_OUTCOMES),
         str(row.retrieval.edit_queries), str(row.retrieval.locality_queries))
        for row in with_retrieval)
    header = ("Run", "Editor and setting", "Correct", "Wrong", "None", "Unwanted", "Edit queries",
              "Locality queries")
    return [Section("Retrieval diagnostics", (
        Paragraph("Shares of edit queries that retrieved the right edit, a wrong one or none, "
                  "and of locality queries that retrieved any edit (unwanted)."),
        Table(header, rows, left_columns=2),
    ))]


def _akd(report: Report, akd: Sequence[AkdPoint]) -> list[Section]:
    found = correlations(report.analyses)
    if not akd and not found:
        return []
    blocks = []
    if akd:
        rows = []
        for point in akd:
            run = report.runs[point.run_index]
            (step,) = [s for s in run.steps if s.step == point.step]
            rows.append((str(point.run_index + 1), run.editor, str(point.step), str(point.layer),
                         fixed(point.akd, 3), percent(step.aggregate.efficacy_accuracy)))
        blocks.append(Table(("Run", "Editor", "Step", "Layer", "AKD", "Eff (token acc.)"),
                            tuple(rows), left_columns=2))
    if found:
        blocks.append(Table(
            ("x", "y", "why undefined", "rho", "p", "pairs"),
            tuple((c.x, c.y, c.reason or MISSING, fixed(c.rho, 3), fixed(c.p, 4), str(c.n))
                  for c in found),
            left_columns=3))
    return [Section("Average Key Distance", tuple(blocks))]
